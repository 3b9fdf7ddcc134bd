package director

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"

	"github.com/igw-dev/igw/pkg/openai"
	"github.com/igw-dev/igw/pkg/policy/auth"
)

// Inbound is a request as any data plane receives it, before anything is
// decided: the wire adapters (HTTP for igw serve, ext_proc for igw epp)
// fill it from their bytes and headers and do nothing else with it.
type Inbound struct {
	// ID identifies the request in logs; empty: the x-request-id header,
	// else a counter.
	ID string
	// Method and Path (without query) of the HTTP request, and its Host
	// (for routes with hostnames; empty matches only routes without).
	Method, Path, Host string
	// Header is the request's headers. The Director edits it in place
	// (routing headers and credentials removed, fairness id and objective
	// set from the identity); a plane that forwards requests itself sends
	// what it holds afterwards, one that forwards by mutation applies
	// Exchange.HeaderEdits.
	Header http.Header
	// Body is the whole request body.
	Body []byte
	// Subset, when not nil, restricts candidates to these addresses (the
	// gateway's subset hint); an empty non-nil slice means none.
	Subset []string
	// Pool, when set, is the only pool this plane serves (igw epp): routes
	// then only choose whether and how a request is taken, never another
	// backend.
	Pool string
}

// Reply is an answer the Director gives without a model server: a refused
// request (an OpenAI-style error) or a local answer (GET /v1/models). Both
// planes send it as it is: status, headers, body.
type Reply struct {
	Status int
	Header http.Header
	Body   []byte
	// Reason is the x-gateway-request-dropped-reason of a refusal ("" for
	// other replies), also in Header.
	Reason string
}

// Error is the reply's OpenAI error, for callers that inspect it (nil for
// a successful local answer).
func (r *Reply) Error() *openai.Error {
	if r.Status < 400 {
		return nil
	}
	e, ok := openai.ParseErrorBody(r.Body)
	if !ok {
		return nil
	}
	e.HTTPStatus = r.Status
	return e
}

// Reasons of refusals the Director makes before scheduling.
const (
	ReasonGuard             = "rejected-guard"
	ReasonAuth              = "rejected-unauthenticated"
	ReasonPickerUnavailable = "endpoint-picker-unavailable"
)

