package gateway

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// hang answers nothing until the request's context ends (a stopped
// process: the kernel accepted the connection and the request, nobody
// answers).
func hang(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }

// A model server that takes the request and answers nothing costs one
// first-byte timeout, then the request is served elsewhere; with
// retryAfterSend off it fails with 504 instead and never reaches a second
// server.
func TestGateway_HungEndpointTimesOutAndMovesOn(t *testing.T) {
	hung, fallback := newFakeServer(t), newFakeServer(t)
	hung.setHandler(hang)
	fallback.load(3, 0.5) // the hung one looks idle: the picker prefers it
	s := startGateway(t, parseConfig(t,
		poolYAML("p", hung.addr, fallback.addr),
		routeYAML("r", "  matches: [{model: {value: m}}]\n  backends: [{pool: p}]\n  attempt: {firstByteTimeout: 300ms}\n"),
		routeYAML("once", "  matches: [{model: {value: m-once}}]\n  backends: [{pool: p}]\n  attempt: {firstByteTimeout: 300ms, retryAfterSend: false}\n"),
	), Options{})
	waitCandidates(t, s, "p", 2)
	waitMetrics(t, s, fallback.addr, 3)
	c := newClient(t)

	start := time.Now()
	r := post(t, c, s, "/v1/chat/completions", chatBody("m"))
	took := time.Since(start)
	if r.status != http.StatusOK || r.header.Get(HeaderDestinationServed) != fallback.addr {
		t.Fatalf("%d served by %q: %s", r.status, r.header.Get(HeaderDestinationServed), r.body)
	}
	if hung.hits.Load() != 1 {
		t.Errorf("the hung server got %d requests, want 1", hung.hits.Load())
	}
	// A bound on the behaviour (one 300ms timeout, then a fast server),
	// with room for a slow machine: without the timeout it is the route's
	// 10 minutes.
	if took > 5*time.Second {
		t.Errorf("the request took %s", took)
	}
	if got := sample(scrape(t, c, s), "igw_attempt_timeouts_total", "pool=default/p", "phase=first_byte"); got != 1 {
		t.Errorf("igw_attempt_timeouts_total{phase=first_byte} = %v, want 1", got)
	}

	before := fallback.hits.Load()
	r = post(t, c, s, "/v1/chat/completions", chatBody("m-once"))
	if r.status != http.StatusGatewayTimeout || !strings.Contains(string(r.body), `"error"`) {
		t.Errorf("retryAfterSend false: %d %s, want 504 with an error body", r.status, r.body)
	}
	if fallback.hits.Load() != before {
		t.Error("retryAfterSend false: the request reached a second server")
	}
}

// brokenSSE streams two chunks of a chat completion and then drops the
// connection, as a model server that dies mid-generation does.
func brokenSSE(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/event-stream")
	w.WriteHeader(http.StatusOK)
	for _, tok := range []string{"Hello", " world"} {
		_, _ = io.WriteString(w, `data: {"id":"x","object":"chat.completion.chunk","model":"m","choices":[{"index":0,"delta":{"content":"`+tok+`"}}]}`+"\n\n")
		w.(http.Flusher).Flush()
	}
	dropConnection(w)
}

// dropConnection closes the connection under w without ending the
// response, as a model server process that dies does.
func dropConnection(w http.ResponseWriter) {
	if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
		_ = conn.Close()
	}
}

// brokenJSON starts a chunked JSON answer and drops the connection.
func brokenJSON(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = io.WriteString(w, `{"id":"x","object":"chat.completion","model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"Hel`)
	w.(http.Flusher).Flush()
	dropConnection(w)
}

