package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/igw-dev/igw/pkg/director"
	"github.com/igw-dev/igw/pkg/gateway/auth"
	"github.com/igw-dev/igw/pkg/gateway/guard"
	"github.com/igw-dev/igw/pkg/openai"
	"github.com/igw-dev/igw/pkg/scheduling"
)

// Header names the gateway owns (REFERENCE §2–§3).
const (
	HeaderModelName               = "X-Gateway-Model-Name"
	HeaderBaseModelName           = "X-Gateway-Base-Model-Name"
	HeaderDestinationEndpoint     = "X-Gateway-Destination-Endpoint"
	HeaderDestinationServed       = "X-Gateway-Destination-Endpoint-Served"
	HeaderDestinationSubset       = "X-Gateway-Destination-Endpoint-Subset"
	HeaderInferenceObjective      = "X-Gateway-Inference-Objective"
	HeaderInferenceFairnessID     = "X-Gateway-Inference-Fairness-Id"
	headerRequestDroppedReason    = director.DroppedReasonHeader
	relayBufferSize               = 32 << 10
	maxRetryAfterRejectionSeconds = 1
)

// routingHeaders are set only by the gateway: a client that sends them is
// ignored, so it can never choose the endpoint.
var routingHeaders = []string{
	HeaderModelName, HeaderBaseModelName, HeaderDestinationEndpoint, HeaderDestinationServed,
	HeaderDestinationSubset, headerRequestDroppedReason,
}

// hopHeaders are connection-specific (RFC 9110 §7.6.1) and never forwarded.
var hopHeaders = []string{
	"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization",
	"Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

// Handler serves the OpenAI-compatible API.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	for _, path := range []string{"/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/responses"} {
		kind := openai.KindForPath(path)
		mux.HandleFunc("POST "+path, func(w http.ResponseWriter, r *http.Request) { s.serveInference(w, r, kind) })
	}
	mux.HandleFunc("GET /v1/models", s.handleModels)
	mux.HandleFunc("GET /healthz", s.handleHealthz)
	mux.HandleFunc("GET /readyz", s.handleReadyz)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		openai.WriteError(w, openai.NewError(http.StatusNotFound, openai.ErrTypeNotFound, fmt.Sprintf("no API at %s %s", r.Method, r.URL.Path)))
	})
	return mux
}

// handleModels lists the exactly routed models; with authentication on,
// it requires a credential and lists only the models it may use.
func (s *Server) handleModels(w http.ResponseWriter, r *http.Request) {
	rt := s.rt.Load()
	var id *auth.Identity
	if rt.auth != nil {
		var f *auth.Failure
		if id, f = rt.auth.Authenticate(r.Header); f != nil {
			s.metrics.AuthRejected(f.Reason)
			w.Header().Set(auth.HeaderWWWAuthenticate, f.Challenge)
			openai.WriteError(w, f.Err)
			return
		}
	}
	list := openai.ModelList{Object: openai.ObjectList, Data: []openai.Model{}}
	for _, m := range rt.models {
		if id != nil && !id.AllowsModel(m) {
			continue
		}
		list.Data = append(list.Data, openai.Model{ID: m, Object: openai.ObjectModel, Created: s.started.Unix(), OwnedBy: "igw"})
	}
	body, _ := json.Marshal(list)
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(body)
}

