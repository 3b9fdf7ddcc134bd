package director

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/igw-dev/igw/pkg/datastore"
	"github.com/igw-dev/igw/pkg/director/outlier"
	"github.com/igw-dev/igw/pkg/openai"
	"github.com/igw-dev/igw/pkg/policy/auth"
	"github.com/igw-dev/igw/pkg/policy/guard"
	"github.com/igw-dev/igw/pkg/scheduling"
)

// Exchange is one admitted request on its way to a model server and its
// response on the way back. The data plane forwards the request (Body,
// Header) to the decided endpoints and feeds the response through
// ResponseHeaders and ResponseBody; the Exchange observes it without
// buffering — first-byte time, usage, the client's model name restored
// after a rewrite — and Finish completes it: in-flight release, scheduler
// hooks, metrics, quota settlement. Its methods are for one goroutine at a
// time (the request's), as a data plane handles a request.
type Exchange struct {
	d     *Director
	pol   *Policy
	in    *Inbound
	start time.Time

	// Parsed is the body as parsed once; Model the model the client asked
	// for ("" when the request named none).
	Parsed *openai.Parsed
	Model  string
	// Route is the route taken (nil without routes); Backend where it goes.
	Route   *Route
	Backend *Backend
	// Identity is the authenticated caller, or nil with authentication off.
	Identity *auth.Identity
	// Body is the request body to forward: the client's, or a copy with
	// max_tokens clamped by the guard and the model rewritten.
	Body []byte
	// Decision is the scheduling decision for a pool this Director
	// schedules; nil for URL backends and pools with a remote picker.
	Decision *Decision
	// ResponseHeader is added to the response (x-ratelimit-*).
	ResponseHeader http.Header

	edits        struct{ set, remove []string }
	admitted     *Admitted
	promptTokens int
	dreq         *Request // what Decide was asked, for Readmit
	readmits     int

	att      *Attempt   // the current attempt on a scheduled endpoint
	ps       *poolState // the pool's retry budget, from the first Try
	retrying bool       // holds a place in the retry budget
	inFlight bool
	served   string
	status   int
	ttft     time.Duration
	byte1    time.Duration // to the first response byte, TTFT's fallback
	obs      *openai.UsageObserver
	restore  *openai.ModelRestorer
	stream   bool // the response is an event stream (SSE)
	finished bool
	reason   string // the dropped reason of a refusal
	retries  int
	// respBytes counts the body bytes sent to the client.
	respBytes int64
	// labelled is set once mModel and mTarget, the metric labels of the
	// model and target model, are computed (metricModels).
	labelled        bool
	mModel, mTarget string
	// trace is the request's spans; nil when tracing is off or the
	// sampler dropped the request.
	trace *requestTrace
	// wrap holds the start of a non-JSON error response (a proxy's or a
	// web server's plain-text 404) while it is turned into an error body
	// in the API's shape; nil for every other response.
	wrap []byte
}

// maxWrappedError bounds what of a non-JSON error body is kept for the
// message of the error that replaces it.
const maxWrappedError = 512

// Pool is the pool (namespace/name) or the URL host the request goes to,
// the label of its metrics.
func (x *Exchange) Pool() string {
	switch {
	case x.Backend == nil:
		return ""
	case x.Backend.Pool != "":
		return x.Backend.Pool
	case x.Backend.URL != nil:
		return x.Backend.URL.Host
	}
	return ""
}

// TargetModel is the model the server sees (after a rewrite).
func (x *Exchange) TargetModel() string {
	if x.Decision != nil {
		return x.Decision.TargetModel
	}
	return x.Model
}

// Timeout bounds the whole request on a plane that proxies (the route's;
// 0: none).
func (x *Exchange) Timeout() time.Duration {
	if x.Route == nil {
		return 0
	}
	return x.Route.Timeout
}

// Retries is how many further endpoints a proxying plane may try before
// the first response byte.
func (x *Exchange) Retries() int {
	if x.Route == nil {
		return 0
	}
	return x.Route.Retries
}

// Endpoints are the scheduled endpoints' addresses, primary first.
func (x *Exchange) Endpoints() []string {
	if x.Decision == nil {
		return nil
	}
	out := make([]string, len(x.Decision.Endpoints))
	for i, ep := range x.Decision.Endpoints {
		out[i] = ep.Address
	}
	return out
}

