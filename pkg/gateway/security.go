package gateway

import (
	"net/http"

	"github.com/igw-dev/igw/pkg/gateway/auth"
	"github.com/igw-dev/igw/pkg/gateway/guard"
	"github.com/igw-dev/igw/pkg/openai"
	"github.com/igw-dev/igw/pkg/telemetry"
)

// The gateway's metrics count guard hits.
var _ guard.Observer = (*telemetry.Metrics)(nil)

// reasonGuard is the x-gateway-request-dropped-reason of a request the
// route's RequestGuard refused (the rule is in X-Gateway-Guard-Rule).
const reasonGuard = "rejected-guard"

// checkGuard runs the route's request guard over what the gateway already
// read and parsed, counting prompt tokens only if the guard needs them
// (once per request: admission reuses the count).
func (s *Server) checkGuard(g *guard.Guard, r *http.Request, body []byte, parsed *openai.Parsed, ex *exchange) ([]byte, *guard.Violation) {
	req := guard.Request{Header: r.Header, Body: body, Parsed: parsed}
	if g.NeedsPromptTokens() {
		req.PromptTokens = ex.tokens(parsed)
	}
	return g.Check(&req)
}

// authenticate checks the request's credential, removes it from the
// headers, and makes the identity govern flow control: its tenant is the
// fairness id and the objective is the client's (if the credential allows
// it) or the credential's default. Whatever the client sent in those
// headers is replaced, so a caller can neither borrow another tenant's
// fair share nor raise its own priority.
func authenticate(a *auth.Authenticator, r *http.Request, model string) (*auth.Identity, *auth.Failure) {
	id, f := a.Authenticate(r.Header)
	if f != nil {
		return nil, f
	}
	objective, f := auth.Authorize(id, model, r.Header.Get(HeaderInferenceObjective))
	if f != nil {
		return nil, f
	}
	r.Header.Set(HeaderInferenceFairnessID, id.Tenant)
	if objective != "" {
		r.Header.Set(HeaderInferenceObjective, objective)
	} else {
		r.Header.Del(HeaderInferenceObjective)
	}
	return id, nil
}

// genAIOperation is the OpenTelemetry GenAI operation name of an API.
func genAIOperation(k openai.Kind) string {
	switch k {
	case openai.KindChat:
		return "chat"
	case openai.KindCompletion:
		return "text_completion"
	case openai.KindEmbeddings:
		return "embeddings"
	case openai.KindResponses:
		return "responses"
	}
	return "unknown"
}
