package gateway

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/igw-dev/igw/pkg/config"
	"github.com/igw-dev/igw/pkg/openai"
)

// parseFront is parseConfig with extra lines under the Gateway's spec
// (indented by two spaces).
func parseFront(t testing.TB, spec string, docs ...string) *config.Config {
	t.Helper()
	cfg, err := testSchema.Parse("test.yaml", []byte(gatewayYAML+spec+strings.Join(docs, "")))
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	return cfg
}

// frontGateway is a gateway with the Gateway spec lines extra and one pool
// "m" over a fake server routed by model "m".
func frontGateway(t testing.TB, extra string) (*Server, *fakeServer) {
	t.Helper()
	f := newFakeServer(t)
	s := startGateway(t, parseFront(t, extra,
		poolYAML("m", f.addr),
		routeYAML("m", "  matches: [{model: {value: m}}]\n  backends: [{pool: m}]\n"),
	), Options{})
	waitCandidates(t, s, "m", 1)
	return s, f
}

// rawConn dials the gateway's API listener; it is closed when the test ends.
func rawConn(t testing.TB, s *Server) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", s.Addr(), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// bodyHead is a chat completions request head declaring a body of n bytes.
func bodyHead(n int) string {
	return fmt.Sprintf("POST /v1/chat/completions HTTP/1.1\r\nHost: igw\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", n)
}

// readResponse reads one response from c, giving up after d.
func readResponse(t testing.TB, c net.Conn, d time.Duration) (*http.Response, string) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(d))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("reading the response: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

// openAIError checks that body is an OpenAI error with OpenAI's type for
// status code.
func openAIError(t testing.TB, body string, code int) *openai.Error {
	t.Helper()
	want := openai.TypeForStatus(code)
	var er openai.ErrorResponse
	if err := json.Unmarshal([]byte(body), &er); err != nil || er.Error.Type != want || er.Error.Message == "" {
		t.Fatalf("body %q is not an OpenAI error of type %s (status %d)", body, want, code)
	}
	return &er.Error
}

func TestGateway_BodyPausedOverBodyIdleGets408AndClose(t *testing.T) {
	s, f := frontGateway(t, "  timeouts: {bodyIdle: 300ms}\n")
	c := rawConn(t, s)
	start := time.Now()
	if _, err := io.WriteString(c, bodyHead(1000)+"{"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusRequestTimeout || !resp.Close {
		t.Fatalf("status %d, close %v, want 408 and Connection: close", resp.StatusCode, resp.Close)
	}
	openAIError(t, string(b), http.StatusRequestTimeout)
	if took := time.Since(start); took < 300*time.Millisecond {
		t.Fatalf("cut off after %s, before bodyIdle", took)
	}
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("connection still open after the 408: %v", err)
	}
	if f.hits.Load() != 0 {
		t.Fatal("a model server saw the request")
	}
	fams := scrape(t, newClient(t), s)
	if got := sample(fams, "igw_request_body_rejections_total", "reason=timeout"); got != 1 {
		t.Fatalf("timeout rejections = %v, want 1", got)
	}
}

// TestGateway_BodyUnderMinRateGets408: bytes keep coming, but slower
// than the minimum rate once the grace has passed.
func TestGateway_BodyUnderMinRateGets408(t *testing.T) {
	s, _ := frontGateway(t, "  minBodyRate: 1Ki\n  timeouts: {bodyIdle: 10s, bodyGrace: 200ms}\n")
	c := rawConn(t, s)
	if _, err := io.WriteString(c, bodyHead(100000)); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	defer close(done)
	go func() { // one byte every 50ms: 20 B/s
		for {
			select {
			case <-done:
				return
			case <-time.After(50 * time.Millisecond):
				if _, err := c.Write([]byte(" ")); err != nil {
					return
				}
			}
		}
	}()
	resp, body := readResponse(t, c, 10*time.Second)
	if resp.StatusCode != http.StatusRequestTimeout {
		t.Fatalf("status %d %s, want 408", resp.StatusCode, body)
	}
	openAIError(t, body, http.StatusRequestTimeout)
}

// TestGateway_SlowButSteadyBodyIsServed: a body that pauses under
// bodyIdle and keeps the minimum rate is served, and the deadlines are
// gone once it is read (the response may take longer than bodyIdle).
func TestGateway_SlowButSteadyBodyIsServed(t *testing.T) {
	s, f := frontGateway(t, "  minBodyRate: 10\n  timeouts: {bodyIdle: 400ms, bodyGrace: 1s}\n")
	f.setHandler(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(600 * time.Millisecond) // longer than bodyIdle
		answerChat(w, r)
	})
	body := chatBody("m")
	c := rawConn(t, s)
	if _, err := io.WriteString(c, bodyHead(len(body))); err != nil {
		t.Fatal(err)
	}
	for _, part := range []string{body[:10], body[10:20], body[20:]} {
		time.Sleep(150 * time.Millisecond)
		if _, err := io.WriteString(c, part); err != nil {
			t.Fatal(err)
		}
	}
	resp, got := readResponse(t, c, 10*time.Second)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d %s", resp.StatusCode, got)
	}
}

