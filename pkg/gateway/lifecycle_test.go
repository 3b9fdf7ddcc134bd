package gateway

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/igw-dev/igw/pkg/director"
	"github.com/igw-dev/igw/pkg/openai"
	"github.com/igw-dev/igw/pkg/sim"
)

// startSim starts replicas of the model-server simulator on ephemeral
// loopback ports, serving model "llama".
func startSim(t testing.TB, replicas int, timeScale float64) *sim.Fleet {
	t.Helper()
	cfg := sim.DefaultConfig()
	cfg.Port, cfg.Replicas, cfg.Model, cfg.TimeScale = 0, replicas, "llama", timeScale
	f, err := sim.StartFleet(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = f.Close(ctx)
	})
	return f
}

// simGateway is a gateway with one pool "llama" over the fleet.
func simGateway(t testing.TB, f *sim.Fleet) *Server {
	t.Helper()
	s := startGateway(t, parseConfig(t,
		poolYAML("llama", f.Addrs()...),
		routeYAML("llama", "  matches: [{model: {value: llama}}]\n  backends: [{pool: llama}]\n"),
	), Options{})
	waitCandidates(t, s, "llama", len(f.Addrs()))
	return s
}

// openStream sends a streamed chat request and returns the response once
// its headers arrived.
func openStream(t testing.TB, ctx context.Context, c *http.Client, s *Server, maxTokens int) *http.Response {
	t.Helper()
	body := `{"model":"llama","messages":[{"role":"user","content":"Tell me a long story."}],` +
		`"max_tokens":` + itoa(maxTokens) + `,"ignore_eos":true,"stream":true,"stream_options":{"include_usage":true}}`
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+s.Addr()+"/v1/chat/completions", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		t.Fatalf("stream: %d %s", resp.StatusCode, b)
	}
	return resp
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}

// streamSummary reads an SSE stream to its end: content chunks, the usage
// chunk if any, and whether [DONE] arrived.
type streamSummary struct {
	chunks int
	usage  *openai.Usage
	done   bool
}

func readStream(t testing.TB, r io.Reader) streamSummary {
	t.Helper()
	var sum streamSummary
	sr := openai.NewSSEReader(r)
	for {
		payload, err := sr.Next()
		if errors.Is(err, io.EOF) {
			return sum
		}
		if err != nil {
			t.Fatalf("reading stream: %v", err)
		}
		if string(payload) == openai.SSEDone {
			sum.done = true
			continue
		}
		var chunk openai.ChatCompletionChunk
		if err := json.Unmarshal(payload, &chunk); err != nil {
			t.Fatalf("chunk %s: %v", payload, err)
		}
		if chunk.Usage != nil {
			sum.usage = chunk.Usage
		}
		if len(chunk.Choices) > 0 && chunk.Choices[0].Delta.Content != nil && *chunk.Choices[0].Delta.Content != "" {
			sum.chunks++
		}
	}
}

func TestGateway_ClientDisconnectCancelsUpstream(t *testing.T) {
	fleet := startSim(t, 1, 1) // 4000 tokens take about 20 s: the client leaves long before
	engine := fleet.Servers()[0].Engine()
	s := simGateway(t, fleet)
	c := newClient(t)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	resp := openStream(t, ctx, c, s, 4000)
	br := bufio.NewReader(resp.Body)
	for i := 0; i < 3; i++ { // the role chunk, then generated tokens
		if _, err := br.ReadString('\n'); err != nil {
			t.Fatal(err)
		}
	}
	if st := engine.State(); st.Running != 1 || st.KVCacheUsage == 0 {
		t.Fatalf("while streaming: running %d, KV usage %v", st.Running, st.KVCacheUsage)
	}
	cancel() // the client disconnects mid-stream
	resp.Body.Close()

	waitFor(t, "the simulator to drop the aborted sequence", 5*time.Second, func() bool {
		st := engine.State()
		return st.Running == 0 && st.Waiting == 0 && st.KVCacheUsage == 0
	})
	waitFor(t, "the gateway to release the request", 5*time.Second, func() bool {
		return s.engine.Store().AllEndpoints()[0].InFlight() == 0 && sample(scrape(t, c, s), "igw_requests_in_flight") == 0
	})
}