// Try starts an attempt on addr (a scheduled endpoint, a fallback, a URL's
// host or a remote picker's choice). For a scheduled pool the endpoint's
// in-flight count rises and the scheduler's pre-request hooks run. A
// previous attempt still open on another endpoint is finished as not
// served and counted as that endpoint's failure: a plane only moves on
// without Retry when something else (Envoy) failed over.
func (x *Exchange) Try(ctx context.Context, addr string) {
	if !x.inFlight {
		x.inFlight = true
		m, _ := x.metricModels()
		x.d.obs.InFlight(x.Pool(), m, 1)
		if x.Decision != nil {
			x.ps = x.Decision.ps // looked up once, by Decide
		} else {
			x.ps = x.d.poolState(x.Pool())
		}
		x.ps.active.Add(1)
	}
	x.served = addr
	if x.trace != nil {
		for k, v := range x.trace.startAttempt(addr) {
			x.setHeader(k, v[0]) // the model server's spans join the trace
		}
	}
	if x.Decision == nil {
		return
	}
	if x.att != nil {
		if x.att.ep.Address == addr {
			return
		}
		x.att.Report(outlier.Failure)
		x.att.Finish(ctx, scheduling.Response{Err: errNotServed})
	}
	ep := x.endpoint(addr)
	if ep == nil {
		x.att = nil
		return
	}
	x.att = x.Decision.Start(ctx, ep)
}

// MaxReadmissions bounds how often one request goes back through
// admission after model servers refused it (Readmit).
const MaxReadmissions = 3

// Refused reports whether an answer with status from the current
// attempt's endpoint is a refusal for lack of room — a 429, 500 or 503
// from a server holding other requests — which Readmit handles better
// than a retry on a fallback chosen before the server filled up.
func (x *Exchange) Refused(status int) bool {
	return x.att != nil && refusedForRoom(x.att.ep, status)
}

// Readmit sends a request a model server refused for lack of room back
// through admission and scheduling, as the pool is now: the endpoint's
// refusal ceiling is noted, so it is no candidate until it has room, and
// while no endpoint has room the request waits in the pool's queue in its
// priority's order instead of being surfaced to the client. It returns the
// new endpoints to try, or the reply when admission refuses the request
// (a sheddable one is shed, a queued one may time out). nil, nil means the
// request was readmitted MaxReadmissions times already (or is not
// scheduled here): the plane answers with the refusal as it is.
// Readmissions do not draw on the retry budget: admission itself bounds
// them, a refusal took no work, and the request waits rather than retries
// at once.
func (x *Exchange) Readmit(ctx context.Context, status int) ([]string, *Reply) {
	if x.Decision == nil || x.dreq == nil || x.readmits >= MaxReadmissions || ctx.Err() != nil {
		return nil, nil
	}
	x.readmits++
	if x.trace != nil {
		x.trace.endAttempt(status, errRefusedForRoom)
	}
	if x.att != nil {
		x.att.noteRefusal(status)
		x.att.Report(outlier.Abandoned)
		x.att.Finish(ctx, scheduling.Response{StatusCode: status})
		x.att = nil
	}
	x.d.obs.Readmitted(x.Pool())
	dec, err := x.d.Decide(ctx, x.dreq)
	if err != nil {
		return nil, x.decideFailed(ctx, err)
	}
	x.Decision, x.Body = dec, dec.Body
	x.explained(dec)
	return x.Endpoints(), nil
}

// Served is the address of the current attempt ("" before any).
func (x *Exchange) Served() string { return x.served }

// UpstreamPath is the path to send to the backend: the request's, as its
// route rewrites it.
func (x *Exchange) UpstreamPath() string {
	if x.Route == nil {
		return x.in.Path
	}
	return x.Route.UpstreamPath(x.in.Path)
}

// errNotServed finishes an attempt on an endpoint the request did not stay
// on (the data plane moved to a fallback).
var errNotServed = errors.New("director: the request was served from another endpoint")

// errRefusedForRoom ends a traced attempt the model server refused for
// lack of room (Readmit).
var errRefusedForRoom = errors.New("director: the model server refused the request for lack of room")

// MayRetry asks the pool's retry budget whether the request may be
// retried on another endpoint (a proxying plane asks before Retry). The
// first retry of a request takes a place in the budget, held until the
// request finishes; a request already holding one may go on retrying
// within Retries. When it says no, the plane answers with the failure it
// has (Fail, or the response as it is).
func (x *Exchange) MayRetry() bool {
	if x.retrying {
		return true
	}
	if x.ps == nil {
		x.ps = x.d.poolState(x.Pool())
	}
	if !x.ps.acquireRetry(x.pol.resilience(x.Pool()).RetryBudget) {
		x.d.obs.RetryDenied(x.Pool())
		return false
	}
	x.retrying = true
	return true
}

