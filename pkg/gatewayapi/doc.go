// Package gatewayapi makes igw a Kubernetes Gateway API implementation:
// `igw serve --kubernetes` runs its controller beside the standalone data
// plane, so a cluster needs no other gateway.
//
// The controller owns the GatewayClasses whose spec.controllerName is
// ControllerName (igw.dev/gateway-controller by default), their Gateways
// and the HTTPRoutes (and Envoy AI Gateway AIGatewayRoutes) attached to
// them. It is one level-based reconciler (STYLE.md): whatever changed, it
// lists every GatewayClass, Gateway, route, InferencePool, Pod, Service,
// EndpointSlice, InferenceObjective and InferenceModelRewrite from the
// informer cache and computes two things from them:
//
//   - igw's own standalone configuration (Translate): one InferencePool and
//     one ModelServer per ready pod and target port of every pool a route
//     uses, the pools' objectives and rewrites, and one igw Route per route
//     rule. The data plane parses it like a file and swaps it in with one
//     Reload, so a request sees either the old routing table or the new
//     one, never a mix. A header match on the model header
//     (X-Gateway-Model-Name, or the name given with --model-header; always
//     x-ai-eg-model for an AIGatewayRoute) becomes a match on the body's
//     "model": the data plane reads the model from the body before it
//     selects a route, which is what the body-based router does for an
//     Envoy gateway, and a client cannot bypass it by sending the header.
//   - the status Gateway API asks of an implementation: GatewayClass
//     Accepted; Gateway Accepted, Programmed and status.addresses, with
//     per-listener conditions and attached-route counts; route Accepted and
//     ResolvedRefs per parent; and each InferencePool's status.parents entry
//     for every igw Gateway that routes to it (REFERENCE.md §8).
//
// A route rule the data plane refuses (a match that selects exactly the
// same requests as an older route's, say) is left out and its route is
// reported Accepted=False with the data plane's message, so one bad route
// never takes the others down.
package gatewayapi
