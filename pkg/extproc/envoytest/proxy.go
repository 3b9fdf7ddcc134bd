package envoytest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
)

// Header names the proxy reads and writes, as Envoy-based gateways in front
// of an Endpoint Picker use them (REFERENCE §2).
const (
	// HeaderDestination is the request header the picker sets: the
	// endpoint to use, then fallbacks, comma-separated. The ORIGINAL_DST
	// cluster routes on it.
	HeaderDestination = "x-gateway-destination-endpoint"
	// HeaderServed is the endpoint that really served the request: the
	// proxy reports it to the processor in response-phase metadata and to
	// the client as a response header, as igw serve does, so tests can
	// compare the two data planes.
	HeaderServed = "x-gateway-destination-endpoint-served"
)

// Defaults of a Proxy's zero-valued fields.
const (
	// DefaultProxyChunkSize is about what Envoy hands the filter chain per
	// read of a client body, so a large body reaches the processor in many
	// messages, as it does behind a real Envoy.
	DefaultProxyChunkSize = 64 << 10
	// DefaultProxyMaxBody bounds the body the proxy holds in memory; it is
	// above the pickers' own limits (10 MiB), so their 413 is what a
	// client sees, not the proxy's.
	DefaultProxyMaxBody = 32 << 20
	// DefaultProxyTimeout bounds one whole exchange, streamed response
	// included: a test's request must never hang.
	DefaultProxyTimeout = 2 * time.Minute
	// DefaultConnectTimeout bounds a connection attempt to an endpoint,
	// like the ORIGINAL_DST cluster's connect_timeout.
	DefaultConnectTimeout = 2 * time.Second
)

// Proxy is an http.Handler that plays Envoy in front of an Endpoint
// Picker: the ext_proc filter (FULL_DUPLEX_STREAMED by default) and an
// ORIGINAL_DST cluster that routes on x-gateway-destination-endpoint. It
// exists so that end-to-end tests can send the same HTTP request to igw
// serve and to igw epp and compare what a client sees, without running
// Envoy itself. For each request it:
//
//   - opens a Process stream and plays the request headers (:method,
//     :path, :authority, :scheme and lower-case names, hop-by-hop headers
//     removed) and body;
//   - writes an ImmediateResponse's status, headers and body to the client;
//   - otherwise forwards the processor's mutated headers and body to the
//     first address of x-gateway-destination-endpoint, trying the next one
//     only when a connection cannot be made (as Envoy's retries do);
//   - plays the upstream response through the response phase as it is
//     read, with the endpoint used in envoy.lb metadata (Served), and
//     writes the processor's mutated headers and body chunks to the client
//     as they come back, flushing each, with the response header
//     x-gateway-destination-endpoint-served naming the endpoint.
//
// Errors of the proxy itself are Envoy-like local replies in plain text:
// 500 when the processor fails, 503 when no endpoint was chosen or none
// could be reached, 413 over MaxBody. A failure after the response started
// resets the client's connection, as Envoy resets the stream.
//
// Use NewProxy; Close releases idle upstream connections.
type Proxy struct {
	// Conn is the connection to the ext_proc server. Required.
	Conn grpc.ClientConnInterface
	// Mode is the body mode of both directions (default FullDuplex).
	Mode Mode
	// ChunkSize cuts the request body into messages of this size (default
	// DefaultProxyChunkSize).
	ChunkSize int
	// MaxBody bounds a request body (default DefaultProxyMaxBody).
	MaxBody int64
	// Timeout bounds one exchange, from the request to the end of the
	// response (default DefaultProxyTimeout).
	Timeout time.Duration
	// Metadata, if set, gives a request's metadata_context (SubsetHint).
	Metadata func(*http.Request) *corev3.Metadata
	// Transport carries requests to the endpoints. NewProxy sets one with a
	// connect timeout and no proxy from the environment: loopback tests
	// must not depend on HTTP_PROXY.
	Transport http.RoundTripper

	closeOnce sync.Once
}