// Retry ends the current attempt as failed before any response byte (a
// transport error or a retryable status), which outlier detection counts
// against the endpoint; the plane then Tries the next endpoint.
func (x *Exchange) Retry(ctx context.Context, status int, err error) {
	if x.trace != nil {
		x.trace.endAttempt(status, err)
	}
	if x.att != nil {
		x.att.noteRefusal(status)
		x.att.Report(outcomeOf(status, err))
		x.att.Finish(ctx, scheduling.Response{StatusCode: status, Err: err})
		x.att = nil
	}
	x.retries++
	x.d.obs.Retried(x.Pool())
}

func (x *Exchange) endpoint(addr string) *datastore.Endpoint {
	for _, ep := range x.Decision.Endpoints {
		if ep.Address == addr {
			return ep
		}
	}
	return nil
}

// ResponseHeaders observes the model server's status and headers. It
// reports whether the body will be rewritten (the client's model name
// restored), in which case its length changes and the plane must drop
// Content-Length.
//
// A model server's error that is not JSON (a plain-text "404 page not
// found") is replaced by an error in the API's shape quoting it, with its
// status: clients parse error bodies as JSON. JSON errors pass unchanged.
func (x *Exchange) ResponseHeaders(status int, contentType string) (rewritesBody bool) {
	x.status = status
	x.stream = openai.IsEventStream(contentType)
	if x.att != nil {
		x.att.noteRefusal(status)
		x.att.Report(outcomeOf(status, nil))
	}
	if x.wrap != nil { // an earlier response of this exchange was wrapped
		x.wrap = nil
		x.ResponseHeader.Del("Content-Type") // the exchange's own copy
	}
	if status >= 400 && !openai.IsJSON(contentType) {
		x.wrap = make([]byte, 0, maxWrappedError)
		h := make(http.Header, len(x.ResponseHeader)+1)
		for k, v := range x.ResponseHeader {
			h[k] = v
		}
		h.Set("Content-Type", "application/json")
		x.ResponseHeader = h
		return true
	}
	x.obs = openai.NewUsageObserver(contentType)
	if t := x.TargetModel(); x.Model != "" && t != x.Model {
		x.restore = openai.NewModelRestorer(t, x.Model)
	}
	return x.restore != nil
}

// ResponseBody observes one chunk of the response body and returns the
// bytes to send the client in its place. Unless final it may hold back a
// few bytes (a model name cut by the chunk's end) for the next call; final
// forces everything out.
func (x *Exchange) ResponseBody(chunk []byte, final bool) []byte {
	if x.wrap != nil {
		if x.byte1 == 0 && len(chunk) > 0 {
			x.byte1 = time.Since(x.start)
		}
		x.wrap = append(x.wrap, chunk[:min(len(chunk), cap(x.wrap)-len(x.wrap))]...)
		if !final {
			return nil
		}
		out := x.wrappedError()
		x.respBytes += int64(len(out))
		return out
	}
	if x.obs != nil {
		_, _ = x.obs.Write(chunk)
	}
	// Time to first token: the first event with output for a stream (an
	// engine's first event, the role, comes before prefill), else the
	// first byte.
	if x.byte1 == 0 && len(chunk) > 0 {
		x.byte1 = time.Since(x.start)
		if x.trace != nil {
			x.trace.gotFirstByte()
		}
	}
	if x.ttft == 0 && len(chunk) > 0 && (!x.stream || x.obs.SawToken()) {
		x.ttft = time.Since(x.start)
		if x.att != nil && x.att.firstByte == 0 {
			x.att.firstByte = time.Since(x.att.start)
		}
	}
	if x.restore != nil {
		out := x.restore.Write(chunk, final)
		x.respBytes += int64(len(out))
		return out
	}
	x.respBytes += int64(len(chunk))
	return chunk
}

