package v1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// InferencePool is a set of model-server pods that serve the same base model
// and share one endpoint picker. Every pod selected by Spec.Selector, on
// every port in Spec.TargetPorts, is a separate endpoint: data-parallel
// ranks in one pod are scheduled individually.
//
// +genclient
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:storageversion
// +kubebuilder:resource:shortName=infpool
// +kubebuilder:metadata:annotations="api-approved.kubernetes.io=https://github.com/kubernetes-sigs/gateway-api-inference-extension/pull/1173"
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type InferencePool struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec is the desired state, written by the pool's owner.
	Spec InferencePoolSpec `json:"spec,omitempty"`

	// Status is the observed state, written by gateway controllers.
	//
	// +optional
	Status InferencePoolStatus `json:"status,omitempty"`
}

// InferencePoolList is a list of InferencePools, as returned by list calls.
//
// +kubebuilder:object:root=true
type InferencePoolList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`

	// Items are the pools.
	Items []InferencePool `json:"items"`
}

// InferencePoolSpec selects the pool's model servers and names its endpoint
// picker.
type InferencePoolSpec struct {
	// Selector picks the pods (in the pool's namespace) that are the pool's
	// model servers. Only label equality is supported, as for a Service,
	// so that every data plane can evaluate it the same way.
	//
	// +required
	Selector LabelSelector `json:"selector"`

	// TargetPorts are the ports the model servers listen on. Each selected
	// pod contributes one endpoint per port, so a pod running several
	// data-parallel engine ranks lists one port per rank.
	//
	// +required
	// +listType=atomic
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=8
	// +kubebuilder:validation:XValidation:message="port number must be unique",rule="self.all(p1, self.exists_one(p2, p1.number == p2.number))"
	TargetPorts []Port `json:"targetPorts"`

	// AppProtocol is the protocol the gateway speaks to the model servers:
	// "http" (HTTP/1.1, the default) or "kubernetes.io/h2c" (HTTP/2 without
	// TLS).
	//
	// +optional
	// +kubebuilder:default="http"
	// +kubebuilder:validation:Enum=http;"kubernetes.io/h2c"
	AppProtocol AppProtocol `json:"appProtocol,omitempty"`

	// EndpointPickerRef names the endpoint picker (ext_proc service) that
	// chooses an endpoint for each request. In a cluster it is required by
	// the Gateway API Inference Extension; igw's standalone mode also
	// accepts a pool without it and then uses its embedded picker.
	//
	// +optional
	EndpointPickerRef *EndpointPickerRef `json:"endpointPickerRef,omitempty"`
}

// LabelSelector is an equality-only label query.
type LabelSelector struct {
	// MatchLabels are the labels a pod must carry, all of them, with these
	// exact values. Keys and values follow the Kubernetes label syntax.
	//
	// +required
	// +kubebuilder:validation:MinProperties=1
	// +kubebuilder:validation:MaxProperties=64
	MatchLabels map[string]string `json:"matchLabels"`
}

// Port is a TCP port on a model server or picker.
type Port struct {
	// Number is the port number.
	//
	// +required
	Number PortNumber `json:"number"`
}

// PortNumber is a TCP port number.
//
// +kubebuilder:validation:Minimum=1
// +kubebuilder:validation:Maximum=65535
type PortNumber int32

// AppProtocol is the application protocol spoken to model servers.
//
// +kubebuilder:validation:Enum=http;"kubernetes.io/h2c"
type AppProtocol string

// Application protocols of an InferencePool.
const (
	// AppProtocolHTTP is HTTP/1.1 (the default).
	AppProtocolHTTP AppProtocol = "http"
	// AppProtocolH2C is HTTP/2 over cleartext TCP.
	AppProtocolH2C AppProtocol = "kubernetes.io/h2c"
)

// EndpointPickerRef refers to the endpoint picker extension of a pool.
type EndpointPickerRef struct {
	// Group is the API group of the referent; "" (the default) is the core
	// group, where Service lives.
	//
	// +optional
	// +kubebuilder:default=""
	Group *Group `json:"group,omitempty"`

	// Kind is the kind of the referent, by default Service.
	//
	// +optional
	// +kubebuilder:default=Service
	Kind Kind `json:"kind,omitempty"`

	// Name is the name of the referent, in the pool's namespace.
	//
	// +required
	Name ObjectName `json:"name"`

	// Port is the port the picker's ext_proc gRPC service listens on. It is
	// required when Kind is Service, because a Service may expose several
	// ports and guessing one would route to the wrong one.
	//
	// +optional
	Port *Port `json:"port,omitempty"`

	// FailureMode decides what happens when the picker cannot be reached:
	// FailClose (the default) rejects the request, FailOpen routes it
	// without the picker's decision (plain load balancing over the pool).
	//
	// +optional
	// +kubebuilder:default=FailClose
	FailureMode EndpointPickerFailureMode `json:"failureMode,omitempty"`
}

// EndpointPickerFailureMode is the behaviour when the endpoint picker is
// unavailable.
//
// +kubebuilder:validation:Enum=FailOpen;FailClose
type EndpointPickerFailureMode string

// Failure modes of an endpoint picker reference.
const (
	// EndpointPickerFailOpen routes requests without the picker when it is
	// unreachable: availability over placement.
	EndpointPickerFailOpen EndpointPickerFailureMode = "FailOpen"
	// EndpointPickerFailClose rejects requests when the picker is
	// unreachable: never route without the picker's decision.
	EndpointPickerFailClose EndpointPickerFailureMode = "FailClose"
)

// Group is a Kubernetes API group name; "" is the core group.
//
// +kubebuilder:validation:MaxLength=253
// +kubebuilder:validation:Pattern=`^$|^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
type Group string