// NewProxy is a Proxy to the processor on conn with default settings.
func NewProxy(conn grpc.ClientConnInterface) *Proxy {
	return &Proxy{Conn: conn, Transport: &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: DefaultConnectTimeout}).DialContext,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     30 * time.Second,
		DisableCompression:  true, // relay bytes as the model server sent them
	}}
}

// Close closes the idle upstream connections of the proxy's transport (a
// test that ends with open keep-alive connections leaks their goroutines).
func (p *Proxy) Close() {
	p.closeOnce.Do(func() {
		if c, ok := p.Transport.(interface{ CloseIdleConnections() }); ok {
			c.CloseIdleConnections()
		}
	})
}

var _ http.Handler = (*Proxy)(nil)

// ServeHTTP handles one client request as Envoy would.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), orDefault(p.Timeout, DefaultProxyTimeout))
	defer cancel()
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, orDefault(p.MaxBody, DefaultProxyMaxBody)))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			localReply(w, http.StatusRequestEntityTooLarge, "payload too large")
			return
		}
		localReply(w, http.StatusBadRequest, "could not read the request body")
		return
	}
	req := &Request{Headers: requestHeaders(r), ChunkSize: orDefault(p.ChunkSize, DefaultProxyChunkSize), Mode: p.Mode}
	if len(body) > 0 {
		req.Body = body // an empty body is a header-only request, as Envoy sees it
	}
	if p.Metadata != nil {
		req.Metadata = p.Metadata(r)
	}
	s, err := Start(ctx, p.Conn, req)
	if err != nil {
		localReply(w, http.StatusInternalServerError, "ext_proc error: "+err.Error())
		return
	}
	defer func() { _ = s.Close() }()
	res := s.Result()
	if res.Immediate != nil {
		writeImmediate(w, res.Immediate)
		return
	}
	addrs := destinations(res.RequestHeaders[HeaderDestination])
	if len(addrs) == 0 {
		localReply(w, http.StatusServiceUnavailable, "no healthy upstream")
		return
	}
	var fwd []byte
	if req.Body != nil {
		fwd = res.Body
	}
	up, served, err := p.forward(ctx, res.RequestHeaders, fwd, addrs)
	if err != nil {
		localReply(w, http.StatusServiceUnavailable, "upstream connect error or disconnect/reset before headers: "+err.Error())
		return
	}
	defer up.Body.Close()
	sr := &StreamedResponse{Status: up.StatusCode, Headers: flatten(up.Header), Metadata: Served(served), Body: up.Body}
	if up.ContentLength == 0 || up.StatusCode == http.StatusNoContent || up.StatusCode == http.StatusNotModified || r.Method == http.MethodHead {
		sr.Body = nil
	}
	rc := http.NewResponseController(w)
	started := false
	err = s.RespondStream(sr, func(h map[string]string) error {
		status, err := strconv.Atoi(h[":status"])
		if err != nil || status < 100 || status > 999 {
			return fmt.Errorf("envoytest: the processor left an invalid :status %q", h[":status"])
		}
		out := w.Header()
		for k, v := range h {
			if !strings.HasPrefix(k, ":") && !isHopByHop(k, h["connection"]) {
				out.Set(k, v)
			}
		}
		out.Set(HeaderServed, served)
		w.WriteHeader(status)
		started = true
		return rc.Flush()
	}, func(chunk []byte) error {
		if _, err := w.Write(chunk); err != nil {
			return err
		}
		return rc.Flush()
	})
	if err == nil {
		return
	}
	if !started {
		localReply(w, http.StatusBadGateway, "ext_proc error in the response phase: "+err.Error())
		return
	}
	// The client has part of the response: reset its stream, as Envoy does,
	// so it cannot mistake the part for the whole.
	panic(http.ErrAbortHandler)
}

