// Package extproc speaks Envoy's external-processing protocol
// (envoy.service.ext_proc.v3.ExternalProcessor, REFERENCE §2–§3) for igw:
//
//   - Picker, the Endpoint Picker behind `igw epp`: a transport adapter over
//     the same Director `igw serve` uses, so a decision made for Envoy and
//     one made by the standalone proxy are the same decision.
//   - BodyRouter, the body-based router behind `igw bbr`: the model name of
//     an OpenAI body into X-Gateway-Model-Name (and
//     X-Gateway-Base-Model-Name for LoRA adapters).
//   - PoolRuntime: one InferencePool of the standalone YAML in a datastore,
//     scraped, with a Director — what `igw epp` runs without Kubernetes.
//   - NewGRPCServer, NewHealthServer, TLSConfig: serving both over gRPC
//     with the health and TLS conventions of Endpoint Pickers.
//
// The Envoy side of the protocol (for `igw serve` with a remote picker)
// belongs here too; envoytest is its test-only precursor.
//
// # Protocol
//
// One Process stream is one HTTP request. Both processors handle the body
// modes FULL_DUPLEX_STREAMED and BUFFERED (BUFFERED_PARTIAL as BUFFERED),
// announced by Envoy in the first message's protocol_config; an Envoy that
// does not announce them is assumed to use the processor's default mode
// (FULL_DUPLEX_STREAMED unless configured). STREAMED and GRPC request body
// modes cannot carry a routing decision and are answered with 500.
//
//   - FULL_DUPLEX_STREAMED: the request body is collected (up to
//     DefaultMaxBodyBytes, else 413) and nothing is answered until it is
//     complete (end_of_stream, or trailers); then a HeadersResponse with
//     the header mutations and clear_route_cache, then the (possibly
//     rewritten) body as StreamedBodyResponse chunks under MaxChunkBytes,
//     the last with end_of_stream (unless trailers follow, which get an
//     empty TrailersResponse).
//   - BUFFERED: the request headers are answered at once (removing the
//     routing headers a client may have sent), and the one body message
//     gets a BodyResponse with the header mutations, the body mutation
//     when the body changed, and clear_route_cache.
//
// Header-only requests (end_of_stream on the headers): a request to an
// inference API path (/v1/chat/completions, /v1/completions,
// /v1/embeddings, /v1/responses, Anthropic's /v1/messages) has no model
// and is rejected with 400; any other (GET /v1/models, health probes
// routed through the gateway) is
// scheduled over the pool without model or prompt, so the load-based
// scorers alone decide. The body-based router passes the latter through.
//
// # Decisions and errors
//
// The picker sets x-gateway-destination-endpoint to the primary endpoint
// followed by the Director's fallbacks ("ip:port,ip:port"), overwriting
// whatever the client sent, and puts the identical value in dynamic
// metadata envoy.lb / x-gateway-destination-endpoint. It honours the
// gateway's subset hint (filter metadata envoy.lb.subset_hint /
// x-gateway-destination-endpoint-subset: absent = the whole pool, empty =
// 503). When a model rewrite changed the body, Content-Length is set to the
// new length. Refusals are ImmediateResponses with the status of
// REFERENCE §2 (400 bad body or missing model, 413 too large, 429 shed,
// 503 no endpoints, 500 internal), an OpenAI-style JSON error body and,
// for the Director's rejections, x-gateway-request-dropped-reason.
//
// # Response phase
//
// Response chunks pass through as they arrive (echoed as
// StreamedBodyResponse in full-duplex mode) while an
// openai.UsageObserver extracts token usage from JSON or SSE bodies. When
// the request's model was rewritten, `"model":"<target>"` (and the
// `"model": "<target>"` spelling) becomes the requested name again, in JSON
// bodies and in every SSE event, correctly across chunk boundaries: a
// chunk whose tail could begin the pattern holds those few bytes back
// until the next chunk (never more than the pattern's length; SSE events end
// with a blank line, so in practice nothing waits). In full-duplex mode
// Content-Length is then removed; in BUFFERED mode it is set to the new
// length. The endpoint Envoy reports in response metadata envoy.lb /
// x-gateway-destination-endpoint-served decides which endpoint's in-flight
// count the request holds (the primary by default); the attempt ends with
// the response's status and usage, or when the stream ends early.
package extproc