// serveInference is one inference request: read and parse the body once,
// pick the route, apply its request guard, authenticate, let the
// Admission (quotas) admit it, pick the backend, let the Director decide
// (for a pool) and proxy with retries on the Director's fallbacks. What the
// guard, authentication or admission refuse never reaches the Director.
func (s *Server) serveInference(w http.ResponseWriter, r *http.Request, kind openai.Kind) {
	start := time.Now()
	rt := s.rt.Load()
	for _, h := range routingHeaders {
		r.Header.Del(h)
	}
	limit := rt.cfg.Gateway.Spec.MaxRequestBodyBytes()
	if r.ContentLength > limit {
		s.fail(w, "", "", start, openai.NewError(http.StatusRequestEntityTooLarge, openai.ErrTypeInvalidRequest,
			fmt.Sprintf("request body of %d bytes is over the limit of %d bytes", r.ContentLength, limit)))
		return
	}
	body, err := readBody(w, r, limit)
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			s.fail(w, "", "", start, openai.NewError(http.StatusRequestEntityTooLarge, openai.ErrTypeInvalidRequest,
				fmt.Sprintf("request body is over the limit of %d bytes", limit)))
			return
		}
		s.fail(w, "", "", start, openai.NewError(http.StatusBadRequest, openai.ErrTypeInvalidRequest, "could not read the request body"))
		return
	}
	parsed, err := openai.ParseRequest(kind, body)
	if err != nil {
		var oe *openai.Error
		if !errors.As(err, &oe) {
			oe = openai.NewError(http.StatusBadRequest, openai.ErrTypeInvalidRequest, err.Error())
		}
		s.fail(w, "", "", start, oe)
		return
	}
	if !parsed.HasModel() {
		e := openai.NewError(http.StatusBadRequest, openai.ErrTypeInvalidRequest, "the request body must name a model")
		e.Param = "model"
		s.fail(w, "", "", start, e)
		return
	}
	cr, timeout, retries := rt.selectRoute(parsed.Model, r)
	if cr == nil {
		e := openai.NewError(http.StatusNotFound, openai.ErrTypeNotFound, fmt.Sprintf("The model `%s` does not exist.", parsed.Model))
		e.Param = "model"
		// Not labelled with the model: a client could otherwise create a
		// metric series per made-up model name, without bound.
		s.fail(w, "", "", start, e)
		return
	}
	ex := &exchange{start: start, promptTokens: -1, kind: kind}
	if cr.guard != nil {
		out, v := s.checkGuard(cr.guard, r, body, parsed, ex)
		if v != nil {
			w.Header().Set(guard.HeaderRule, v.Rule)
			w.Header().Set(headerRequestDroppedReason, reasonGuard)
			s.fail(w, parsed.Model, "", start, v.Err)
			return
		}
		body = out
	}
	if rt.auth != nil {
		id, f := authenticate(rt.auth, r, parsed.Model)
		if f != nil {
			s.metrics.AuthRejected(f.Reason)
			if f.Challenge != "" {
				w.Header().Set(auth.HeaderWWWAuthenticate, f.Challenge)
			}
			s.fail(w, parsed.Model, "", start, f.Err)
			return
		}
		ex.identity = id
	}
	admit, rej := s.admit(r.Context(), rt, &AdmissionRequest{Parsed: parsed, Identity: ex.identity, Route: cr.name}, ex)
	if rej != nil {
		s.refuse(w, parsed.Model, ex, rej)
		return
	}
	if admit != nil {
		for k, v := range admit.Header {
			w.Header()[k] = v
		}
		if admit.Release != nil {
			defer func() { admit.Release(ex.usage, ex.status) }()
		}
	}
	ctx := r.Context()
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	be := cr.pick()
	r.Header.Set(HeaderModelName, parsed.Model)
	if be.url != nil {
		s.proxyURL(ctx, w, r, be, body, parsed, retries, ex)
		return
	}
	if rs := rt.remotes[be.pool]; rs != nil {
		s.proxyRemote(ctx, w, r, be.pool, rs, body, parsed, retries, ex)
		return
	}
	s.proxyPool(ctx, w, r, be.pool, body, parsed, retries, ex)
}

// readBody reads the whole request body, at most limit bytes. With a
// Content-Length (the common case) the buffer is allocated once at its
// final size instead of grown by doubling.
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	body := http.MaxBytesReader(w, r.Body, limit)
	if n := r.ContentLength; n > 0 && n <= limit {
		buf := make([]byte, n)
		if _, err := io.ReadFull(body, buf); err != nil {
			return nil, err
		}
		return buf, nil
	}
	return io.ReadAll(body)
}

// selectRoute finds the compiled route for a request with its timeout and
// retry budget.
func (rt *runtime) selectRoute(model string, r *http.Request) (*route, time.Duration, int) {
	cr, _ := rt.cfg.SelectRoute(model, r.URL.Path, r.Header)
	if cr == nil {
		return nil, 0, 0
	}
	return rt.routes[cr], cr.Spec.Timeout.Duration, int(*cr.Spec.Retries)
}