func TestGateway_BufferedBodyBudgetAnswers503(t *testing.T) {
	// Each client declaring 1 MiB and sending a byte reserves a first
	// buffer of initialBodyBytes; two fit, the third does not.
	s, f := frontGateway(t, fmt.Sprintf("  maxBufferedBodyBytes: %d\n", 2*initialBodyBytes+initialBodyBytes/2))
	c := newClient(t)
	var held []net.Conn
	for range 2 {
		conn := rawConn(t, s)
		if _, err := io.WriteString(conn, bodyHead(1<<20)+"{"); err != nil {
			t.Fatal(err)
		}
		held = append(held, conn)
	}
	waitFor(t, "two bodies held", 5*time.Second, func() bool {
		return sample(scrape(t, c, s), "igw_request_body_bytes_held") == 2*initialBodyBytes
	})
	conn := rawConn(t, s)
	if _, err := io.WriteString(conn, bodyHead(1<<20)+"{"); err != nil {
		t.Fatal(err)
	}
	resp, body := readResponse(t, conn, 10*time.Second)
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") != "1" || !resp.Close {
		t.Fatalf("status %d, Retry-After %q, close %v: %s", resp.StatusCode, resp.Header.Get("Retry-After"), resp.Close, body)
	}
	openAIError(t, body, http.StatusServiceUnavailable)
	if got := sample(scrape(t, c, s), "igw_request_body_rejections_total", "reason=capacity"); got != 1 {
		t.Fatalf("capacity rejections = %v, want 1", got)
	}
	// Small requests still fit beside the held bodies.
	if r := post(t, c, s, "/v1/chat/completions", chatBody("m")); r.status != http.StatusOK {
		t.Fatalf("a small request beside the held bodies: %d %s", r.status, r.body)
	}
	for _, h := range held {
		h.Close()
	}
	waitFor(t, "the held bytes released", 5*time.Second, func() bool {
		return sample(scrape(t, c, s), "igw_request_body_bytes_held") == 0
	})
	if f.hits.Load() != 1 {
		t.Fatalf("model server hits = %d, want 1", f.hits.Load())
	}
}

func TestGateway_UncleanPathsGet404NotARedirect(t *testing.T) {
	s, f := frontGateway(t, "")
	for _, p := range []string{"/v1/../v1/models", "//v1/chat/completions", "/v1//chat/completions", "/v1/./models", "/v1/chat/completions/.."} {
		t.Run(p, func(t *testing.T) {
			c := rawConn(t, s)
			if _, err := io.WriteString(c, "GET "+p+" HTTP/1.1\r\nHost: igw\r\n\r\n"); err != nil {
				t.Fatal(err)
			}
			resp, body := readResponse(t, c, 10*time.Second)
			if resp.StatusCode != http.StatusNotFound || resp.Header.Get("Location") != "" {
				t.Fatalf("status %d, Location %q, want 404 without a redirect", resp.StatusCode, resp.Header.Get("Location"))
			}
			openAIError(t, body, http.StatusNotFound)
		})
	}
	if f.hits.Load() != 0 {
		t.Fatal("a model server saw a request")
	}
}

func TestGateway_WrongMethodGets405WithAllow(t *testing.T) {
	s, _ := frontGateway(t, "")
	c := newClient(t)
	tests := []struct{ method, path, allow string }{
		{http.MethodGet, "/v1/chat/completions", "POST"},
		{http.MethodPut, "/v1/embeddings", "POST"},
		{http.MethodPost, "/v1/models", "GET, HEAD"},
		{http.MethodDelete, "/v1/models", "GET, HEAD"},
		{http.MethodPost, "/healthz", "GET, HEAD"},
	}
	for _, tc := range tests {
		req, _ := http.NewRequest(tc.method, "http://"+s.Addr()+tc.path, strings.NewReader("{}"))
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != tc.allow {
			t.Errorf("%s %s: status %d, Allow %q, want 405 and %q", tc.method, tc.path, resp.StatusCode, resp.Header.Get("Allow"), tc.allow)
			continue
		}
		openAIError(t, string(b), http.StatusMethodNotAllowed)
	}
	if r := get(t, c, "http://"+s.Addr()+"/v1/models"); r.status != http.StatusOK {
		t.Fatalf("GET /v1/models: %d", r.status)
	}
}

