package gatewayapi

// Envoy AI Gateway's route kind, which igw serves like an HTTPRoute whose
// model header (x-ai-eg-model) it sets from the body.
const (
	// AIGatewayGroup is the API group of AIGatewayRoute.
	AIGatewayGroup = "aigateway.envoyproxy.io"
	// KindAIGatewayRoute is the kind igw reconciles from that group.
	KindAIGatewayRoute = "AIGatewayRoute"
)