// Begin runs a request's lifecycle up to its decision: body bound, one
// parse, route, request guard, authentication, admission policy (quotas),
// model rewrite, flow control and scheduling. It returns the Exchange that
// carries the request to the model server and its response back, or the
// Reply to send instead. Every path of both data planes goes through here,
// so a request is treated the same whichever plane received it.
func (d *Director) Begin(ctx context.Context, in *Inbound) (*Exchange, *Reply) {
	pol := d.policy.Load()
	x := &Exchange{d: d, pol: pol, in: in, start: time.Now(), promptTokens: -1}
	if in.Header == nil {
		in.Header = http.Header{}
	}
	if d.tracer != nil {
		if x.trace = d.startTrace(ctx, in, x.start); x.trace != nil {
			ctx = context.WithValue(x.trace.ctx, requestTraceKey{}, x.trace)
		}
	}
	for _, h := range routingHeaders {
		in.Header.Del(h)
	}
	if pol.MaxBodyBytes > 0 && int64(len(in.Body)) > pol.MaxBodyBytes {
		return nil, x.refuse(openai.NewError(http.StatusRequestEntityTooLarge, openai.ErrTypeInvalidRequest,
			fmt.Sprintf("the request body is over the limit of %d bytes", pol.MaxBodyBytes)), "", nil)
	}
	kind := openai.KindForPath(in.Path)
	var parsed *openai.Parsed
	switch {
	case kind == 0 && in.Path == "/v1/models" && len(pol.Routes) > 0:
		return nil, x.models()
	case kind == 0 && strings.HasPrefix(in.Path, modelsPrefix) && len(pol.Routes) > 0:
		return nil, x.model(strings.TrimPrefix(in.Path, modelsPrefix))
	case kind == 0 && (in.Pool == "" || len(pol.Routes) > 0):
		// With routes, only the routed APIs exist, whichever plane asks.
		return nil, x.refuse(NoAPI(in.Method, in.Path), "", nil)
	case kind == 0:
		// Not an inference API call (GET /v1/models of a pool without
		// routes, a health probe through the gateway): balanced over the
		// pool without model or prompt.
		parsed = &openai.Parsed{}
	case in.Method != "" && in.Method != http.MethodPost:
		return nil, x.refuse(openai.NewError(http.StatusMethodNotAllowed, openai.ErrTypeInvalidRequest,
			fmt.Sprintf("%s takes POST, not %s", in.Path, in.Method)), "", http.Header{"Allow": {http.MethodPost}})
	case len(in.Body) == 0:
		e := openai.NewError(http.StatusBadRequest, openai.ErrTypeInvalidRequest, "the request body must name a model")
		e.Param = "model"
		return nil, x.refuse(e, "", nil)
	default:
		// The prompt is decoded into a recycled buffer: it is needed only
		// until the decision (guard, token count, prefix hashes, which
		// the scheduler keeps), and at hundreds of kilobytes it was the
		// largest allocation of a request.
		buf := d.prompts.Get(len(in.Body))
		defer x.releasePrompt(buf)
		p, err := openai.ParseRequestInto(kind, in.Body, buf)
		if err != nil {
			var oe *openai.Error
			if !errors.As(err, &oe) {
				oe = openai.NewError(http.StatusBadRequest, openai.ErrTypeInvalidRequest, err.Error())
			}
			return nil, x.refuse(oe, "", nil)
		}
		if !p.HasModel() {
			e := openai.NewError(http.StatusBadRequest, openai.ErrTypeInvalidRequest, "the request body must name a model")
			e.Param = "model"
			return nil, x.refuse(e, "", nil)
		}
		parsed = p
	}
	x.Parsed, x.Model, x.Body = parsed, parsed.Model, in.Body
	if x.trace != nil {
		x.trace.step(SpanParse, x.start, time.Now(), attribute.String("gen_ai.request.model", parsed.Model),
			attribute.Int("igw.request_bytes", len(in.Body)), attribute.Bool("igw.stream", parsed.Stream))
	}
	if kind != 0 && len(pol.Routes) > 0 {
		if x.Route = SelectRoute(pol.Routes, parsed.Model, in.Host, in.Path, in.Header); x.Route == nil {
			e := openai.ModelNotFound(parsed.Model)
			// Not labelled with the model: a client could otherwise create
			// a metric series per made-up model name, without bound.
			x.Model = ""
			return nil, x.refuse(e, "", nil)
		}
	}
	if x.Route != nil && x.Route.RequestHeaders != nil {
		x.Route.RequestHeaders.apply(in.Header)
		for _, h := range routingHeaders {
			in.Header.Del(h)
		}
	}
	if x.Route != nil && x.Route.Guard != nil {
		g := x.Route.Guard
		req := guardRequest(in.Header, x.Body, parsed)
		if g.NeedsPromptTokens() {
			req.PromptTokens = x.tokens()
		}
		out, v := g.Check(&req)
		if v != nil {
			return nil, x.refuse(v.Err, ReasonGuard, http.Header{HeaderGuardRule: {v.Rule}})
		}
		x.Body = out
	}
	if pol.Auth != nil {
		if r := x.authenticate(pol.Auth); r != nil {
			return nil, r
		}
	}
	if pol.Admission != nil && kind != 0 {
		route := ""
		if x.Route != nil {
			route = x.Route.Name
		}
		a, ref := pol.Admission.Admit(ctx, &AdmissionRequest{Parsed: parsed, PromptTokens: x.tokens(), Identity: x.Identity, Route: route})
		if ref != nil {
			e := ref.Err
			if e == nil {
				e = openai.NewError(http.StatusForbidden, openai.ErrTypeInvalidRequest, "request refused")
			}
			return nil, x.refuse(e, ref.Reason, ref.Header)
		}
		x.admitted = a
		if a != nil {
			x.ResponseHeader = a.Header
		}
	}
	switch {
	case in.Pool != "":
		x.Backend = &Backend{Pool: in.Pool, Weight: 1}
	case x.Route != nil:
		x.Backend = x.Route.pick()
	default:
		return nil, x.refuse(openai.NewError(http.StatusNotFound, openai.ErrTypeInvalidRequest, "no route"), "", nil)
	}
	if kind != 0 {
		x.setHeader(HeaderModelName, parsed.Model)
	}
	if x.Backend.Pool == "" || x.Backend.Remote != nil {
		return x, nil // a URL, or a pool another picker schedules: the data plane forwards
	}
	ttftSLO, tpotSLO, e := latencyObjectives(in.Header)
	if e != nil {
		return nil, x.refuse(e, "", nil)
	}
	explain := d.explain && in.Header.Get(HeaderDebugDecision) == "1"
	if in.Header.Get(HeaderDebugDecision) != "" {
		x.delHeader(HeaderDebugDecision) // for the gateway, not the model server
	}
	x.dreq = &Request{
		ID:         x.requestID(),
		Pool:       x.Backend.Pool,
		Parsed:     parsed,
		Body:       x.Body,
		Objective:  in.Header.Get(HeaderInferenceObjective),
		FairnessID: in.Header.Get(HeaderInferenceFairnessID),
		Headers:    pluginHeaders(in.Header),
		Subset:     in.Subset,

		TTFTObjective: ttftSLO,
		TPOTObjective: tpotSLO,
		Routed:        x.Route != nil,
		Explain:       explain,
	}
	dec, err := d.Decide(ctx, x.dreq)
	if err != nil {
		return nil, x.decideFailed(ctx, err)
	}
	x.Decision, x.Body = dec, dec.Body
	x.explained(dec)
	return x, nil
}

