// Package gateway is igw's standalone data plane: OpenAI-compatible HTTP
// listeners, routes that pick a backend by the body's model (and headers and
// path) with weighted canary splits, and a streaming reverse proxy that
// hands every InferencePool request to the Director and retries on the
// Director's fallback endpoints when a request fails before the first
// response byte.
//
// The gateway owns the wire: body limits, OpenAI-style errors, routing
// headers (clients never choose the endpoint), flushing every chunk of a
// stream, and the admin endpoints /metrics, /healthz and /readyz. Routing
// decisions belong to the Director and its scheduler.
package gateway
