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
//
// The Gateway kind (kind.go) configures the listeners; the gateway hands
// it to the engine's schema (engine.Schema(gateway.Kind())). Its body
// limit and request timeout bound every request on either data plane, so
// the engine reads them too, through engine.RequestBounds, without
// importing this package. Everything else the gateway serves it gets from
// the engine and its Director: the gateway never reads another module's
// configuration.
package gateway
