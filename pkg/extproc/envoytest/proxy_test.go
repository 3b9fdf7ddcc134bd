package envoytest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// fakePicker is a minimal FULL_DUPLEX_STREAMED processor for the proxy's
// tests (the real picker lives in package extproc, whose tests import this
// package). What it does is chosen by request headers:
//
//   - x-test-reject: answer 429 at once, with a reason header;
//   - x-test-limit: answer 413 as soon as more body bytes than this
//     arrived, without reading the rest;
//   - otherwise route to x-test-destination (replacing whatever the client
//     sent as x-gateway-destination-endpoint), rewrite "client-model" to
//     "target-model" in the request body and back in every response chunk,
//     and record the served endpoint it is told in the response phase.
type fakePicker struct {
	extprocv3.UnimplementedExternalProcessorServer

	mu     sync.Mutex
	served []string
}

func (f *fakePicker) servedEndpoints() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.served...)
}

func (f *fakePicker) Process(srv extprocv3.ExternalProcessor_ProcessServer) error {
	var headers map[string]string
	var body []byte
	limit := -1
	for {
		m, err := srv.Recv()
		if err != nil {
			return nil
		}
		switch r := m.GetRequest().(type) {
		case *extprocv3.ProcessingRequest_RequestHeaders:
			headers = map[string]string{}
			for _, h := range r.RequestHeaders.GetHeaders().GetHeaders() {
				headers[h.GetKey()] = headerValue(h)
			}
			if headers["x-test-reject"] != "" {
				return srv.Send(immediate(http.StatusTooManyRequests, `{"error":"busy"}`, "x-gateway-request-dropped-reason", "rejected-saturated"))
			}
			if v := headers["x-test-limit"]; v != "" {
				limit = len(v) // the header's length is the limit: no parsing needed
			}
			if r.RequestHeaders.GetEndOfStream() {
				return srv.Send(immediate(http.StatusBadRequest, "no body", "", ""))
			}
		case *extprocv3.ProcessingRequest_RequestBody:
			body = append(body, r.RequestBody.GetBody()...)
			if limit >= 0 && len(body) > limit {
				return srv.Send(immediate(http.StatusRequestEntityTooLarge, "too large", "", ""))
			}
			if !r.RequestBody.GetEndOfStream() {
				continue
			}
			out := bytes.ReplaceAll(body, []byte("client-model"), []byte("target-model"))
			mut := &extprocv3.HeaderMutation{
				SetHeaders: []*corev3.HeaderValueOption{
					{Header: &corev3.HeaderValue{Key: HeaderDestination, RawValue: []byte(headers["x-test-destination"])}},
				},
			}
			if err := srv.Send(&extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestHeaders{RequestHeaders: &extprocv3.HeadersResponse{
				Response: &extprocv3.CommonResponse{HeaderMutation: mut, ClearRouteCache: true},
			}}}); err != nil {
				return err
			}
			if err := srv.Send(streamed(true, out, true)); err != nil {
				return err
			}
		case *extprocv3.ProcessingRequest_ResponseHeaders:
			served := m.GetMetadataContext().GetFilterMetadata()["envoy.lb"].GetFields()[HeaderServed].GetStringValue()
			f.mu.Lock()
			f.served = append(f.served, served)
			f.mu.Unlock()
			if err := srv.Send(&extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseHeaders{ResponseHeaders: &extprocv3.HeadersResponse{
				Response: &extprocv3.CommonResponse{HeaderMutation: &extprocv3.HeaderMutation{
					RemoveHeaders: []string{"content-length"},
					SetHeaders:    []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: "x-picker", RawValue: []byte("seen")}}},
				}},
			}}}); err != nil {
				return err
			}
		case *extprocv3.ProcessingRequest_ResponseBody:
			out := bytes.ReplaceAll(r.ResponseBody.GetBody(), []byte("target-model"), []byte("client-model"))
			if err := srv.Send(streamed(false, out, r.ResponseBody.GetEndOfStream())); err != nil {
				return err
			}
		}
	}
}

func immediate(status int, body, header, value string) *extprocv3.ProcessingResponse {
	im := &extprocv3.ImmediateResponse{Status: &typev3.HttpStatus{Code: typev3.StatusCode(status)}, Body: []byte(body)}
	if header != "" {
		im.Headers = &extprocv3.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: header, RawValue: []byte(value)}}}}
	}
	return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ImmediateResponse{ImmediateResponse: im}}
}

