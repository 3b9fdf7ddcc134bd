package gateway

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The HTTP front's robustness suite: whatever a client sends over a real
// TCP connection — random headers, bodies that are not JSON, declared
// lengths far over what arrives, chunked bodies good and broken,
// connections closed mid-body or mid-response — the gateway never
// panics, lets go of every goroutine once the connections are gone, and
// never sends a request to a second model server after the client saw
// bytes of the first one's answer.

// panicLog is a slog handler that counts the records net/http writes
// when a handler panics (it recovers them, so a test would not notice).
type panicLog struct{ panics atomic.Int64 }

func (h *panicLog) Enabled(context.Context, slog.Level) bool { return true }
func (h *panicLog) Handle(_ context.Context, r slog.Record) error {
	if strings.Contains(r.Message, "panic") {
		h.panics.Add(1)
	}
	return nil
}
func (h *panicLog) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *panicLog) WithGroup(string) slog.Handler      { return h }

// fuzzHeader names the request in what model servers receive.
const fuzzHeader = "X-Fuzz-Id"

// fuzzBackends are two model servers whose answer depends on the request:
// a complete answer, a retryable 503, a stream cut off midway, a slow
// answer. They record, per request id, which server answered how, in
// order.
type fuzzBackends struct {
	servers []*fakeServer
	mu      sync.Mutex
	seen    map[string][]string // id → "server:mode", in arrival order
}

func newFuzzBackends(t testing.TB) *fuzzBackends {
	b := &fuzzBackends{seen: map[string][]string{}}
	for i := range 2 {
		f := newFakeServer(t)
		f.setHandler(b.handler(i))
		b.servers = append(b.servers, f)
	}
	return b
}

func (b *fuzzBackends) handler(server int) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get(fuzzHeader)
		n, _ := strconv.Atoi(id)
		mode := n % 4
		if server == 1 && mode == 1 {
			mode = 0 // the fallback answers what the first refused
		}
		if id != "" { // a request without one (fuzzed bytes) is not followed
			b.mu.Lock()
			b.seen[id] = append(b.seen[id], fmt.Sprintf("%d:%d", server, mode))
			b.mu.Unlock()
		}
		switch mode {
		case 0:
			answerChat(w, r)
		case 1:
			answerStatus(http.StatusServiceUnavailable)(w, r)
		case 2:
			w.Header().Set("Content-Type", "text/event-stream")
			_, _ = io.WriteString(w, `data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"hi"}}]}`+"\n\n")
			http.NewResponseController(w).Flush()
			panic(http.ErrAbortHandler) // the stream breaks off
		case 3:
			select {
			case <-time.After(20 * time.Millisecond):
				answerChat(w, r)
			case <-r.Context().Done():
			}
		}
	}
}

// check fails the test for every request that reached a model server
// after another one had answered it with more than a retryable status.
func (b *fuzzBackends) check(t testing.TB) {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	for id, hits := range b.seen {
		for i, h := range hits[:max(len(hits)-1, 0)] {
			if !strings.HasSuffix(h, ":1") { // only a 503 may be retried
				t.Errorf("request %s reached a model server after %s answered it: %v", id, h, hits[i+1:])
			}
		}
	}
}

// fuzzGateway is a gateway over two fuzz backends, with retries, short
// body deadlines and a small body limit.
func fuzzGateway(t testing.TB) (*Server, *fuzzBackends, *panicLog) {
	t.Helper()
	b := newFuzzBackends(t)
	logs := &panicLog{}
	cfg := parseFront(t, "  maxRequestBodySize: 64Ki\n  timeouts: {bodyIdle: 500ms, bodyGrace: 1s}\n",
		poolYAML("m", b.servers[0].addr, b.servers[1].addr),
		routeYAML("m", "  matches: [{model: {value: m}}]\n  backends: [{pool: m}]\n  retries: 1\n"),
	)
	s := startGateway(t, cfg, Options{Logger: slog.New(logs)})
	waitCandidates(t, s, "m", 2)
	return s, b, logs
}

// exchange sends raw to the gateway over a new connection, then reads
// what comes back (at most readLimit bytes, -1: all) within 3s, closing
// the connection early when readLimit is reached.
func exchange(addr string, parts [][]byte, pause time.Duration, readLimit int) {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	for i, p := range parts {
		if i > 0 && pause > 0 {
			time.Sleep(pause)
		}
		if _, err := c.Write(p); err != nil {
			return
		}
	}
	if readLimit < 0 { // one answer, whole
		if resp, err := http.ReadResponse(bufio.NewReader(c), nil); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		return
	}
	_, _ = io.CopyN(io.Discard, c, int64(readLimit))
}

