package gateway

import (
	"context"
	"io"
	"net/http"
	"time"

	"github.com/igw-dev/igw/pkg/config"
	"github.com/igw-dev/igw/pkg/gateway/auth"
	"github.com/igw-dev/igw/pkg/openai"
)

// Admission is the extension point between authentication and the
// Director: a policy (token quotas) that decides, with the request's
// identity and estimated cost known, whether it may use the model servers
// at all. It is called once per request that passed the guard and
// authentication, on every backend kind (pool, remote picker, URL); what
// it refuses never reaches the Director or a model server.
type Admission interface {
	// Admit admits the request (returning what to do with its response)
	// or refuses it. It must be safe for concurrent use.
	Admit(ctx context.Context, req *AdmissionRequest) (*Admitted, *Rejection)
}

// AdmissionFactory builds the Admission of a configuration, or nil when the
// configuration needs none. prev is the Admission of the configuration
// being replaced (nil at start): returning it keeps its state (counters,
// connections) across a reload. An error fails the load, as any invalid
// configuration does. An Admission that is replaced, or still in use at
// Shutdown, is closed if it implements io.Closer; requests in flight may
// still call Release on it afterwards.
type AdmissionFactory func(cfg *config.Config, prev Admission) (Admission, error)

// AdmissionRequest is what Admit knows about a request, all computed once
// by the gateway.
type AdmissionRequest struct {
	// Parsed is the request body as parsed once (model as the client named
	// it, stream flag, max tokens after the guard's clamp).
	Parsed *openai.Parsed
	// PromptTokens is openai.CountTokens of the prompt text.
	PromptTokens int
	// Identity is the authenticated caller, or nil when authentication is
	// off.
	Identity *auth.Identity
	// Route is the selected route, namespace/name.
	Route string
}

// Admitted is an admitted request's obligations.
type Admitted struct {
	// Header is added to the response, success or not (x-ratelimit-*).
	Header http.Header
	// WrapBody, if set, wraps the model server's response body before it
	// is relayed (and before usage is extracted from it), e.g. to end a
	// stream that overruns its budget with a final SSE error event.
	WrapBody func(body io.ReadCloser) io.ReadCloser
	// Release is called exactly once when the request is over, with the
	// usage the model server reported (zero when none was sent) and the
	// status the model server answered with (0 when none answered: the
	// request failed before a response, or was refused after admission).
	Release func(usage openai.Usage, status int)
}

// Rejection is a refused request: the error sent to the client, headers to
// add (Retry-After, x-ratelimit-*), and a reason for the
// x-gateway-request-dropped-reason header and metrics.
type Rejection struct {
	Err    *openai.Error
	Header http.Header
	Reason string
}

// exchange is one request's state across the stages of serveInference:
// who it is for, what admission asked of it, and what the model server
// answered.
type exchange struct {
	start    time.Time
	kind     openai.Kind
	identity *auth.Identity
	admitted *Admitted
	// usage and status are the model server's answer, set by relay.
	usage  openai.Usage
	status int
	// promptTokens is openai.CountTokens of the prompt, or -1 until
	// counted; counted at most once per request.
	promptTokens int
}

// tokens counts the prompt's tokens once.
func (ex *exchange) tokens(parsed *openai.Parsed) int {
	if ex.promptTokens < 0 {
		ex.promptTokens = openai.CountTokens(string(parsed.Prompt))
	}
	return ex.promptTokens
}

// admit runs the configuration's Admission, if any.
func (s *Server) admit(ctx context.Context, rt *runtime, req *AdmissionRequest, ex *exchange) (*Admitted, *Rejection) {
	if rt.admission == nil {
		return nil, nil
	}
	req.PromptTokens = ex.tokens(req.Parsed)
	a, rej := rt.admission.Admit(ctx, req)
	ex.admitted = a
	return a, rej
}

// refuse answers a request refused before it reached the Director.
func (s *Server) refuse(w http.ResponseWriter, model string, ex *exchange, rej *Rejection) {
	h := w.Header()
	for k, v := range rej.Header {
		h[k] = v
	}
	if rej.Reason != "" {
		h.Set(headerRequestDroppedReason, rej.Reason)
	}
	e := rej.Err
	if e == nil {
		e = openai.NewError(http.StatusForbidden, openai.ErrTypeInvalidRequest, "request refused")
	}
	s.fail(w, model, "", ex.start, e)
}

// closeAdmission closes a replaced or stopped Admission that holds
// resources.
func closeAdmission(a Admission) {
	if c, ok := a.(io.Closer); ok {
		_ = c.Close()
	}
}