func streamed(request bool, body []byte, eos bool) *extprocv3.ProcessingResponse {
	br := &extprocv3.BodyResponse{Response: &extprocv3.CommonResponse{BodyMutation: &extprocv3.BodyMutation{
		Mutation: &extprocv3.BodyMutation_StreamedResponse{StreamedResponse: &extprocv3.StreamedBodyResponse{Body: body, EndOfStream: eos}},
	}}}
	if request {
		return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestBody{RequestBody: br}}
	}
	return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseBody{ResponseBody: br}}
}

// startProxy serves a fakePicker over loopback gRPC and a Proxy to it over
// loopback HTTP; everything stops when the test ends.
func startProxy(t *testing.T) (*fakePicker, string) {
	t.Helper()
	fp, url, stop := runProxy(t)
	t.Cleanup(stop)
	return fp, url
}

// runProxy is startProxy with the stop function returned.
func runProxy(t *testing.T) (*fakePicker, string, func()) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fp := &fakePicker{}
	srv := grpc.NewServer()
	extprocv3.RegisterExternalProcessorServer(srv, fp)
	go func() { _ = srv.Serve(ln) }()
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	p := NewProxy(conn)
	p.Timeout = 20 * time.Second
	front := httptest.NewServer(p)
	return fp, front.URL, func() {
		front.Close()
		p.Close()
		conn.Close()
		srv.Stop()
	}
}

// upstream is a model server stand-in that records what it received.
type upstream struct {
	*httptest.Server
	mu     sync.Mutex
	bodies []string
	header []http.Header
}

func startUpstream(t *testing.T, h func(w http.ResponseWriter, r *http.Request)) *upstream {
	t.Helper()
	u := &upstream{}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		u.mu.Lock()
		u.bodies = append(u.bodies, string(b))
		u.header = append(u.header, r.Header.Clone())
		u.mu.Unlock()
		h(w, r)
	}))
	t.Cleanup(u.Close)
	return u
}

func (u *upstream) addr() string { return strings.TrimPrefix(u.URL, "http://") }

// deadAddr is a loopback address nothing listens on.
func deadAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := ln.Addr().String()
	ln.Close()
	return a
}

func send(t *testing.T, url string, body string, h map[string]string) (*http.Response, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range h {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

func TestProxyImmediateResponse(t *testing.T) {
	_, front := startProxy(t)
	resp, body := send(t, front+"/v1/chat/completions", `{"model":"m"}`, map[string]string{"x-test-reject": "1"})
	if resp.StatusCode != http.StatusTooManyRequests || body != `{"error":"busy"}` || resp.Header.Get("X-Gateway-Request-Dropped-Reason") != "rejected-saturated" {
		t.Errorf("got %d %q %v, want the processor's 429 with its header and body", resp.StatusCode, body, resp.Header)
	}
	if resp.Header.Get(HeaderServed) != "" {
		t.Errorf("a rejected request reports a served endpoint %q", resp.Header.Get(HeaderServed))
	}
}

// TestProxyImmediateResponseBeforeTheBodyEnds: a processor that answers
// (and ends the stream) while the body is still being sent is heard, not
// reported as a failed send.
func TestProxyImmediateResponseBeforeTheBodyEnds(t *testing.T) {
	_, front := startProxy(t)
	big := strings.Repeat("x", 4*DefaultProxyChunkSize)
	resp, body := send(t, front+"/v1/chat/completions", big, map[string]string{"x-test-limit": strings.Repeat("n", 1000)})
	if resp.StatusCode != http.StatusRequestEntityTooLarge || body != "too large" {
		t.Errorf("got %d %q, want the processor's early 413", resp.StatusCode, body)
	}
}

func TestProxyForwardsTheMutatedRequestAndResponse(t *testing.T) {
	fp, front := startProxy(t)
	up := startUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Proxy-Authenticate", "Basic")
		w.Header().Set("Keep-Alive", "timeout=5")
		_, _ = io.WriteString(w, `{"model":"target-model","usage":{"prompt_tokens":3}}`)
	})
	outsider := startUpstream(t, func(w http.ResponseWriter, r *http.Request) { t.Error("the client's own destination was used") })
	resp, body := send(t, front+"/v1/chat/completions?x=1", `{"model":"client-model"}`, map[string]string{
		"x-test-destination":  up.addr(),
		HeaderDestination:     outsider.addr(), // a client must not choose
		"Proxy-Authorization": "secret",
		"X-Custom":            "kept",
	})
	if resp.StatusCode != http.StatusOK || body != `{"model":"client-model","usage":{"prompt_tokens":3}}` {
		t.Fatalf("got %d %q, want the upstream's body with the model restored", resp.StatusCode, body)
	}
	if got := resp.Header.Get(HeaderServed); got != up.addr() {
		t.Errorf("%s = %q, want %s", HeaderServed, got, up.addr())
	}
	if resp.Header.Get("X-Picker") != "seen" || resp.Header.Get("Proxy-Authenticate") != "" || resp.Header.Get("Keep-Alive") != "" || resp.Header.Get("Content-Type") != "application/json" {
		t.Errorf("response headers %v: want the processor's mutation applied, hop-by-hop headers removed", resp.Header)
	}
	if got := fp.servedEndpoints(); len(got) != 1 || got[0] != up.addr() {
		t.Errorf("the processor was told the served endpoint %v, want [%s]", got, up.addr())
	}
	up.mu.Lock()
	defer up.mu.Unlock()
	if len(up.bodies) != 1 || up.bodies[0] != `{"model":"target-model"}` {
		t.Errorf("upstream received %q, want the rewritten body", up.bodies)
	}
	h := up.header[0]
	if h.Get("Proxy-Authorization") != "" || h.Get("X-Custom") != "kept" || h.Get(HeaderDestination) != up.addr() {
		t.Errorf("upstream headers %v: want hop-by-hop removed, others kept, the picker's destination", h)
	}
}