// A response the model server cuts is never a normal end: a stream ends
// with an error event in OpenAI's shape and [DONE], a plain response with
// a broken transfer; both are counted, and neither is retried.
func TestGateway_BrokenResponseIsNeverANormalEnd(t *testing.T) {
	srv := newFakeServer(t)
	s := startGateway(t, parseConfig(t,
		poolYAML("p", srv.addr),
		routeYAML("r", "  matches: [{model: {value: m}}]\n  backends: [{pool: p}]\n"),
	), Options{})
	waitCandidates(t, s, "p", 1)
	c := newClient(t)

	srv.setHandler(brokenSSE)
	resp, err := c.Post("http://"+s.Addr()+"/v1/chat/completions", "application/json",
		strings.NewReader(`{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	var events []string
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if line := sc.Text(); line != "" {
			events = append(events, line)
		}
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || len(events) != 4 {
		t.Fatalf("%d, events %q", resp.StatusCode, events)
	}
	if !strings.HasPrefix(events[2], `data: {"error":{`) || !strings.Contains(events[2], "broke off") || events[3] != "data: [DONE]" {
		t.Errorf("the stream ends with %q, want an error event and [DONE]", events[2:])
	}

	// On Anthropic's Messages API the last event is Anthropic's error
	// event, which its SDKs raise.
	resp, err = c.Post("http://"+s.Addr()+"/v1/messages", "application/json",
		strings.NewReader(`{"model":"m","stream":true,"max_tokens":5,"messages":[{"role":"user","content":"hi"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	events = events[:0]
	sc = bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if line := sc.Text(); line != "" {
			events = append(events, line)
		}
	}
	resp.Body.Close()
	if n := len(events); n < 2 || events[n-2] != "event: error" ||
		!strings.HasPrefix(events[n-1], `data: {"type":"error","error":{"type":"api_error","message":"the model server's response broke off`) {
		t.Errorf("the Messages stream ends with %q, want Anthropic's error event", events)
	}

	srv.setHandler(brokenJSON)
	resp, err = c.Post("http://"+s.Addr()+"/v1/chat/completions", "application/json", strings.NewReader(chatBody("m")))
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.ReadAll(resp.Body)
	resp.Body.Close()
	if err == nil || errors.Is(err, context.Canceled) {
		t.Errorf("a cut JSON answer read to a clean end (err %v): the client cannot tell it is short", err)
	}

	if srv.hits.Load() != 3 {
		t.Errorf("the server got %d requests, want 3 (a started response is never retried)", srv.hits.Load())
	}
	if got := sample(scrape(t, c, s), "igw_responses_broken_total", "pool=default/p"); got != 3 {
		t.Errorf("igw_responses_broken_total = %v, want 3", got)
	}
}

// Go's transport resends a POST carrying an Idempotency-Key on its own
// when a reused connection breaks after the request was written; the
// gateway must not let it (the model server would run it twice), and the
// header must still reach the model server.
func TestGateway_TransportNeverReplaysIdempotencyKeyRequests(t *testing.T) {
	srv := newFakeServer(t)
	var drops atomic.Int64
	s := startGateway(t, parseConfig(t,
		poolYAML("p", srv.addr),
		routeYAML("r", "  matches: [{model: {value: m}}]\n  backends: [{pool: p}]\n  retries: 0\n"),
	), Options{})
	waitCandidates(t, s, "p", 1)
	c := newClient(t)
	// A first request leaves a keep-alive connection to reuse.
	if r := post(t, c, s, "/v1/chat/completions", chatBody("m")); r.status != http.StatusOK {
		t.Fatalf("%d %s", r.status, r.body)
	}
	var gotKey atomic.Value
	srv.setHandler(func(w http.ResponseWriter, r *http.Request) {
		gotKey.Store(r.Header.Get("Idempotency-Key"))
		drops.Add(1)
		dropConnection(w) // read the request, then the connection breaks
	})
	hits := srv.hits.Load()
	r := post(t, c, s, "/v1/chat/completions", chatBody("m"), "Idempotency-Key: k-1")
	if r.status != http.StatusBadGateway {
		t.Errorf("%d %s, want 502", r.status, r.body)
	}
	if n := srv.hits.Load() - hits; n != 1 {
		t.Errorf("the model server got the request %d times, want once", n)
	}
	if k, _ := gotKey.Load().(string); k != "k-1" {
		t.Errorf("Idempotency-Key reached the server as %q", k)
	}
}