// randomRequest builds one abusive or ordinary request for id: the parts
// to write, the pause between them and how much of the answer to read.
func randomRequest(rng *rand.Rand, id int) (parts [][]byte, pause time.Duration, readLimit int) {
	// Half the requests are ordinary ones (framing aside), so that model
	// servers see plenty of them while the rest is abuse.
	ordinary := rng.IntN(2) == 0
	pick := func(n int) int {
		if ordinary {
			return 0
		}
		return rng.IntN(n)
	}
	model := "m"
	if !ordinary && rng.IntN(8) == 0 {
		model = strings.Repeat("x", rng.IntN(300))
	}
	body := []byte(`{"model":"` + model + `","messages":[{"role":"user","content":"hi ` + strconv.Itoa(id) + `"}],"max_tokens":4}`)
	switch pick(6) {
	case 1: // streamed
		body = []byte(`{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}`)
	case 2: // not JSON
		body = make([]byte, rng.IntN(2048))
		for i := range body {
			body[i] = byte(rng.IntN(256))
		}
	case 3: // JSON of the wrong shape
		body = []byte(`{"model":["m"],"messages":{"role":1}}`)
	}
	methods := []string{"POST", "POST", "POST", "GET", "PUT", "OPTIONS", "BREW"}
	paths := []string{"/v1/chat/completions", "/v1/chat/completions", "/v1/completions", "/v1/models", "/v1/../v1/chat/completions", "//v1/embeddings", "/v1/chat/completions?x=%zz", "/nope", "/v1/chat/completions/"}
	var h bytes.Buffer
	fmt.Fprintf(&h, "%s %s HTTP/1.1\r\nHost: igw\r\n%s: %d\r\n", methods[pick(len(methods))], paths[pick(len(paths))], fuzzHeader, id)
	for range pick(6) {
		switch rng.IntN(5) {
		case 0:
			h.WriteString("X-Gateway-Destination-Endpoint: 10.0.0.1:1\r\n")
		case 1:
			fmt.Fprintf(&h, "X-Big: %s\r\n", strings.Repeat("a", rng.IntN(16<<10)))
		case 2:
			h.WriteString("Content-Type: text/plain\r\n")
		case 3:
			h.WriteString("Connection: keep-alive, X-Other\r\nX-Other: 1\r\n")
		case 4:
			fmt.Fprintf(&h, "X-R%d: \x01\xff\r\n", rng.IntN(100)) // not a valid field value
		}
	}
	readLimit = -1
	if rng.IntN(5) == 0 {
		readLimit = rng.IntN(200) // close mid-response
	}
	framing := rng.IntN(6)
	if ordinary && framing != 0 {
		framing = 5
	}
	switch framing {
	case 0: // chunked, well-formed
		h.WriteString("Transfer-Encoding: chunked\r\n\r\n")
		var c bytes.Buffer
		for rest := body; len(rest) > 0; {
			n := min(len(rest), 1+rng.IntN(64))
			fmt.Fprintf(&c, "%x\r\n%s\r\n", n, rest[:n])
			rest = rest[n:]
		}
		c.WriteString("0\r\n\r\n")
		return [][]byte{h.Bytes(), c.Bytes()}, 0, readLimit
	case 1: // chunked, broken
		h.WriteString("Transfer-Encoding: chunked\r\n\r\n")
		return [][]byte{h.Bytes(), []byte("zz\r\n" + string(body))}, 0, readLimit
	case 2: // a huge declared length, a few bytes, then gone
		fmt.Fprintf(&h, "Content-Length: %d\r\n\r\n", []int{10 << 20, 1 << 40, 60 << 10}[rng.IntN(3)])
		return [][]byte{h.Bytes(), body[:min(len(body), 10)]}, 10 * time.Millisecond, 0
	case 3: // closed mid-body
		fmt.Fprintf(&h, "Content-Length: %d\r\n\r\n", len(body))
		return [][]byte{h.Bytes(), body[:len(body)/2]}, 5 * time.Millisecond, 0
	case 4: // a length that lies
		fmt.Fprintf(&h, "Content-Length: %d\r\n\r\n", len(body)+rng.IntN(3)-1)
		return [][]byte{h.Bytes(), body}, 0, readLimit
	default:
		fmt.Fprintf(&h, "Content-Length: %d\r\n\r\n", len(body))
		return [][]byte{h.Bytes(), body}, 0, readLimit
	}
}

