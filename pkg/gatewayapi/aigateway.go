package gatewayapi

import (
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// Envoy AI Gateway's route kind, which igw serves like an HTTPRoute whose
// model header (x-ai-eg-model) it sets from the body. Its CRD is in
// config/crd/aigateway (written from the documented fields, not copied):
// igw reads parentRefs, rules[].matches[].headers, rules[].backendRefs
// (InferencePools, and ordinary Services in place of AIServiceBackends)
// and rules[].timeouts, and ignores the fields about external providers and
// costs.
const (
	// AIGatewayGroup is the API group of AIGatewayRoute.
	AIGatewayGroup = "aigateway.envoyproxy.io"
	// KindAIGatewayRoute is the kind igw reconciles from that group.
	KindAIGatewayRoute = "AIGatewayRoute"
	// kindAIServiceBackend is the default backendRef kind of an
	// AIGatewayRoute: an external provider, which igw does not serve.
	kindAIServiceBackend = "AIServiceBackend"
)

// AIGatewayRouteGVK is the served version of AIGatewayRoute (a function,
// not a variable, so no caller can change another's).
func AIGatewayRouteGVK() schema.GroupVersionKind {
	return schema.GroupVersionKind{Group: AIGatewayGroup, Version: "v1alpha1", Kind: KindAIGatewayRoute}
}

// AIGatewayRoute is the part of Envoy AI Gateway's route igw reads.
type AIGatewayRoute struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              AIGatewayRouteSpec   `json:"spec,omitempty"`
	Status            AIGatewayRouteStatus `json:"status,omitempty"`
}

// AIGatewayRouteSpec holds the route's parents and rules.
type AIGatewayRouteSpec struct {
	ParentRefs []gwv1.ParentReference `json:"parentRefs,omitempty"`
	Rules      []AIGatewayRouteRule   `json:"rules,omitempty"`
}

// AIGatewayRouteRule is one rule: header matches and weighted backends.
type AIGatewayRouteRule struct {
	Matches     []AIGatewayRouteRuleMatch      `json:"matches,omitempty"`
	BackendRefs []AIGatewayRouteRuleBackendRef `json:"backendRefs,omitempty"`
	Timeouts    *gwv1.HTTPRouteTimeouts        `json:"timeouts,omitempty"`
}

// AIGatewayRouteRuleMatch matches headers only (x-ai-eg-model above all).
type AIGatewayRouteRuleMatch struct {
	Headers []gwv1.HTTPHeaderMatch `json:"headers,omitempty"`
}

// AIGatewayRouteRuleBackendRef names a backend: an AIServiceBackend by
// default, or a group/kind such as InferencePool.
type AIGatewayRouteRuleBackendRef struct {
	Name      string  `json:"name"`
	Namespace *string `json:"namespace,omitempty"`
	Group     *string `json:"group,omitempty"`
	Kind      *string `json:"kind,omitempty"`
	Weight    *int32  `json:"weight,omitempty"`
}

// AIGatewayRouteStatus is the route's status: one condition list.
type AIGatewayRouteStatus struct {
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// neutral turns an AIGatewayRoute into the translation's Route. A Service
// backend takes the Service's only port (AIGatewayRoute backendRefs carry
// no port); one without a single port stays unresolved, and says why.
func (a *AIGatewayRoute) neutral(idx *index, modelHeaders []string) Route {
	r := Route{Kind: KindAIGatewayRoute, Namespace: a.Namespace, Name: a.Name, Created: a.CreationTimestamp.Time,
		Generation: a.Generation, ParentRefs: a.Spec.ParentRefs, ModelHeaders: append([]string{AIGatewayModelHeader}, modelHeaders...)}
	for _, ar := range a.Spec.Rules {
		var rule gwv1.HTTPRouteRule
		for _, m := range ar.Matches {
			rule.Matches = append(rule.Matches, gwv1.HTTPRouteMatch{Headers: m.Headers})
		}
		for _, b := range ar.BackendRefs {
			group, kind := "", kindAIServiceBackend
			if b.Group != nil {
				group = *b.Group
			}
			if b.Kind != nil {
				kind = *b.Kind
			}
			ref := gwv1.HTTPBackendRef{BackendRef: gwv1.BackendRef{Weight: b.Weight, BackendObjectReference: gwv1.BackendObjectReference{
				Group: ptr(gwv1.Group(group)), Kind: ptr(gwv1.Kind(kind)), Name: gwv1.ObjectName(b.Name)}}}
			if b.Namespace != nil {
				ref.Namespace = ptr(gwv1.Namespace(*b.Namespace))
			}
			if group == "" && kind == kindService {
				if svc := idx.services[types.NamespacedName{Namespace: a.Namespace, Name: b.Name}]; svc != nil && len(svc.Spec.Ports) == 1 {
					ref.Port = ptr(gwv1.PortNumber(svc.Spec.Ports[0].Port))
				}
			}
			rule.BackendRefs = append(rule.BackendRefs, ref)
		}
		rule.Timeouts = ar.Timeouts
		r.Rules = append(r.Rules, rule)
	}
	return r
}

func ptr[T any](v T) *T { return &v }

// aiServiceBackendMessage explains the AIGatewayRoute default kind.
func aiServiceBackendMessage(name string) string {
	return fmt.Sprintf("backend %s is an AIServiceBackend (the default kind), which igw does not serve: name an InferencePool (group inference.networking.k8s.io, kind InferencePool) or a Service (group \"\", kind Service, with one port)", name)
}
