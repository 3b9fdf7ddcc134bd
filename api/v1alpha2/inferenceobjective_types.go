package v1alpha2

import (
	"fmt"
	"strconv"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// InferenceObjective is a named performance objective for requests to one
// InferencePool. Clients select it with the request header
// x-gateway-inference-objective: <metadata.name>; a request naming no
// objective, or one that does not exist, gets priority 0 rather than an
// error, so that rolling out objectives never breaks clients.
//
// +genclient
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:storageversion
// +kubebuilder:printcolumn:name="Pool",type=string,JSONPath=`.spec.poolRef.name`
// +kubebuilder:printcolumn:name="Priority",type=integer,JSONPath=`.spec.priority`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type InferenceObjective struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec is the desired state.
	Spec InferenceObjectiveSpec `json:"spec,omitempty"`

	// Status is the observed state.
	//
	// +optional
	Status InferenceObjectiveStatus `json:"status,omitempty"`
}

// InferenceObjectiveList is a list of InferenceObjectives.
//
// +kubebuilder:object:root=true
type InferenceObjectiveList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`

	// Items are the objectives.
	Items []InferenceObjective `json:"items"`
}

// InferenceObjectiveSpec is the desired state of an InferenceObjective.
type InferenceObjectiveSpec struct {
	// Priority orders requests when the pool is saturated: higher values
	// are dispatched first, and negative values are sheddable (rejected
	// with 429 while the pool is saturated rather than queued). Unset means
	// 0. A pointer, so that "unset" and an explicit 0 stay distinguishable
	// for future defaulting.
	//
	// +optional
	Priority *int32 `json:"priority,omitempty"`

	// PoolRef is the InferencePool this objective applies to.
	//
	// +required
	PoolRef PoolObjectReference `json:"poolRef"`
}

// EffectivePriority is the priority the flow controller uses: Priority, or
// 0 when it is unset.
func (s *InferenceObjectiveSpec) EffectivePriority() int32 {
	if s.Priority == nil {
		return 0
	}
	return *s.Priority
}

// InferenceObjectiveStatus is the observed state of an InferenceObjective.
type InferenceObjectiveStatus struct {
	// Conditions describe the objective's state; see ConditionAccepted.
	//
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=8
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// Annotations giving an objective's requests default latency objectives,
// in whole milliseconds, used when a request sends no x-slo-ttft-ms or
// x-slo-tpot-ms header of its own. They are annotations rather than spec
// fields so manifests stay valid against the upstream CRD.
const (
	AnnotationSLOTTFT = "igw.dev/slo-ttft-ms"
	AnnotationSLOTPOT = "igw.dev/slo-tpot-ms"
)

// MaxLatencyObjective bounds a latency objective, in the annotations as
// in the request headers: anything longer is a mistake (a value in
// microseconds, say), not an objective.
const MaxLatencyObjective = time.Hour

// ParseLatencyObjective reads a latency objective written as a whole
// number of milliseconds from 1 to MaxLatencyObjective, the form of both
// the igw.dev/slo-* annotations and the x-slo-*-ms request headers.
func ParseLatencyObjective(v string) (time.Duration, error) {
	ms, err := strconv.ParseInt(v, 10, 64)
	if err != nil || ms < 1 || ms > MaxLatencyObjective.Milliseconds() {
		return 0, fmt.Errorf("must be a whole number of milliseconds from 1 to %d, got %q", MaxLatencyObjective.Milliseconds(), v)
	}
	return time.Duration(ms) * time.Millisecond, nil
}

// LatencyObjectives returns the objective's default time-to-first-token
// and time-per-output-token objectives (0: none), or an error naming the
// annotation whose value ParseLatencyObjective refuses.
func (o *InferenceObjective) LatencyObjectives() (ttft, tpot time.Duration, err error) {
	for _, a := range []struct {
		key string
		to  *time.Duration
	}{{AnnotationSLOTTFT, &ttft}, {AnnotationSLOTPOT, &tpot}} {
		v, ok := o.Annotations[a.key]
		if !ok {
			continue
		}
		d, perr := ParseLatencyObjective(v)
		if perr != nil {
			return 0, 0, fmt.Errorf("annotation %s: %w", a.key, perr)
		}
		*a.to = d
	}
	return ttft, tpot, nil
}
