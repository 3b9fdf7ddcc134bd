package director

import (
	"time"

	"github.com/igw-dev/igw/pkg/openai"
)

// Defaults of a route's attempt bounds (AttemptPolicy). A model server
// that accepted the connection and the request but answers nothing (a
// stopped process, a wedged engine) would otherwise hold the request until
// the route's timeout, minutes later; these bound each attempt so the
// request moves on to another endpoint while the client has seen nothing.
const (
	// DefaultConnectTimeout bounds opening a connection to an endpoint.
	DefaultConnectTimeout = 2 * time.Second
	// The derived first-byte timeout is firstByteBase, plus
	// firstBytePerPromptToken for every prompt token (prefill on a busy
	// replica, about 2,000 tokens/s at worst), plus, for a response that
	// is not streamed (its headers come only after the whole generation),
	// firstBytePerOutputToken for every token of max_tokens (10 tokens/s
	// at worst).
	firstByteBase           = 10 * time.Second
	firstBytePerPromptToken = 500 * time.Microsecond
	firstBytePerOutputToken = 100 * time.Millisecond
)

// AttemptPolicy bounds each attempt of a route's requests on one endpoint.
// Zero values take the defaults.
type AttemptPolicy struct {
	// Connect bounds opening a connection (default
	// DefaultConnectTimeout).
	Connect time.Duration
	// FirstByte bounds the wait from the request sent to the response
	// headers; 0 derives it from the request (see FirstByteTimeout).
	FirstByte time.Duration
	// NoRetryAfterSend keeps a request on the endpoint once it was sent
	// there: a broken connection or a first-byte timeout then fails the
	// request instead of trying it elsewhere, where it might run twice.
	NoRetryAfterSend bool
}

// ConnectTimeout bounds opening a connection to the endpoint of one
// attempt.
func (x *Exchange) ConnectTimeout() time.Duration {
	if x.Route != nil && x.Route.Attempt.Connect > 0 {
		return x.Route.Attempt.Connect
	}
	return DefaultConnectTimeout
}

// FirstByteTimeout bounds one attempt from the request written to the
// response headers: the route's setting, or the time the request should
// need on a busy replica — a base, the prompt's prefill and, when the
// response is not streamed, max_tokens of decoding. 0 means no bound of
// its own (a non-streamed request without max_tokens may generate for as
// long as the route's timeout allows).
func (x *Exchange) FirstByteTimeout() time.Duration {
	if x.Route != nil && x.Route.Attempt.FirstByte > 0 {
		return x.Route.Attempt.FirstByte
	}
	p := x.Parsed
	if p == nil {
		return firstByteBase
	}
	// The prompt text is gone once Begin returned; a byte count of the
	// body over-estimates its tokens, which only lengthens the bound.
	tokens := x.promptTokens
	if tokens < 0 {
		tokens = len(x.Body) / 4
	}
	d := firstByteBase + time.Duration(tokens)*firstBytePerPromptToken
	if !p.Stream && p.Kind != openai.KindEmbeddings {
		if p.MaxTokens <= 0 {
			return 0
		}
		d += time.Duration(p.MaxTokens) * firstBytePerOutputToken
	}
	return d
}

// RetryAfterSend reports whether an attempt that failed after the request
// was sent, with no answer (the connection broke, the first-byte timeout
// passed), may be tried on another endpoint. The model server may have
// started on it, so the request may run twice; routes whose requests must
// not (tools with side effects) turn it off. An answered failure (a 5xx
// status) is always retryable: the server said it did not do the work.
func (x *Exchange) RetryAfterSend() bool {
	return x.Route == nil || !x.Route.Attempt.NoRetryAfterSend
}
