package director

import (
	"context"
	"io"
	"net/http"

	"github.com/igw-dev/igw/pkg/openai"
	"github.com/igw-dev/igw/pkg/policy/auth"
)

// Policy is one configuration's request policies, compiled and validated at
// load: the routes, authentication, the admission policy (token quotas) and
// the body limit. The engine builds one per configuration and swaps it in
// with SetPolicy; a request keeps the Policy it started with.
type Policy struct {
	// Routes, in configuration order. Empty: every model goes to the data
	// plane's pool (Inbound.Pool), as an Endpoint Picker in Kubernetes does.
	Routes []*Route
	// Models are the exactly routed model names, for GET /v1/models.
	Models []string
	// Auth checks credentials; nil when authentication is off.
	Auth *auth.Authenticator
	// Admission runs after authentication and before scheduling; nil
	// admits every authenticated request.
	Admission Admission
	// MaxBodyBytes bounds a request body (0: no bound besides the data
	// plane's own).
	MaxBodyBytes int64
	// Resilience is each pool's outlier detection and retry budget, by
	// pool (namespace/name) or URL backend host; one not listed gets
	// DefaultResilience.
	Resilience map[string]Resilience
}

// Admission is the extension point between authentication and scheduling:
// a policy (token quotas) that decides, with the request's identity and
// estimated cost known, whether it may use the model servers at all. It is
// called once per request that passed the guard and authentication,
// whatever the backend; what it refuses never reaches a model server.
type Admission interface {
	// Admit admits the request (returning what to do with its response)
	// or refuses it. It must be safe for concurrent use.
	Admit(ctx context.Context, req *AdmissionRequest) (*Admitted, *Refusal)
}

// AdmissionRequest is what Admit knows about a request, all computed once
// by the Director.
type AdmissionRequest struct {
	// Parsed is the request body as parsed once (model as the client named
	// it, stream flag, max tokens after the guard's clamp).
	Parsed *openai.Parsed
	// PromptTokens is openai.CountTokens of the prompt text.
	PromptTokens int
	// Identity is the authenticated caller, or nil when authentication is
	// off.
	Identity *auth.Identity
	// Route is the selected route, namespace/name ("" without routes).
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
	// status the model server answered with (0 when none answered).
	Release func(usage openai.Usage, status int)
}

// Refusal is a request an Admission refused: the error sent to the client,
// headers to add (Retry-After, x-ratelimit-*), and a reason for the
// x-gateway-request-dropped-reason header and metrics.
type Refusal struct {
	Err    *openai.Error
	Header http.Header
	Reason string
}