// ResponseBroken handles a response the model server's side cut before
// its end (the connection broke, the route's timeout passed) after part of
// it reached the client. It is counted, and for a streamed response it
// returns the bytes to send last: an error event in the API's shape
// (openai.StreamErrorEvent), so no client mistakes the cut for a complete
// answer. It returns nil for a response that is not a stream; the plane
// must then break the transfer (close the connection without ending the
// body) so the client sees an error rather than a short body.
func (x *Exchange) ResponseBroken(err error) []byte {
	x.d.obs.ResponseBroken(x.Pool())
	if !x.stream {
		return nil
	}
	msg := "the model server's response broke off before its end"
	if errors.Is(err, context.DeadlineExceeded) {
		msg = "the request timed out before the model server's response ended"
	}
	kind := openai.KindChat
	if x.Parsed != nil {
		kind = x.Parsed.Kind
	}
	out := openai.StreamErrorEvent(kind, openai.NewError(http.StatusBadGateway, openai.ErrTypeServer, msg))
	if x.restore != nil { // whatever the restorer held back goes first
		out = append(x.restore.Write(nil, true), out...)
	}
	return out
}

// wrappedError is the error body that replaces a non-JSON error response.
func (x *Exchange) wrappedError() []byte {
	typ := openai.TypeForStatus(x.status)
	text := strings.TrimSpace(strings.ToValidUTF8(string(x.wrap), "\uFFFD"))
	e := openai.NewError(x.status, typ, fmt.Sprintf("the model server answered %d %s: %s", x.status, http.StatusText(x.status), text))
	x.wrap = x.wrap[:0]
	kind := openai.KindChat
	if x.Parsed != nil {
		kind = x.Parsed.Kind
	}
	return e.Body(kind)
}

// AttemptTimedOut records that the current attempt was abandoned in phase
// ("connect" or "first_byte"); the plane then Retries or Fails as usual.
func (x *Exchange) AttemptTimedOut(phase string) { x.d.obs.AttemptTimedOut(x.Pool(), phase) }

// WrapResponseBody lets the admission policy meter a response body read by
// the plane (a streamed response over its token budget ends with an error
// event). Planes that are pushed chunks rather than reading them (ext_proc)
// do without: the budget is then settled at Finish.
func (x *Exchange) WrapResponseBody(body io.ReadCloser) io.ReadCloser {
	if x.admitted != nil && x.admitted.WrapBody != nil {
		return x.admitted.WrapBody(body)
	}
	return body
}

// Fail ends an exchange whose model server could not answer before a
// response started (every attempt failed): the error to send the client.
// When ctx was canceled (the client went away, a half-closed connection
// included) the model server is not to blame: the request is counted as
// 499 and the attempt ends with the cancellation as its error.
func (x *Exchange) Fail(ctx context.Context, err error) *Reply {
	e := UpstreamError(err)
	if errors.Is(ctx.Err(), context.Canceled) {
		e = openai.NewError(499, openai.ErrTypeInvalidRequest, "the client went away")
		err = fmt.Errorf("%w (the client went away): %w", context.Canceled, err)
	}
	if errors.Is(err, errPickerUnavailable) {
		e = openai.NewError(http.StatusServiceUnavailable, openai.ErrTypeUnavailable, "the endpoint picker of this pool is unavailable")
		return x.refuse(e, ReasonPickerUnavailable, nil)
	}
	if x.trace != nil {
		x.trace.endAttempt(0, err)
	}
	if x.att != nil {
		x.att.Report(outcomeOf(0, err))
		x.att.Finish(ctx, scheduling.Response{Err: err})
		x.att = nil
	}
	return x.refuse(e, "", nil)
}

// errPickerUnavailable marks a FailClose pool whose remote picker could
// not decide; wrap it with ErrPickerUnavailable.
var errPickerUnavailable = errors.New("the endpoint picker is unavailable")

// ErrPickerUnavailable is what a plane passes to Fail when a FailClose
// pool's remote picker could not decide (503, endpoint-picker-unavailable).
func ErrPickerUnavailable(cause error) error {
	return fmt.Errorf("%w: %w", errPickerUnavailable, cause)
}

// Answer ends an exchange that another component answered without a model
// server (a remote picker's immediate response): it is counted with that
// status and the plane sends the reply as it is.
func (x *Exchange) Answer(status int, header http.Header, body []byte) *Reply {
	x.status = status
	x.finish(context.Background(), nil)
	return &Reply{Status: status, Header: header, Body: body, Reason: header.Get(DroppedReasonHeader)}
}

