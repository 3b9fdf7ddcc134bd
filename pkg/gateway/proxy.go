package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/igw-dev/igw/pkg/director"
)

// Header names the gateway writes (REFERENCE §2–§3); the Director owns the
// set.
const (
	HeaderModelName           = director.HeaderModelName
	HeaderDestinationServed   = director.HeaderDestinationServed
	HeaderInferenceObjective  = director.HeaderInferenceObjective
	HeaderInferenceFairnessID = director.HeaderInferenceFairnessID
	relayBufferSize           = 32 << 10
)

// hopHeaders are connection-specific (RFC 9110 §7.6.1) and never forwarded.
var hopHeaders = []string{
	"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization",
	"Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

// removeHopHeaders drops the hop-by-hop headers and those the Connection
// header names (RFC 9110 §7.6.1).
func removeHopHeaders(h http.Header) {
	for _, v := range h.Values("Connection") {
		for _, name := range strings.Split(v, ",") {
			if name = strings.TrimSpace(name); name != "" {
				h.Del(name)
			}
		}
	}
	for _, k := range hopHeaders {
		h.Del(k)
	}
}

// Handler serves the OpenAI-compatible API: every /v1 request goes to the
// Director, which answers or decides; the rest is 404 in the API's shape,
// and so are paths ServeMux would redirect (".." or "//"); a known path
// asked with the wrong method is 405 with Allow, also in the API's shape.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	for _, path := range []string{"/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/responses", "/v1/messages"} {
		mux.HandleFunc(path, s.serveAPI) // the Director answers other methods with 405
	}
	mux.HandleFunc("GET /v1/models", s.serveAPI)
	mux.HandleFunc("GET /v1/models/{id...}", s.serveAPI)
	mux.HandleFunc("GET /healthz", s.handleHealthz)
	mux.HandleFunc("GET /readyz", s.handleReadyz)
	for _, path := range []string{"/v1/models", "/healthz", "/readyz"} {
		mux.HandleFunc(path, s.methodNotAllowed(http.MethodGet, http.MethodHead))
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeReply(w, s.director.Refuse(r.URL.Path, director.NoAPI(r.Method, r.URL.Path)))
	})
	return s.cleanPaths(mux)
}