func (s *Server) proxyPool(ctx context.Context, w http.ResponseWriter, r *http.Request, pool string, body []byte, parsed *openai.Parsed, retries int, ex *exchange) {
	req := &director.Request{
		ID:         strconv.FormatUint(s.requestIDs.Add(1), 36),
		Pool:       pool,
		Parsed:     parsed,
		Body:       body,
		Objective:  r.Header.Get(HeaderInferenceObjective),
		FairnessID: r.Header.Get(HeaderInferenceFairnessID),
		Headers:    pluginHeaders(r.Header),
	}
	dec, err := s.director.Decide(ctx, req)
	if err != nil {
		var rej *director.Rejection
		if errors.As(err, &rej) {
			w.Header().Set(headerRequestDroppedReason, rej.Reason)
			if rej.Status == http.StatusTooManyRequests {
				w.Header().Set("Retry-After", strconv.Itoa(maxRetryAfterRejectionSeconds))
			}
			s.fail(w, parsed.Model, pool, ex.start, rej.OpenAI())
			return
		}
		s.fail(w, parsed.Model, pool, ex.start, upstreamError(err))
		return
	}
	r.Header.Set(HeaderModelName, dec.Model)
	attempts := min(len(dec.Endpoints), retries+1)
	s.metrics.InFlight(pool, 1)
	defer s.metrics.InFlight(pool, -1)
	for i, ep := range dec.Endpoints[:attempts] {
		a := dec.Start(ctx, ep)
		resp, err := s.send(ctx, r, "http", ep.Address, "", dec.Body)
		last := i == attempts-1 || ctx.Err() != nil
		if retryable(resp, err) && !last {
			drain(resp)
			a.Finish(ctx, scheduling.Response{StatusCode: statusOf(resp), Err: errOr(err, resp)})
			s.metrics.Retried(pool)
			s.log.Debug("retrying on fallback endpoint", "endpoint", ep.Address, "err", errOr(err, resp))
			continue
		}
		if err != nil {
			a.Finish(ctx, scheduling.Response{Err: err})
			s.fail(w, parsed.Model, pool, ex.start, upstreamError(err))
			return
		}
		usage, code := s.relay(w, resp, ep.Address, parsed.Model, pool, ex)
		a.Finish(ctx, scheduling.Response{StatusCode: code, PromptTokens: usage.PromptTokens, CompletionTokens: usage.CompletionTokens, CachedTokens: cachedOf(usage)})
		return
	}
}

func (s *Server) proxyURL(ctx context.Context, w http.ResponseWriter, r *http.Request, be *backend, body []byte, parsed *openai.Parsed, retries int, ex *exchange) {
	basePath := strings.TrimSuffix(be.url.Path, "/")
	for i := 0; ; i++ {
		resp, err := s.send(ctx, r, be.url.Scheme, be.url.Host, basePath, body)
		if retryable(resp, err) && i < retries && ctx.Err() == nil {
			drain(resp)
			s.metrics.Retried(be.url.Host)
			continue
		}
		if err != nil {
			s.fail(w, parsed.Model, be.url.Host, ex.start, upstreamError(err))
			return
		}
		s.relay(w, resp, be.url.Host, parsed.Model, be.url.Host, ex)
		return
	}
}

// send forwards the request to scheme://host basePath+path with body. The
// outgoing request is built field by field rather than by formatting and
// re-parsing a URL string on every request; like http.NewRequest it sets
// GetBody, so the transport can replay the body when a reused keep-alive
// connection turns out to be closed.
func (s *Server) send(ctx context.Context, in *http.Request, scheme, host, basePath string, body []byte) (*http.Response, error) {
	out := &http.Request{
		Method:        in.Method,
		URL:           &url.URL{Scheme: scheme, Host: host, Path: basePath + in.URL.Path, RawQuery: in.URL.RawQuery},
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        make(http.Header, len(in.Header)+1),
		Body:          io.NopCloser(bytes.NewReader(body)),
		GetBody:       func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil },
		ContentLength: int64(len(body)),
		Host:          host,
	}
	out = out.WithContext(ctx)
	for k, v := range in.Header {
		out.Header[k] = v
	}
	for _, h := range hopHeaders {
		out.Header.Del(h)
	}
	out.Header.Del("Accept-Encoding") // streams and usage must come back uncompressed
	out.Header.Set("Content-Length", strconv.Itoa(len(body)))
	return s.transport.RoundTrip(out)
}

// relayBuffers recycles relay buffers: allocating (and zeroing) 32 KiB per
// request was most of the bytes the request path allocated, and the GC
// cycles it caused showed up as tail latency.
var relayBuffers = sync.Pool{New: func() any { b := make([]byte, relayBufferSize); return &b }}