// settle waits until the goroutines are back to at most baseline+slack,
// closing the gateway's idle connections to model servers (pooled, not
// leaked).
func settle(t testing.TB, s *Server, baseline int) {
	t.Helper()
	const slack = 20
	deadline := time.Now().Add(10 * time.Second)
	for {
		if tr, ok := s.transport.(*http.Transport); ok {
			tr.CloseIdleConnections()
		}
		n := runtime.NumGoroutine()
		if n <= baseline+slack {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines after the connections closed, baseline %d:\n%s", n, baseline, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestGateway_RandomAbuseOverTCP sends a few hundred random requests
// (bounded: 300 requests, 8 at a time, about 15 s at most).
func TestGateway_RandomAbuseOverTCP(t *testing.T) {
	const (
		requests = 300
		workers  = 8
		budget   = 15 * time.Second
	)
	s, b, logs := fuzzGateway(t)
	hc := newClient(t)
	if r := post(t, hc, s, "/v1/chat/completions", chatBody("m"), fuzzHeader+": 0"); r.status != http.StatusOK {
		t.Fatalf("warm-up: %d %s", r.status, r.body)
	}
	hc.Transport.(*http.Transport).CloseIdleConnections()
	settle(t, s, runtime.NumGoroutine())
	baseline := runtime.NumGoroutine()

	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	stop := time.Now().Add(budget)
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(seed, uint64(w)))
			for time.Now().Before(stop) {
				id := int(next.Add(1))
				if id > requests {
					return
				}
				parts, pause, readLimit := randomRequest(rng, id)
				exchange(s.Addr(), parts, pause, readLimit)
			}
		})
	}
	wg.Wait()
	if n := logs.panics.Load(); n != 0 {
		t.Fatalf("the gateway panicked %d times", n)
	}
	settle(t, s, baseline)
	b.check(t)
	b.mu.Lock()
	reached := len(b.seen)
	b.mu.Unlock()
	if reached < requests/5 {
		t.Fatalf("only %d requests reached a model server: the suite tests little", reached)
	}
	t.Logf("%d of %d requests reached a model server", reached, requests)
	if r := post(t, hc, s, "/v1/chat/completions", chatBody("m"), fuzzHeader+": 4"); r.status != http.StatusOK {
		t.Fatalf("serving after the abuse: %d %s", r.status, r.body)
	}
}

// FuzzGateway_RawRequest sends arbitrary bytes as a request to a running
// gateway over TCP. Run with go test -fuzz=FuzzGateway_RawRequest; plain
// go test runs the seeds.
func FuzzGateway_RawRequest(f *testing.F) {
	for _, seed := range []string{
		"POST /v1/chat/completions HTTP/1.1\r\nHost: igw\r\nContent-Length: 62\r\n\r\n" + `{"model":"m","messages":[{"role":"user","content":"hi"}]}    `,
		"POST /v1/chat/completions HTTP/1.1\r\nHost: igw\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{\"mod\r\n0\r\n\r\n",
		"POST /v1/chat/completions HTTP/1.1\r\nHost: igw\r\nContent-Length: 10485760\r\n\r\n{",
		"GET /v1/../v1/models HTTP/1.1\r\nHost: igw\r\n\r\n",
		"GET //v1/models HTTP/1.1\r\nHost: igw\r\n\r\nGET /v1/models HTTP/1.1\r\nHost: igw\r\n\r\n",
		"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
		"POST /v1/embeddings HTTP/1.0\r\nContent-Length: -1\r\n\r\n",
	} {
		f.Add([]byte(seed))
	}
	s, b, logs := fuzzGateway(f)
	f.Fuzz(func(t *testing.T, raw []byte) {
		c, err := net.DialTimeout("tcp", s.Addr(), 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(2 * time.Second))
		if _, err := c.Write(raw); err != nil {
			return
		}
		_ = c.(*net.TCPConn).CloseWrite()
		_, _ = io.Copy(io.Discard, c)
		if n := logs.panics.Load(); n != 0 {
			t.Fatalf("the gateway panicked on %q", raw)
		}
		b.check(t)
	})
}