// serveAPI is one API request: the body read once into a pooled buffer,
// the Director's decision (or its reply), then the one forwarding loop
// over the decision's targets with retries before the first response byte,
// and the response relayed through the Director's observer.
func (s *Server) serveAPI(w http.ResponseWriter, r *http.Request) {
	b := s.readRequestBody(w, r)
	if b == nil {
		return
	}
	defer b.release()
	in := &director.Inbound{Method: r.Method, Path: r.URL.Path, Host: r.Host, Header: r.Header, Body: b.buf}
	x, reply := s.director.Begin(r.Context(), in)
	if reply != nil {
		writeReply(w, reply)
		return
	}
	ctx := r.Context()
	if t := x.Timeout(); t > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, t)
		defer cancel()
	}
	t, reply := s.targets(ctx, x, in)
	if reply != nil {
		writeReply(w, reply)
		return
	}
	if t.picker != nil {
		defer t.picker.Close()
	}
	hosts := t.hosts[:min(len(t.hosts), x.Retries()+1)]
	for i := 0; i < len(hosts); i++ {
		host := hosts[i]
		x.Try(ctx, host)
		a := newAttempt(ctx, x.ConnectTimeout(), x.FirstByteTimeout())
		resp, err := s.send(a.ctx, r, x, t.scheme, host, t.basePath, b)
		phase, limit, sent := a.outcome()
		if phase != "" && ctx.Err() == nil {
			// The attempt's own timeout cut it, not the client or the
			// route: the endpoint did not connect or answer in time.
			drain(resp)
			resp, err = nil, &errAttemptTimeout{phase: phase, limit: limit}
			x.AttemptTimedOut(phase)
		}
		last := i == len(hosts)-1 || ctx.Err() != nil
		if err == nil && x.Refused(resp.StatusCode) {
			// The server is full: back through admission, to an endpoint
			// with room or into the queue, rather than to a fallback
			// chosen before it filled up.
			more, reply := x.Readmit(ctx, resp.StatusCode)
			if reply != nil || more != nil {
				drain(resp)
				a.end()
				if reply != nil {
					writeReply(w, reply)
					return
				}
				s.log.Debug("readmitted after a refusal", "endpoint", host, "status", resp.StatusCode)
				hosts = append(hosts[i+1:i+1:i+1], more[:min(len(more), x.Retries()+1)]...)
				i = -1
				continue
			}
		}
		// A request that was sent and got no answer may be running on that
		// endpoint: trying it elsewhere may run it twice, which the route
		// may forbid. An answered failure (5xx) did not run.
		mayRetry := err == nil || !sent || x.RetryAfterSend()
		if retryable(resp, err) && mayRetry && !last && x.MayRetry() {
			drain(resp)
			a.end()
			x.Retry(ctx, statusOf(resp), errOr(err, resp))
			s.log.Debug("retrying on another endpoint", "endpoint", host, "err", errOr(err, resp))
			continue
		}
		if err != nil {
			a.end()
			if errors.Is(ctx.Err(), context.Canceled) {
				s.log.Debug("the client went away before the model server answered", "endpoint", host)
			} else {
				s.log.Info("model server failed", "endpoint", host, "attempt", i+1, "sent", sent, "err", err)
			}
			writeReply(w, x.Fail(ctx, err))
			return
		}
		broken := s.relay(ctx, w, resp, x, t.picker)
		a.end()
		if broken {
			// Headers are out and the body cannot say it is incomplete:
			// break the transfer, so the client sees an error instead of
			// a short answer.
			panic(http.ErrAbortHandler)
		}
		return
	}
}

// writeReply sends a reply of the Director.
func writeReply(w http.ResponseWriter, r *director.Reply) {
	h := w.Header()
	for k, v := range r.Header {
		h[k] = v
	}
	w.WriteHeader(r.Status)
	_, _ = w.Write(r.Body)
}

// targets are where a decided request may go, in order: the scheduled
// endpoints (primary, then fallbacks), a URL backend's host (once per
// allowed attempt), or a remote picker's choice.
type targets struct {
	scheme, basePath string
	hosts            []string
	picker           pickerExchange // the remote picker's exchange, mirrored the response
}

func (s *Server) targets(ctx context.Context, x *director.Exchange, in *director.Inbound) (*targets, *director.Reply) {
	switch be := x.Backend; {
	case x.Decision != nil:
		return &targets{scheme: "http", hosts: x.Endpoints()}, nil
	case be.URL != nil:
		t := &targets{scheme: be.URL.Scheme, basePath: strings.TrimSuffix(be.URL.Path, "/")}
		for range x.Retries() + 1 {
			t.hosts = append(t.hosts, be.URL.Host)
		}
		return t, nil
	default:
		return s.remoteTargets(ctx, x, in)
	}
}

// send forwards the request to scheme://host basePath+path with the
// Director's headers and body. The outgoing request is built field by
// field rather than by formatting and re-parsing a URL string on every
// request. The body is sent from the pooled buffer, which stays held
// until the transport closes it; GetBody lets the transport resend it on
// a reused keep-alive connection found closed before anything was written.
func (s *Server) send(ctx context.Context, in *http.Request, x *director.Exchange, scheme, host, basePath string, pooled *body) (*http.Response, error) {
	data := x.Body
	newBody := func() io.ReadCloser {
		pooled.hold()
		return &bodyReader{b: pooled, data: data}
	}
	out := &http.Request{
		Method:        in.Method,
		URL:           &url.URL{Scheme: scheme, Host: host, Path: basePath + x.UpstreamPath(), RawQuery: in.URL.RawQuery},
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        make(http.Header, len(in.Header)+1),
		Body:          newBody(),
		GetBody:       func() (io.ReadCloser, error) { return newBody(), nil },
		ContentLength: int64(len(data)),
		Host:          host,
	}
	out = out.WithContext(ctx)
	for k, v := range x.Header() {
		out.Header[k] = v
	}
	removeHopHeaders(out.Header)
	noReplay(out.Header)
	out.Header.Del("Accept-Encoding") // streams and usage must come back uncompressed
	out.Header.Set("Content-Length", strconv.Itoa(len(data)))
	return s.transport.RoundTrip(out)
}

