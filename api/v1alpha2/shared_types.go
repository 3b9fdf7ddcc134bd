package v1alpha2

// PoolGroup and PoolKind are the defaults of a PoolObjectReference: the
// group and kind of InferencePool (package api/v1).
const (
	PoolGroup Group = "inference.networking.k8s.io"
	PoolKind  Kind  = "InferencePool"
)

// PoolObjectReference names the InferencePool an object applies to. The
// pool is in the referring object's namespace: objectives and rewrites are
// owned by the pool's owner, so a cross-namespace reference is not allowed.
type PoolObjectReference struct {
	// Group is the pool's API group, by default inference.networking.k8s.io.
	//
	// +optional
	// +kubebuilder:default="inference.networking.k8s.io"
	Group Group `json:"group,omitempty"`

	// Kind is the pool's kind, by default InferencePool.
	//
	// +optional
	// +kubebuilder:default=InferencePool
	Kind Kind `json:"kind,omitempty"`

	// Name is the pool's name.
	//
	// +required
	Name ObjectName `json:"name"`
}

// Group is a Kubernetes API group name; "" is the core group.
//
// +kubebuilder:validation:MaxLength=253
// +kubebuilder:validation:Pattern=`^$|^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
type Group string

// Kind is a Kubernetes resource kind, e.g. InferencePool.
//
// +kubebuilder:validation:MinLength=1
// +kubebuilder:validation:MaxLength=63
// +kubebuilder:validation:Pattern=`^[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?$`
type Kind string

// ObjectName is the name of a Kubernetes object.
//
// +kubebuilder:validation:MinLength=1
// +kubebuilder:validation:MaxLength=253
type ObjectName string

// Condition types and reasons used in the statuses of this package's
// objects. They are strings so that the values of metav1.Condition can be
// compared without conversion.
const (
	// ConditionAccepted tells whether the object was accepted (its pool
	// exists and it is valid).
	ConditionAccepted = "Accepted"
	// ReasonAccepted: the object was accepted.
	ReasonAccepted = "Accepted"
	// ReasonPending: the object has not been reconciled yet.
	ReasonPending = "Pending"
)