// Refuse answers a request for path the plane refused before the Director
// saw it (a body over the limit, a body that could not be read), counted
// and shaped like the Director's own refusals (Anthropic's shape on the
// Messages API, OpenAI's elsewhere).
func (d *Director) Refuse(path string, e *openai.Error) *Reply {
	x := &Exchange{d: d, pol: d.policy.Load(), in: &Inbound{Path: path, Header: http.Header{}}, start: time.Now()}
	return x.refuse(e, "", nil)
}

// UpstreamError is the client's error for a model server that could not
// be reached or did not answer in time.
func UpstreamError(err error) *openai.Error {
	if errors.Is(err, context.DeadlineExceeded) {
		return openai.NewError(http.StatusGatewayTimeout, openai.ErrTypeUnavailable, "the model server did not answer in time")
	}
	return openai.NewError(http.StatusBadGateway, openai.ErrTypeUnavailable, "the model server could not be reached: "+err.Error())
}

// Finish completes the exchange: the attempt ends with what the response
// showed (err is why it ended early, nil when the response completed), the
// outcome is counted and the admission policy settles the usage. It is
// idempotent.
func (x *Exchange) Finish(ctx context.Context, err error) { x.finish(ctx, err) }

func (x *Exchange) finish(ctx context.Context, err error) {
	if x.finished {
		return
	}
	x.finished = true
	var usage openai.Usage
	if x.obs != nil {
		usage, _ = x.obs.Usage()
	}
	cached := 0
	if usage.PromptTokensDetails != nil {
		cached = usage.PromptTokensDetails.CachedTokens
	}
	if x.att != nil {
		x.att.Finish(context.WithoutCancel(ctx), scheduling.Response{StatusCode: x.status, Err: err,
			PromptTokens: usage.PromptTokens, CompletionTokens: usage.CompletionTokens, CachedTokens: cached,
			Streamed: x.stream})
	}
	if x.inFlight {
		m, _ := x.metricModels()
		x.d.obs.InFlight(x.Pool(), m, -1)
		x.ps.active.Add(-1)
	}
	if x.retrying {
		x.ps.retrying.Add(-1)
	}
	pool := x.Pool()
	took := time.Since(x.start)
	if x.ttft == 0 { // a stream in which no event looked like output
		x.ttft = x.byte1
	}
	c := x.completion(took, usage.PromptTokens, usage.CompletionTokens, cached)
	x.d.obs.RequestDone(c)
	if x.trace != nil {
		x.trace.end(x, c, err)
	}
	x.observeObjectives(pool, err, took, usage.CompletionTokens)
	if x.obs != nil {
		x.d.obs.Tokens(c.MetricModel, pool, usage.PromptTokens, usage.CompletionTokens, cached)
		tenant := ""
		if x.Identity != nil {
			tenant = x.Identity.Tenant
		}
		x.d.obs.TokenUsage(tenant, c.MetricModel, genAIOperation(x.Parsed), usage.PromptTokens, usage.CompletionTokens)
	}
	if x.admitted != nil && x.admitted.Release != nil {
		st := 0
		if x.obs != nil {
			st = x.status
		}
		x.admitted.Release(usage, st)
	}
}

// genAIOperation is the OpenTelemetry GenAI operation name of an API.
func genAIOperation(p *openai.Parsed) string {
	if p == nil {
		return "unknown"
	}
	switch p.Kind {
	case openai.KindChat:
		return "chat"
	case openai.KindCompletion:
		return "text_completion"
	case openai.KindEmbeddings:
		return "embeddings"
	case openai.KindResponses:
		return "responses"
	case openai.KindMessages:
		return "chat"
	}
	return "unknown"
}

func guardRequest(h http.Header, body []byte, p *openai.Parsed) guard.Request {
	return guard.Request{Header: h, Body: body, Parsed: p}
}

// observeObjectives counts whether a streamed, completed response met
// its latency objectives: TTFT as the client saw it (admission queueing
// included), TPOT over the tokens after the first.
func (x *Exchange) observeObjectives(pool string, err error, took time.Duration, out int) {
	dec := x.Decision
	if dec == nil || err != nil || x.status != http.StatusOK || !x.stream || x.ttft == 0 {
		return
	}
	if dec.TTFTObjective > 0 {
		x.d.obs.LatencyObjective(pool, "ttft", x.ttft <= dec.TTFTObjective)
	}
	if dec.TPOTObjective > 0 && out >= 2 {
		x.d.obs.LatencyObjective(pool, "tpot", (took-x.ttft)/time.Duration(out-1) <= dec.TPOTObjective)
	}
}