// relay streams resp to the client, flushing every chunk as it arrives and
// extracting usage on the fly. It returns the usage and the status sent.
func (s *Server) relay(w http.ResponseWriter, resp *http.Response, served, model, pool string, ex *exchange) (openai.Usage, int) {
	if ex.admitted != nil && ex.admitted.WrapBody != nil {
		resp.Body = ex.admitted.WrapBody(resp.Body)
	}
	defer resp.Body.Close()
	start := ex.start
	h := w.Header()
	for k, v := range resp.Header {
		h[k] = v
	}
	for _, hh := range hopHeaders {
		h.Del(hh)
	}
	h.Set(HeaderDestinationServed, served)
	w.WriteHeader(resp.StatusCode)
	rc := http.NewResponseController(w)
	obs := openai.NewUsageObserver(resp.Header.Get("Content-Type"))
	bp := relayBuffers.Get().(*[]byte)
	defer relayBuffers.Put(bp)
	buf := *bp
	var ttft time.Duration
	for {
		n, err := resp.Body.Read(buf)
		if n > 0 {
			if ttft == 0 {
				ttft = time.Since(start)
			}
			_, _ = obs.Write(buf[:n])
			if _, werr := w.Write(buf[:n]); werr != nil {
				break // the client left; closing the body cancels upstream
			}
			_ = rc.Flush()
		}
		if err != nil {
			break
		}
	}
	usage, _ := obs.Usage()
	ex.usage, ex.status = usage, resp.StatusCode
	s.metrics.RequestDone(model, pool, resp.StatusCode, time.Since(start), ttft)
	s.metrics.Tokens(model, pool, usage.PromptTokens, usage.CompletionTokens, cachedOf(usage))
	tenant := ""
	if ex.identity != nil {
		tenant = ex.identity.Tenant
	}
	s.metrics.TokenUsage(tenant, model, genAIOperation(ex.kind), usage.PromptTokens, usage.CompletionTokens)
	return usage, resp.StatusCode
}

func (s *Server) fail(w http.ResponseWriter, model, pool string, start time.Time, e *openai.Error) {
	openai.WriteError(w, e)
	s.metrics.RequestDone(model, pool, e.Status(), time.Since(start), 0)
}

// retryable: the request failed before any response byte (a transport
// error, e.g. connection refused), or the server said it cannot take it
// now (502, 503, 504). The client has seen nothing yet either way.
func retryable(resp *http.Response, err error) bool {
	if err != nil {
		return !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded)
	}
	switch resp.StatusCode {
	case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return false
}

func upstreamError(err error) *openai.Error {
	if errors.Is(err, context.DeadlineExceeded) {
		return openai.NewError(http.StatusGatewayTimeout, openai.ErrTypeUnavailable, "the model server did not answer in time")
	}
	return openai.NewError(http.StatusBadGateway, openai.ErrTypeUnavailable, "the model server could not be reached: "+err.Error())
}

func drain(resp *http.Response) {
	if resp != nil {
		_, _ = io.CopyN(io.Discard, resp.Body, 64<<10)
		resp.Body.Close()
	}
}

func statusOf(resp *http.Response) int {
	if resp == nil {
		return 0
	}
	return resp.StatusCode
}

func errOr(err error, resp *http.Response) error {
	if err != nil || resp == nil {
		return err
	}
	return fmt.Errorf("model server answered %s", resp.Status)
}

func cachedOf(u openai.Usage) int {
	if u.PromptTokensDetails == nil {
		return 0
	}
	return u.PromptTokensDetails.CachedTokens
}

// pluginHeaders are the request headers scheduling plugins may read,
// lower-cased (e.g. session affinity keys).
func pluginHeaders(h http.Header) map[string]string {
	out := make(map[string]string, len(h))
	for k, v := range h {
		if len(v) > 0 {
			out[lowerHeaderName(k)] = v[0]
		}
	}
	return out
}

// lowerHeaderName lower-cases a canonical header name, without allocating
// for the headers most requests carry.
func lowerHeaderName(k string) string {
	if l, ok := commonLowerHeaders[k]; ok {
		return l
	}
	return strings.ToLower(k)
}

// commonLowerHeaders maps canonical names of common request headers to
// their lower-case form. It is fixed: caching names clients send would let
// them grow it without bound.
var commonLowerHeaders = func() map[string]string {
	m := map[string]string{}
	for _, k := range []string{
		"Accept", "Accept-Encoding", "Accept-Language", "Authorization", "Cache-Control", "Connection",
		"Content-Length", "Content-Type", "Cookie", "Host", "Origin", "Referer", "User-Agent",
		"Traceparent", "Tracestate", "X-Forwarded-For", "X-Forwarded-Proto", "X-Request-Id",
		"Openai-Organization", "Openai-Project", "X-Stainless-Lang", "X-Stainless-Package-Version",
		"X-Stainless-Os", "X-Stainless-Arch", "X-Stainless-Runtime", "X-Stainless-Runtime-Version",
		"X-Stainless-Retry-Count", "X-Stainless-Timeout", "X-Stainless-Async",
		HeaderModelName, HeaderInferenceObjective, HeaderInferenceFairnessID,
	} {
		m[http.CanonicalHeaderKey(k)] = strings.ToLower(k)
	}
	return m
}()