// explained adds dec's explanation, when the request asked for one, to
// the response headers: JSON, the top maxExplainedCandidates candidates
// of each profile.
func (x *Exchange) explained(dec *Decision) {
	if dec.Explanation == nil {
		return
	}
	dec.Explanation.Top(maxExplainedCandidates)
	b, err := json.Marshal(dec.Explanation)
	if err != nil {
		return
	}
	h := make(http.Header, len(x.ResponseHeader)+1)
	for k, v := range x.ResponseHeader {
		h[k] = v
	}
	h.Set(HeaderDecision, string(b))
	x.ResponseHeader = h
}

// decideFailed is the reply to a request Decide did not admit.
func (x *Exchange) decideFailed(ctx context.Context, err error) *Reply {
	var rej *Rejection
	if errors.As(err, &rej) {
		var h http.Header
		if rej.Status == http.StatusTooManyRequests {
			h = http.Header{HeaderRetryAfter: {RetryAfterValue(rej.RetryAfter)}}
		}
		return x.refuse(rej.OpenAI(), rej.Reason, h)
	}
	if ctx.Err() != nil {
		// The client left while the request was queued.
		return x.refuse(openai.NewError(499, openai.ErrTypeInvalidRequest, "the client went away"), "", nil)
	}
	return x.refuse(openai.NewError(http.StatusInternalServerError, openai.ErrTypeServer, "scheduling failed: "+err.Error()), "", nil)
}

// authenticate checks the request's credential (removing it from the
// headers) and makes the identity govern flow control: its tenant is the
// fairness id and the objective is the client's (if the credential allows
// it) or the credential's default. Whatever the client sent in those
// headers is replaced, so a caller can neither borrow another tenant's
// fair share nor raise its own priority.
func (x *Exchange) authenticate(a *auth.Authenticator) *Reply {
	h := x.in.Header
	hadKey := h.Get(auth.HeaderAPIKey) != ""
	hadAuthz := h.Get(auth.HeaderAuthorization) != ""
	id, f := a.Authenticate(h)
	if hadKey {
		x.delHeader(auth.HeaderAPIKey)
	}
	if hadAuthz {
		x.delHeader(auth.HeaderAuthorization)
	}
	if f == nil && x.Parsed.HasModel() {
		var objective string
		objective, f = auth.Authorize(id, x.Parsed.Model, h.Get(HeaderInferenceObjective))
		if f == nil {
			if objective != "" {
				x.setHeader(HeaderInferenceObjective, objective)
			} else if h.Get(HeaderInferenceObjective) != "" {
				x.delHeader(HeaderInferenceObjective)
			}
		}
	}
	if f != nil {
		x.d.obs.AuthRejected(f.Reason)
		var hdr http.Header
		if f.Challenge != "" {
			hdr = http.Header{HeaderWWWAuthenticate: {f.Challenge}}
		}
		return x.refuse(f.Err, "", hdr)
	}
	x.Identity = id
	x.setHeader(HeaderInferenceFairnessID, id.Tenant)
	return nil
}

// models answers GET /v1/models: the exactly routed models; with
// authentication on, only those the credential may use.
func (x *Exchange) models() *Reply {
	if x.in.Method != "" && x.in.Method != http.MethodGet {
		return x.refuse(openai.NewError(http.StatusMethodNotAllowed, openai.ErrTypeInvalidRequest,
			fmt.Sprintf("/v1/models takes GET, not %s", x.in.Method)), "", http.Header{"Allow": {http.MethodGet}})
	}
	var id *auth.Identity
	if a := x.pol.Auth; a != nil {
		var f *auth.Failure
		if id, f = a.Authenticate(x.in.Header); f != nil {
			x.d.obs.AuthRejected(f.Reason)
			return x.refuse(f.Err, "", http.Header{HeaderWWWAuthenticate: {f.Challenge}})
		}
	}
	list := openai.ModelList{Object: openai.ObjectList, Data: []openai.Model{}}
	for _, m := range x.pol.Models {
		if id != nil && !id.AllowsModel(m) {
			continue
		}
		list.Data = append(list.Data, openai.Model{ID: m, Object: openai.ObjectModel, Created: x.d.started.Unix(), OwnedBy: "igw"})
	}
	body, _ := json.Marshal(list)
	return &Reply{Status: http.StatusOK, Header: http.Header{"Content-Type": {"application/json"}}, Body: body}
}