// forward sends the mutated request to the first address that accepts a
// connection, in order, and returns its response and the address used.
// Only a failure to connect moves on: once an endpoint has the request, a
// retry could run it twice.
func (p *Proxy) forward(ctx context.Context, h map[string]string, body []byte, addrs []string) (*http.Response, string, error) {
	tr := p.Transport
	if tr == nil {
		tr = http.DefaultTransport
	}
	path := h[":path"]
	if path == "" {
		path = "/"
	}
	var lastErr error
	for _, addr := range addrs {
		u, err := url.Parse("http://" + addr + path)
		if err != nil {
			lastErr = fmt.Errorf("destination %q: %w", addr, err)
			continue
		}
		out := &http.Request{
			Method:     h[":method"],
			URL:        u,
			Proto:      "HTTP/1.1",
			ProtoMajor: 1,
			ProtoMinor: 1,
			Header:     make(http.Header, len(h)),
			Host:       h[":authority"],
		}
		conn := h["connection"]
		for k, v := range h {
			if !strings.HasPrefix(k, ":") && !isHopByHop(k, conn) && k != "content-length" {
				out.Header.Set(k, v)
			}
		}
		if body != nil {
			out.Body = io.NopCloser(bytes.NewReader(body))
			out.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
			out.ContentLength = int64(len(body))
		}
		resp, err := tr.RoundTrip(out.WithContext(ctx))
		if err == nil {
			return resp, addr, nil
		}
		lastErr = err
		if !connectFailure(err) || ctx.Err() != nil {
			break
		}
	}
	return nil, "", lastErr
}

// connectFailure reports whether err is a failure to open a connection,
// the one failure after which a request provably never reached the
// endpoint.
func connectFailure(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// destinations splits the picker's comma-separated endpoint list.
func destinations(v string) []string {
	var out []string
	for _, a := range strings.Split(v, ",") {
		if a = strings.TrimSpace(a); a != "" {
			out = append(out, a)
		}
	}
	return out
}

// requestHeaders are the headers Envoy sends the processor for r: the
// pseudo-headers and every other header under its lower-case name
// (several values joined with ", "), hop-by-hop headers removed.
func requestHeaders(r *http.Request) map[string]string {
	h := map[string]string{":method": r.Method, ":path": r.URL.RequestURI(), ":authority": r.Host, ":scheme": "http"}
	conn := r.Header.Get("Connection")
	for k, vs := range r.Header {
		lk := strings.ToLower(k)
		if isHopByHop(lk, conn) {
			continue
		}
		h[lk] = strings.Join(vs, ", ")
	}
	return h
}

// flatten turns an upstream response's headers into the processor's form,
// hop-by-hop headers removed.
func flatten(hdr http.Header) map[string]string {
	h := make(map[string]string, len(hdr))
	conn := hdr.Get("Connection")
	for k, vs := range hdr {
		lk := strings.ToLower(k)
		if isHopByHop(lk, conn) {
			continue
		}
		h[lk] = strings.Join(vs, ", ")
	}
	return h
}

// isHopByHop reports whether the lower-case header name k belongs to one
// connection only (RFC 9110 §7.6.1), including the names the Connection
// header value lists; Envoy never forwards those.
func isHopByHop(k, connection string) bool {
	switch k {
	case "connection", "proxy-connection", "keep-alive", "proxy-authenticate", "proxy-authorization",
		"te", "trailer", "transfer-encoding", "upgrade":
		return true
	}
	for _, c := range strings.Split(connection, ",") {
		if strings.EqualFold(strings.TrimSpace(c), k) {
			return true
		}
	}
	return false
}

// writeImmediate sends the processor's ImmediateResponse to the client.
func writeImmediate(w http.ResponseWriter, im *extprocv3.ImmediateResponse) {
	for _, o := range im.GetHeaders().GetSetHeaders() {
		w.Header().Set(o.GetHeader().GetKey(), headerValue(o.GetHeader()))
	}
	for _, k := range im.GetHeaders().GetRemoveHeaders() {
		w.Header().Del(k)
	}
	status := int(im.GetStatus().GetCode())
	if status == 0 {
		status = http.StatusOK // Envoy's default when the processor names none
	}
	w.WriteHeader(status)
	_, _ = w.Write(im.GetBody())
}

// localReply is an answer of the proxy itself, in plain text as Envoy's
// local replies are.
func localReply(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "text/plain")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, msg)
}

func orDefault[T int | int64 | time.Duration](v, def T) T {
	if v > 0 {
		return v
	}
	return def
}