func TestGateway_MetricsExposeRequestsLatencyTokensAndScheduling(t *testing.T) {
	fleet := startSim(t, 2, 50)
	s := simGateway(t, fleet)
	c := newClient(t)

	var prompt, completion int
	const n = 3
	for i := range n { // non-streamed: usage in the JSON body
		r := post(t, c, s, "/v1/chat/completions", `{"model":"llama","messages":[{"role":"user","content":"Question `+itoa(i)+`"}],"max_tokens":12}`)
		var cc openai.ChatCompletion
		if r.status != http.StatusOK || json.Unmarshal([]byte(r.body), &cc) != nil || cc.Usage == nil {
			t.Fatalf("%d %s", r.status, r.body)
		}
		prompt += cc.Usage.PromptTokens
		completion += cc.Usage.CompletionTokens
	}
	for range n { // streamed: usage in the last SSE chunk
		resp := openStream(t, context.Background(), c, s, 10)
		sum := readStream(t, resp.Body)
		resp.Body.Close()
		if !sum.done || sum.usage == nil || sum.usage.CompletionTokens != 10 {
			t.Fatalf("stream %+v", sum)
		}
		prompt += sum.usage.PromptTokens
		completion += sum.usage.CompletionTokens
	}
	for i := range 20 { // made-up model names must not each add a series
		if r := post(t, c, s, "/v1/chat/completions", chatBody("unknown-"+itoa(i))); r.status != http.StatusNotFound {
			t.Fatalf("unknown model: %d", r.status)
		}
	}

	fams := scrape(t, c, s)
	for _, tc := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"igw_requests_total", []string{"model=llama", "pool=default/llama", "code=200"}, 2 * n},
		{"igw_requests_total", []string{"model=", "pool=", "code=404"}, 20},
		{"igw_request_duration_seconds", []string{"model=llama"}, 2 * n},
		{"igw_request_ttft_seconds", []string{"model=llama", "pool=default/llama"}, 2 * n},
		{"igw_tokens_total", []string{"model=llama", "pool=default/llama", "type=input"}, float64(prompt)},
		{"igw_tokens_total", []string{"model=llama", "pool=default/llama", "type=output"}, float64(completion)},
		{"igw_scheduling_decisions_total", []string{"pool=default/llama"}, 2 * n},
		{"igw_scheduler_duration_seconds", nil, 2 * n},
		{"igw_requests_in_flight", []string{"pool=default/llama"}, 0},
	} {
		if got := sample(fams, tc.name, tc.labels...); got != tc.want {
			t.Errorf("%s%v = %v, want %v", tc.name, tc.labels, got, tc.want)
		}
	}
	if n := len(fams["igw_requests_total"].GetMetric()); n != 2 {
		t.Errorf("igw_requests_total has %d series, want 2 (llama 200, unlabelled 404)", n)
	}
	if prompt == 0 || completion == 0 {
		t.Errorf("usage sums prompt=%d completion=%d", prompt, completion)
	}
	decided := 0.0
	for _, addr := range fleet.Addrs() {
		decided += sample(fams, "igw_scheduling_decisions_total", "pool=default/llama", "endpoint="+addr)
	}
	if decided != 2*n {
		t.Errorf("decisions labelled with the fleet's endpoints: %v, want %d", decided, 2*n)
	}
}