// TestGateway_HalfClosedClientIsACancellationNotAServerFailure: a client
// that sends its whole request and then shuts down its sending side cancels
// the request (net/http reads the EOF as the client leaving); the gateway
// counts it as the client's doing (499), never as a 502 of the model
// server.
func TestGateway_HalfClosedClientIsACancellationNotAServerFailure(t *testing.T) {
	s, f := frontGateway(t, "")
	released := make(chan struct{})
	t.Cleanup(func() { close(released) })
	f.setHandler(func(w http.ResponseWriter, r *http.Request) {
		select { // answers only after the gateway gave up on it
		case <-r.Context().Done():
		case <-released:
		}
	})
	c := rawConn(t, s).(*net.TCPConn)
	body := chatBody("m")
	if _, err := io.WriteString(c, bodyHead(len(body))+body); err != nil {
		t.Fatal(err)
	}
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, _ := io.ReadAll(c)
	if strings.HasPrefix(string(got), "HTTP/1.1 502") {
		t.Fatalf("the half-closed client got a 502: %s", got)
	}
	hc := newClient(t)
	waitFor(t, "the request counted", 5*time.Second, func() bool {
		return sample(scrape(t, hc, s), "igw_requests_total") == 1
	})
	fams := scrape(t, hc, s)
	if bad := sample(fams, "igw_requests_total", "code=502"); bad != 0 {
		t.Fatalf("counted as a model server failure (502): %v", bad)
	}
	if got := sample(fams, "igw_requests_total", "code=499"); got != 1 {
		t.Fatalf("499s = %v, want 1", got)
	}
}

// TestGateway_SlowBodyAttackLetsGoWithinTheDeadline: 100 connections each
// declare a 10 MiB body and send one byte. The gateway holds a first
// buffer per connection (not 10 MiB), and every connection gets 408 or is
// closed once bodyIdle has passed.
func TestGateway_SlowBodyAttackLetsGoWithinTheDeadline(t *testing.T) {
	const (
		conns    = 100
		bodyIdle = 2 * time.Second
		slack    = 5 * time.Second // generous: -race, a loaded machine
		maxHeap  = 50 << 20
	)
	s, f := frontGateway(t, "  timeouts: {bodyIdle: 2s}\n")
	hc := newClient(t)
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)

	type outcome struct {
		status int // 0: closed without an answer
		took   time.Duration
		err    error
	}
	results := make(chan outcome, conns)
	cs := make([]net.Conn, conns)
	for i := range cs {
		cs[i] = rawConn(t, s)
	}
	for _, c := range cs {
		go func() {
			start := time.Now()
			if _, err := io.WriteString(c, bodyHead(10<<20)+"{"); err != nil {
				results <- outcome{err: err}
				return
			}
			_ = c.SetReadDeadline(start.Add(bodyIdle + slack))
			br := bufio.NewReader(c)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
					results <- outcome{took: time.Since(start)}
					return
				}
				results <- outcome{err: err}
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			results <- outcome{status: resp.StatusCode, took: time.Since(start)}
		}()
	}
	// While every connection holds its buffer: the bytes held are the
	// first buffers, not the declared bodies.
	waitFor(t, "every body held", bodyIdle, func() bool {
		return sample(scrape(t, hc, s), "igw_request_body_bytes_held") == conns*initialBodyBytes
	})
	var during runtime.MemStats
	runtime.ReadMemStats(&during)
	if grew := int64(during.HeapInuse) - int64(before.HeapInuse); grew > maxHeap {
		t.Errorf("heap in use grew by %d MB holding %d slow bodies, want under %d MB", grew>>20, conns, maxHeap>>20)
	}
	for range conns {
		o := <-results
		switch {
		case o.err != nil:
			t.Errorf("a connection was neither answered nor closed within %s: %v", bodyIdle+slack, o.err)
		case o.status != 0 && o.status != http.StatusRequestTimeout:
			t.Errorf("status %d, want 408", o.status)
		case o.took < bodyIdle-100*time.Millisecond:
			t.Errorf("let go after %s, before bodyIdle %s", o.took, bodyIdle)
		}
	}
	waitFor(t, "the held bytes released", 5*time.Second, func() bool {
		return sample(scrape(t, hc, s), "igw_request_body_bytes_held") == 0
	})
	if got := sample(scrape(t, hc, s), "igw_request_body_rejections_total", "reason=timeout"); got != conns {
		t.Errorf("timeout rejections = %v, want %d", got, conns)
	}
	if f.hits.Load() != 0 {
		t.Fatal("a model server saw a request")
	}
}