func TestProxyFailsOverOnlyWhenTheConnectionFails(t *testing.T) {
	_, front := startProxy(t)
	up := startUpstream(t, func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok") })
	dead := deadAddr(t)
	resp, body := send(t, front+"/", `{}`, map[string]string{"x-test-destination": dead + ", " + up.addr()})
	if resp.StatusCode != http.StatusOK || body != "ok" || resp.Header.Get(HeaderServed) != up.addr() {
		t.Errorf("got %d %q served by %q, want 200 from the fallback %s", resp.StatusCode, body, resp.Header.Get(HeaderServed), up.addr())
	}
	resp, _ = send(t, front+"/", `{}`, map[string]string{"x-test-destination": dead})
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("only a dead endpoint: got %d, want 503", resp.StatusCode)
	}
	resp, _ = send(t, front+"/", `{}`, nil)
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("no destination: got %d, want 503", resp.StatusCode)
	}
}

// TestProxyStreamsChunkByChunk: the client reads the first SSE event while
// the upstream is still holding back the second, so the proxy relays a
// stream as it comes instead of buffering it to the end.
func TestProxyStreamsChunkByChunk(t *testing.T) {
	_, front := startProxy(t)
	release := make(chan struct{})
	up := startUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = io.WriteString(w, "data: {\"model\":\"target-model\",\"n\":1}\n\n")
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-time.After(10 * time.Second):
		case <-r.Context().Done():
		}
		_, _ = io.WriteString(w, "data: {\"model\":\"target-model\",\"n\":2}\n\ndata: [DONE]\n\n")
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, front+"/v1/chat/completions", strings.NewReader(`{"stream":true}`))
	req.Header.Set("x-test-destination", up.addr())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	rd := bufio.NewReader(resp.Body)
	first, err := rd.ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	if first != "data: {\"model\":\"client-model\",\"n\":1}\n" {
		t.Errorf("first line %q", first)
	}
	close(release) // only now may the upstream send the rest
	rest, err := io.ReadAll(rd)
	if err != nil && !errors.Is(err, io.EOF) {
		t.Fatal(err)
	}
	if want := "\ndata: {\"model\":\"client-model\",\"n\":2}\n\ndata: [DONE]\n\n"; string(rest) != want {
		t.Errorf("rest %q, want %q", rest, want)
	}
}

// TestProxyLeavesNoGoroutines: after a rejected, a forwarded, a failed-over
// and a streamed exchange, closing the proxy, its connection and the
// servers leaves no goroutine of the proxy behind.
func TestProxyLeavesNoGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()
	_, front, stop := runProxy(t)
	up := startUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = io.WriteString(w, "data: {}\n\n")
		w.(http.Flusher).Flush()
		_, _ = io.WriteString(w, "data: [DONE]\n\n")
	})
	send(t, front+"/", `{}`, map[string]string{"x-test-reject": "1"})
	send(t, front+"/", `{}`, map[string]string{"x-test-destination": deadAddr(t) + "," + up.addr()})
	send(t, front+"/", `{"stream":true}`, map[string]string{"x-test-destination": up.addr()})
	send(t, front+"/", strings.Repeat("x", 4*DefaultProxyChunkSize), map[string]string{"x-test-limit": "n"})
	up.Close()
	stop()
	http.DefaultClient.CloseIdleConnections()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines before, %d after:\n%s", before, runtime.NumGoroutine(), buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(20 * time.Millisecond)
	}
}