func TestGateway_HealthAndReadiness(t *testing.T) {
	srv := newFakeServer(t)
	srv.noScrape.Store(true)
	s := startGateway(t, parseConfig(t,
		poolYAML("p", srv.addr),
		routeYAML("r", "  matches: [{model: {value: m}}]\n  backends: [{pool: p}]\n"),
	), Options{})
	c := newClient(t)
	admin := "http://" + s.AdminAddr()

	if r := get(t, c, admin+"/healthz"); r.status != http.StatusOK {
		t.Errorf("/healthz before any scrape: %d", r.status)
	}
	time.Sleep(5 * testScrapeInterval) // several failed scrapes
	if r := get(t, c, admin+"/readyz"); r.status != http.StatusServiceUnavailable {
		t.Fatalf("/readyz before a successful scrape: %d %s", r.status, r.body)
	}
	if r := post(t, c, s, "/v1/chat/completions", chatBody("m")); r.status != http.StatusServiceUnavailable ||
		r.header.Get(director.DroppedReasonHeader) != "rejected-no-endpoints" {
		t.Errorf("request before a scrape: %d %q", r.status, r.header.Get(director.DroppedReasonHeader))
	}

	srv.noScrape.Store(false)
	waitFor(t, "/readyz to answer 200", 5*time.Second, func() bool { return get(t, c, admin+"/readyz").status == http.StatusOK })
	if r := get(t, c, "http://"+s.Addr()+"/readyz"); r.status != http.StatusOK {
		t.Errorf("/readyz on the API listener: %d", r.status)
	}

	// A stream in flight holds Shutdown open; meanwhile /readyz says 503 so
	// load balancers stop sending, and the stream still completes.
	release := make(chan struct{})
	srv.setHandler(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		_, _ = io.WriteString(w, `data: {"choices":[{"index":0,"delta":{"content":"a"}}]}`+"\n\n")
		w.(http.Flusher).Flush()
		<-release
		_, _ = io.WriteString(w, `data: {"choices":[],"usage":{"prompt_tokens":4,"completion_tokens":1,"total_tokens":5}}`+"\n\ndata: [DONE]\n\n")
	})
	resp := openStreamBody(t, c, s, `{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true}`)
	br := bufio.NewReader(resp.Body)
	if line, err := br.ReadString('\n'); err != nil || !strings.HasPrefix(line, "data: ") {
		t.Fatalf("first line %q %v", line, err)
	}
	shutdown := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		shutdown <- s.Shutdown(ctx)
	}()
	waitFor(t, "/readyz to answer 503 during shutdown", 5*time.Second, func() bool {
		return get(t, c, admin+"/readyz").status == http.StatusServiceUnavailable
	})
	if r := get(t, c, admin+"/healthz"); r.status != http.StatusOK {
		t.Errorf("/healthz during shutdown: %d", r.status)
	}
	close(release)
	sum := readStream(t, br)
	resp.Body.Close()
	if !sum.done || sum.usage == nil || sum.usage.PromptTokens != 4 {
		t.Errorf("the in-flight stream was cut: %+v", sum)
	}
	select {
	case err := <-shutdown:
		if err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Shutdown did not return after the stream ended")
	}
}

// openStreamBody posts body and returns the response once its headers
// arrived.
func openStreamBody(t testing.TB, c *http.Client, s *Server, body string) *http.Response {
	t.Helper()
	resp, err := c.Post("http://"+s.Addr()+"/v1/chat/completions", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		t.Fatalf("%d %s", resp.StatusCode, b)
	}
	return resp
}

func TestGateway_ShutdownLetsInFlightStreamFinish(t *testing.T) {
	fleet := startSim(t, 1, 1) // 400 tokens at 5 ms or more each
	s := simGateway(t, fleet)
	c := newClient(t)
	resp := openStream(t, context.Background(), c, s, 400)
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	if _, err := br.ReadString('\n'); err != nil {
		t.Fatal(err)
	}

	shutdown := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		shutdown <- s.Shutdown(ctx)
	}()
	// New connections are refused once Shutdown has closed the listener.
	waitFor(t, "the API listener to close", 5*time.Second, func() bool {
		resp, err := newClient(t).Post("http://"+s.Addr()+"/v1/chat/completions", "application/json", strings.NewReader(chatBody("llama")))
		if err == nil {
			resp.Body.Close()
		}
		return err != nil
	})
	sum := readStream(t, br)
	if !sum.done || sum.usage == nil || sum.usage.CompletionTokens != 400 || sum.chunks < 399 {
		t.Errorf("stream cut by shutdown: %d chunks, usage %+v, done %v", sum.chunks, sum.usage, sum.done)
	}
	if err := <-shutdown; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
}