// modelsPrefix is the path of GET /v1/models/{id} before the id.
const modelsPrefix = "/v1/models/"

// model answers GET /v1/models/{id} from the routes, as GET /v1/models
// lists them: the model, or OpenAI's 404 model_not_found. A model id may
// hold slashes (meta-llama/Llama-3.1-8B-Instruct), so the rest of the
// path is the id.
func (x *Exchange) model(name string) *Reply {
	r := x.models()
	if r.Status != http.StatusOK {
		return r
	}
	var list openai.ModelList
	_ = json.Unmarshal(r.Body, &list)
	for _, m := range list.Data {
		if m.ID == name {
			r.Body, _ = json.Marshal(m)
			return r
		}
	}
	return x.refuse(openai.ModelNotFound(name), "", nil)
}

// NoAPI is the error for a path the gateway serves no API at, as OpenAI
// words it for an unknown URL.
func NoAPI(method, path string) *openai.Error {
	return openai.NewError(http.StatusNotFound, openai.ErrTypeInvalidRequest,
		fmt.Sprintf("Invalid URL (%s %s)", method, openai.Echo(path)))
}

// refuse ends the exchange before any model server saw it: the admission
// policy's reservation (if any) is released, the outcome counted, and the
// reply built with the dropped reason and extra headers.
func (x *Exchange) refuse(e *openai.Error, reason string, extra http.Header) *Reply {
	h := make(http.Header, len(extra)+len(x.ResponseHeader)+3)
	for k, v := range x.ResponseHeader {
		h[k] = v
	}
	for k, v := range extra {
		h[k] = v
	}
	if reason != "" {
		h.Set(DroppedReasonHeader, reason)
	}
	body := e.Body(openai.KindForPath(x.in.Path))
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	x.status, x.reason = e.Status(), reason
	x.finish(context.Background(), nil)
	return &Reply{Status: e.Status(), Header: h, Body: body, Reason: reason}
}

// releasePrompt hands the prompt buffer back once the decision is made:
// the scheduler has the prompt's block hashes in its cycle state, and
// nothing after Begin reads the text (nor, through the scheduling
// request, the body).
func (x *Exchange) releasePrompt(buf []byte) {
	if x.Parsed != nil {
		x.Parsed.Prompt = nil
	}
	if x.Decision != nil && x.Decision.sreq != nil {
		x.Decision.sreq.Prompt = nil
		x.Decision.sreq.Body = nil
	}
	x.d.prompts.Put(buf)
}

// tokens counts the prompt's tokens once per request (the guard and the
// admission policy share the count).
func (x *Exchange) tokens() int {
	if x.promptTokens < 0 {
		x.promptTokens = openai.CountTokens(string(x.Parsed.Prompt))
	}
	return x.promptTokens
}

func (x *Exchange) requestID() string {
	if x.in.ID != "" {
		return x.in.ID
	}
	if id := x.in.Header.Get("X-Request-Id"); id != "" {
		return id
	}
	return strconv.FormatUint(x.d.requestIDs.Add(1), 36)
}

// setHeader sets a request header and records the edit for planes that
// forward by mutation.
func (x *Exchange) setHeader(k, v string) {
	x.in.Header.Set(k, v)
	x.edits.set = append(x.edits.set, k)
}

// delHeader removes a request header and records the edit.
func (x *Exchange) delHeader(k string) {
	x.in.Header.Del(k)
	x.edits.remove = append(x.edits.remove, k)
}

// HeaderEdits are the changes the Director made to the request headers
// (canonical names): set holds names whose value to send is
// Header().Get(name); remove the names to drop. A plane that forwards the
// client's request by mutation (ext_proc) applies them; the routing
// headers a client sent are not listed and must be removed by the plane
// itself (IsRoutingHeader).
func (x *Exchange) HeaderEdits() (set, remove []string) { return x.edits.set, x.edits.remove }

// Header is the request headers to forward, after the Director's edits.
func (x *Exchange) Header() http.Header { return x.in.Header }