// Kind is a Kubernetes resource kind, e.g. Service.
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

// Namespace is the name of a Kubernetes namespace.
//
// +kubebuilder:validation:MinLength=1
// +kubebuilder:validation:MaxLength=63
// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
type Namespace string

// ControllerName identifies a gateway controller, e.g.
// "example.net/gateway-controller".
//
// +kubebuilder:validation:MinLength=1
// +kubebuilder:validation:MaxLength=253
type ControllerName string

// InferencePoolStatus is the observed state of a pool, reported separately
// by each parent (gateway) that uses it.
type InferencePoolStatus struct {
	// Parents has one entry per parent that references the pool. A pool
	// nobody references has none.
	//
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=32
	Parents []ParentStatus `json:"parents,omitempty"`
}

// ParentStatus is the status of a pool as seen by one parent.
type ParentStatus struct {
	// ParentRef identifies the parent (usually a Gateway).
	//
	// +required
	ParentRef ParentReference `json:"parentRef"`

	// ControllerName is the controller that wrote this entry; each controller
	// only touches its own entries.
	//
	// +optional
	ControllerName ControllerName `json:"controllerName,omitempty"`

	// Conditions describe the pool's state for this parent. Known types are
	// Accepted and ResolvedRefs.
	//
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=8
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// ParentReference identifies a parent of an InferencePool.
type ParentReference struct {
	// Group is the parent's API group, by default gateway.networking.k8s.io.
	//
	// +optional
	// +kubebuilder:default="gateway.networking.k8s.io"
	Group *Group `json:"group,omitempty"`

	// Kind is the parent's kind, by default Gateway.
	//
	// +optional
	// +kubebuilder:default=Gateway
	Kind Kind `json:"kind,omitempty"`

	// Name is the parent's name.
	//
	// +required
	Name ObjectName `json:"name"`

	// Namespace is the parent's namespace; empty means the pool's.
	//
	// +optional
	Namespace Namespace `json:"namespace,omitempty"`
}

// InferencePoolConditionType is the type of a condition in ParentStatus.
type InferencePoolConditionType string

// InferencePoolReason is the reason of a condition in ParentStatus.
type InferencePoolReason string

// Condition types and reasons written to ParentStatus.Conditions.
const (
	// InferencePoolConditionAccepted tells whether the parent accepted the
	// pool as a backend.
	InferencePoolConditionAccepted InferencePoolConditionType = "Accepted"
	// InferencePoolReasonAccepted: the parent accepted the pool.
	InferencePoolReasonAccepted InferencePoolReason = "Accepted"
	// InferencePoolReasonNotSupportedByParent: the parent cannot use pools.
	InferencePoolReasonNotSupportedByParent InferencePoolReason = "NotSupportedByParent"
	// InferencePoolReasonHTTPRouteNotAccepted: the route referencing the
	// pool was not accepted by the parent.
	InferencePoolReasonHTTPRouteNotAccepted InferencePoolReason = "HTTPRouteNotAccepted"

	// InferencePoolConditionResolvedRefs tells whether every reference in
	// the pool (such as EndpointPickerRef) could be resolved.
	InferencePoolConditionResolvedRefs InferencePoolConditionType = "ResolvedRefs"
	// InferencePoolReasonResolvedRefs: all references were resolved.
	InferencePoolReasonResolvedRefs InferencePoolReason = "ResolvedRefs"
	// InferencePoolReasonInvalidExtensionRef: the endpoint picker reference
	// is invalid or does not exist.
	InferencePoolReasonInvalidExtensionRef InferencePoolReason = "InvalidExtensionRef"
)