// relay streams resp to the client through the Director's observer,
// flushing every chunk as it arrives, and completes the exchange. When the
// model server's side cuts the response, a streamed response ends with the
// Director's error event; for any other it returns broken, and the caller
// must break the transfer.
func (s *Server) relay(ctx context.Context, w http.ResponseWriter, resp *http.Response, x *director.Exchange, picker pickerExchange) (broken bool) {
	if picker != nil {
		h := make(map[string]string, len(resp.Header))
		for k, v := range resp.Header {
			h[strings.ToLower(k)] = v[0]
		}
		picker.ResponseHeaders(resp.StatusCode, h, x.Served(), false)
		resp.Body = &mirrorBody{ReadCloser: resp.Body, x: picker}
	}
	resp.Body = x.WrapResponseBody(resp.Body)
	defer resp.Body.Close()
	h := w.Header()
	for k, v := range resp.Header {
		h[k] = v
	}
	removeHopHeaders(h)
	if x.ResponseHeaders(resp.StatusCode, resp.Header.Get("Content-Type")) {
		h.Del("Content-Length") // the client's model name may differ in length
	}
	for k, v := range x.ResponseHeader {
		h[k] = v
	}
	h.Set(HeaderDestinationServed, x.Served())
	w.WriteHeader(resp.StatusCode)
	rc := http.NewResponseController(w)
	bp, _ := s.relayBufs.Get().(*[]byte)
	if bp == nil {
		b := make([]byte, relayBufferSize)
		bp = &b
	}
	defer s.relayBufs.Put(bp)
	buf := *bp
	var cause error
	for {
		n, err := resp.Body.Read(buf)
		final := err != nil
		if n > 0 || final {
			if out := x.ResponseBody(buf[:n], final); len(out) > 0 {
				if _, werr := w.Write(out); werr != nil {
					cause = werr // the client left; closing the body cancels upstream
					break
				}
				_ = rc.Flush()
			}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				cause = err
				// Unless the client left (then nobody reads anything more),
				// the model server broke off or the route's timeout passed.
				if !errors.Is(ctx.Err(), context.Canceled) {
					s.log.Info("model server's response broke off", "endpoint", x.Served(), "err", err)
					if tail := x.ResponseBroken(err); tail != nil {
						_, _ = w.Write(tail)
						_ = rc.Flush()
					} else {
						broken = true
					}
				}
			}
			break
		}
	}
	x.Finish(ctx, cause)
	return broken
}

// retryable: the request failed before any response byte (a transport
// error, e.g. connection refused, or the attempt's own connect or
// first-byte timeout), or the server failed it (500) or said it cannot take
// it now (502, 503, 504). The client has seen nothing yet either way; the
// route (retryAfterSend) and the pool's retry budget (Exchange.MayRetry)
// decide whether it is retried. The client leaving and the route's timeout
// are never retried.
func retryable(resp *http.Response, err error) bool {
	var timedOut *errAttemptTimeout
	if errors.As(err, &timedOut) {
		return true // the endpoint's timeout, not the client's or the route's
	}
	if err != nil {
		return !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded)
	}
	switch resp.StatusCode {
	case http.StatusInternalServerError, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return false
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
