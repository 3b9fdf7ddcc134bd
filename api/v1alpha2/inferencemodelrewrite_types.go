package v1alpha2

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// InferenceModelRewrite rewrites the model a request asks for before it is
// scheduled onto an InferencePool. Clients keep using one model name while
// the pool owner splits traffic between model versions or LoRA adapters by
// weight: canary and blue-green rollouts without client changes.
//
// When several rules match a request, an exact match beats a catch-all
// (a rule without matches), then the oldest object wins, then the first
// rule within it.
//
// +genclient
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:storageversion
// +kubebuilder:printcolumn:name="Pool",type=string,JSONPath=`.spec.poolRef.name`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type InferenceModelRewrite struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec is the desired state.
	Spec InferenceModelRewriteSpec `json:"spec,omitempty"`

	// Status is the observed state.
	//
	// +optional
	Status InferenceModelRewriteStatus `json:"status,omitempty"`
}

// InferenceModelRewriteList is a list of InferenceModelRewrites.
//
// +kubebuilder:object:root=true
type InferenceModelRewriteList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`

	// Items are the rewrites.
	Items []InferenceModelRewrite `json:"items"`
}

// InferenceModelRewriteSpec is the desired state of an
// InferenceModelRewrite.
type InferenceModelRewriteSpec struct {
	// PoolRef is the InferencePool whose requests are rewritten.
	//
	// +required
	PoolRef PoolObjectReference `json:"poolRef"`

	// Rules are evaluated as described on InferenceModelRewrite.
	//
	// +required
	// +listType=atomic
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=64
	Rules []InferenceModelRewriteRule `json:"rules"`
}

// InferenceModelRewriteRule maps the models it matches onto weighted target
// models.
type InferenceModelRewriteRule struct {
	// Matches select the requests the rule applies to; any one matching is
	// enough. No matches make the rule a catch-all for every model.
	//
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=64
	Matches []Match `json:"matches,omitempty"`

	// Targets are the models a matched request is rewritten to, one per
	// request, chosen at random in proportion to the weights (uniformly
	// when no target has a weight).
	//
	// +required
	// +listType=atomic
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:XValidation:message="weights must be set for all targets or for none",rule="self.all(t, has(t.weight)) || self.all(t, !has(t.weight))"
	Targets []TargetModel `json:"targets"`
}

// Match is one condition of a rule.
type Match struct {
	// Model matches the model name in the request body.
	//
	// +required
	Model ModelMatch `json:"model"`
}

// ModelMatch compares the requested model name with a value.
type ModelMatch struct {
	// Type is how Value is compared; only Exact is defined.
	//
	// +optional
	// +kubebuilder:default=Exact
	Type MatchType `json:"type,omitempty"`

	// Value is the model name to match.
	//
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=256
	Value string `json:"value"`
}

// MatchType is how a ModelMatch compares.
//
// +kubebuilder:validation:Enum=Exact
type MatchType string

// MatchExact matches the model name byte for byte.
const MatchExact MatchType = "Exact"

// TargetModel is one model a rule can rewrite to.
type TargetModel struct {
	// ModelRewrite is the model name written into the request body.
	//
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=256
	ModelRewrite string `json:"modelRewrite"`

	// Weight is the target's share of the rule's traffic, relative to the
	// other targets' weights.
	//
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1000000
	Weight *int32 `json:"weight,omitempty"`
}

// InferenceModelRewriteStatus is the observed state of an
// InferenceModelRewrite.
type InferenceModelRewriteStatus struct {
	// Conditions describe the rewrite's state; see ConditionAccepted.
	//
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=8
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}
