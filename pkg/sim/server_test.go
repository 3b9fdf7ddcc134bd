package sim

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/igw-dev/igw/pkg/openai"
)

func startFleet(t testing.TB, mutate func(*Config)) *Fleet {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Port = 0
	cfg.Model = "m"
	if mutate != nil {
		mutate(&cfg)
	}
	f, err := StartFleet(cfg, nil)
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

func post(t testing.TB, addr, path, body string) (*http.Response, []byte) {
	t.Helper()
	resp, err := http.Post("http://"+addr+path, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

func chatBody(content string, extra string) string {
	c, _ := json.Marshal(content)
	return `{"model":"m","messages":[{"role":"system","content":"You are terse."},{"role":"user","content":` + string(c) + `}]` + extra + `}`
}

func TestServer_ChatCompletion(t *testing.T) {
	f := startFleet(t, func(c *Config) { c.TimeScale = 20 })
	resp, body := post(t, f.Addrs()[0], "/v1/chat/completions", chatBody("Tell me about GPUs.", `,"max_tokens":7,"ignore_eos":true`))
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	var c openai.ChatCompletion
	if err := json.Unmarshal(body, &c); err != nil {
		t.Fatal(err)
	}
	if c.Object != "chat.completion" || c.Model != "m" || len(c.Choices) != 1 || c.Choices[0].Message.Role != "assistant" {
		t.Fatalf("unexpected response: %s", body)
	}
	if c.Usage == nil || c.Usage.CompletionTokens != 7 || c.Choices[0].FinishReason != "length" {
		t.Fatalf("usage/finish: %s", body)
	}
	if got := openai.CountTokens(c.Choices[0].Message.Content.Text); got != 7 {
		t.Errorf("content %q has %d tokens, want 7", c.Choices[0].Message.Content.Text, got)
	}
	// The prompt count is the chat template's: two messages of markers,
	// role and newlines plus the generation prompt, plus the contents.
	wantPrompt := len(appendChatPrompt(nil, []openai.ChatMessage{
		{Role: "system", Content: openai.MessageContent{Text: "You are terse."}},
		{Role: "user", Content: openai.MessageContent{Text: "Tell me about GPUs."}},
	}))
	if c.Usage.PromptTokens != wantPrompt || c.Usage.TotalTokens != wantPrompt+7 || c.Usage.PromptTokensDetails == nil {
		t.Errorf("usage %+v, want %d prompt tokens", c.Usage, wantPrompt)
	}
}

// readStream parses an SSE response as an OpenAI client does.
func readStream(t *testing.T, r io.Reader) (payloads [][]byte, done bool) {
	t.Helper()
	sr := openai.NewSSEReader(r)
	for {
		data, err := sr.Next()
		if errors.Is(err, io.EOF) {
			return payloads, done
		}
		if err != nil {
			t.Fatal(err)
		}
		if string(data) == openai.SSEDone {
			done = true
			continue
		}
		if done {
			t.Fatalf("event after [DONE]: %s", data)
		}
		payloads = append(payloads, bytes.Clone(data))
	}
}

func TestServer_ChatStreamMatchesNonStreamed(t *testing.T) {
	f := startFleet(t, func(c *Config) { c.TimeScale = 20 })
	addr := f.Addrs()[0]
	_, plain := post(t, addr, "/v1/chat/completions", chatBody("Stream me.", `,"max_tokens":9,"ignore_eos":true`))
	var want openai.ChatCompletion
	if err := json.Unmarshal(plain, &want); err != nil {
		t.Fatal(err)
	}

	resp, err := http.Post("http://"+addr+"/v1/chat/completions", "application/json",
		strings.NewReader(chatBody("Stream me.", `,"max_tokens":9,"ignore_eos":true,"stream":true,"stream_options":{"include_usage":true}`)))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("content type %q", ct)
	}
	events, done := readStream(t, resp.Body)
	if !done {
		t.Fatal("stream did not end with [DONE]")
	}
	// role chunk + 9 token chunks + usage chunk
	if len(events) != 11 {
		t.Fatalf("%d events, want 11", len(events))
	}
	var text strings.Builder
	for i, ev := range events {
		var c openai.ChatCompletionChunk
		if err := json.Unmarshal(ev, &c); err != nil {
			t.Fatalf("event %d: %v: %s", i, err, ev)
		}
		// Every chunk must be exactly what encoding/json writes for it.
		if re, _ := json.Marshal(c); !bytes.Equal(re, ev) {
			t.Errorf("event %d is not canonical JSON:\n got %s\nwant %s", i, ev, re)
		}
		if c.Object != "chat.completion.chunk" || c.ID != events0ID(t, events) {
			t.Errorf("event %d: object %q id %q", i, c.Object, c.ID)
		}
		switch {
		case i == 0:
			if c.Choices[0].Delta.Role != "assistant" {
				t.Errorf("first chunk has no assistant role: %s", ev)
			}
		case i == len(events)-1:
			if len(c.Choices) != 0 || c.Usage == nil || c.Usage.CompletionTokens != 9 || c.Usage.PromptTokens != want.Usage.PromptTokens {
				t.Errorf("usage chunk: %s", ev)
			}
		default:
			if c.Usage != nil {
				t.Errorf("token chunk carries usage: %s", ev)
			}
			text.WriteString(*c.Choices[0].Delta.Content)
			fr := c.Choices[0].FinishReason
			if last := i == len(events)-2; last != (fr != nil) || (last && *fr != "length") {
				t.Errorf("event %d finish_reason %v", i, fr)
			}
		}
	}
	if text.String() != want.Choices[0].Message.Content.Text {
		t.Errorf("streamed text %q differs from non-streamed %q", text.String(), want.Choices[0].Message.Content.Text)
	}
}

func events0ID(t *testing.T, events [][]byte) string {
	var c struct{ ID string }
	if err := json.Unmarshal(events[0], &c); err != nil {
		t.Fatal(err)
	}
	return c.ID
}

func TestServer_CompletionStreamWithoutUsage(t *testing.T) {
	f := startFleet(t, func(c *Config) { c.TimeScale = 20 })
	resp, err := http.Post("http://"+f.Addrs()[0]+"/v1/completions", "application/json",
		strings.NewReader(`{"model":"m","prompt":"Once upon a time","max_tokens":5,"ignore_eos":true,"stream":true}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	events, done := readStream(t, resp.Body)
	if !done || len(events) != 5 {
		t.Fatalf("done=%v events=%d, want 5 token events and [DONE]", done, len(events))
	}
	for _, ev := range events {
		var c openai.Completion
		if err := json.Unmarshal(ev, &c); err != nil || c.Object != "text_completion" || len(c.Choices) != 1 || c.Usage != nil {
			t.Fatalf("bad event %s (%v)", ev, err)
		}
	}
}

func TestServer_CompletionAcceptsTokenIDs(t *testing.T) {
	f := startFleet(t, func(c *Config) { c.TimeScale = 20 })
	_, body := post(t, f.Addrs()[0], "/v1/completions", `{"model":"m","prompt":[1,2,3,4,5,6],"max_tokens":2,"ignore_eos":true}`)
	var c openai.Completion
	if err := json.Unmarshal(body, &c); err != nil || c.Usage == nil || c.Usage.PromptTokens != 6 || c.Usage.CompletionTokens != 2 {
		t.Fatalf("response %s (%v)", body, err)
	}
}

func TestServer_OutputIsDeterministicUnderSeed(t *testing.T) {
	text := func(seed int64) string {
		f := startFleet(t, func(c *Config) { c.TimeScale = 50; c.Seed = seed })
		_, body := post(t, f.Addrs()[0], "/v1/chat/completions", chatBody("Same question.", ""))
		var c openai.ChatCompletion
		if err := json.Unmarshal(body, &c); err != nil {
			t.Fatal(err)
		}
		return c.Choices[0].Message.Content.Text
	}
	a, b, other := text(1), text(1), text(2)
	if a != b {
		t.Errorf("same seed, different output:\n%q\n%q", a, b)
	}
	if a == other {
		t.Errorf("different seeds gave the same output %q", a)
	}
}

func TestServer_Errors(t *testing.T) {
	f := startFleet(t, func(c *Config) { c.MaxModelLen = 64; c.TimeScale = 20 })
	long := strings.Repeat("word ", 100)
	cases := []struct {
		name, path, body string
		status           int
		errType          string
	}{
		{"malformed JSON", "/v1/chat/completions", `{"model":`, 400, openai.ErrTypeInvalidRequest},
		{"wrong field type", "/v1/chat/completions", `{"model":"m","messages":"hi"}`, 400, openai.ErrTypeInvalidRequest},
		{"no messages", "/v1/chat/completions", `{"model":"m","messages":[]}`, 400, openai.ErrTypeInvalidRequest},
		{"unknown model", "/v1/chat/completions", `{"model":"nope","messages":[{"role":"user","content":"hi"}]}`, 404, openai.ErrTypeNotFound},
		{"prompt over max-model-len", "/v1/completions", `{"model":"m","prompt":"` + long + `"}`, 400, openai.ErrTypeInvalidRequest},
		{"prompt plus max_tokens over max-model-len", "/v1/completions", `{"model":"m","prompt":"hi","max_tokens":100}`, 400, openai.ErrTypeInvalidRequest},
		{"negative max_tokens", "/v1/completions", `{"model":"m","prompt":"hi","max_tokens":-1}`, 400, openai.ErrTypeInvalidRequest},
		{"empty prompt", "/v1/completions", `{"model":"m","prompt":""}`, 400, openai.ErrTypeInvalidRequest},
		{"unload unknown adapter", "/v1/unload_lora_adapter", `{"lora_name":"ghost"}`, 404, openai.ErrTypeNotFound},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := post(t, f.Addrs()[0], tc.path, tc.body)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, body)
			}
			var e openai.ErrorResponse
			if err := json.Unmarshal(body, &e); err != nil || e.Error.Type != tc.errType || e.Error.Message == "" || e.Error.HTTPStatus != tc.status {
				t.Fatalf("error body %s (%v)", body, err)
			}
		})
	}
	// The server keeps serving after bad input.
	if resp, body := post(t, f.Addrs()[0], "/v1/completions", `{"model":"m","prompt":"hi","max_tokens":2}`); resp.StatusCode != 200 {
		t.Fatalf("after errors: %d %s", resp.StatusCode, body)
	}
}

func TestServer_LoRAAdapters(t *testing.T) {
	f := startFleet(t, func(c *Config) { c.LoRAModules = []string{"sql-lora=/adapters/sql"}; c.TimeScale = 20 })
	addr := f.Addrs()[0]
	models := func() map[string]*string {
		resp, err := http.Get("http://" + addr + "/v1/models")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var l openai.ModelList
		if err := json.NewDecoder(resp.Body).Decode(&l); err != nil {
			t.Fatal(err)
		}
		out := map[string]*string{}
		for _, m := range l.Data {
			out[m.ID] = m.Parent
		}
		return out
	}
	m := models()
	if p, ok := m["m"]; !ok || p != nil {
		t.Fatalf("base model missing or has a parent: %v", m)
	}
	if p := m["sql-lora"]; p == nil || *p != "m" {
		t.Fatalf("adapter's parent: %v", m)
	}
	if resp, body := post(t, addr, "/v1/load_lora_adapter", `{"lora_name":"chat-lora","lora_path":"/x"}`); resp.StatusCode != 200 {
		t.Fatalf("load: %d %s", resp.StatusCode, body)
	}
	if resp, _ := post(t, addr, "/v1/load_lora_adapter", `{"lora_name":"chat-lora","lora_path":"/x"}`); resp.StatusCode != 400 {
		t.Fatalf("loading twice: %d, want 400", resp.StatusCode)
	}
	if p := models()["chat-lora"]; p == nil || *p != "m" {
		t.Fatal("loaded adapter not listed")
	}
	resp, body := post(t, addr, "/v1/chat/completions", `{"model":"chat-lora","messages":[{"role":"user","content":"hi"}],"max_tokens":2}`)
	var c openai.ChatCompletion
	if resp.StatusCode != 200 || json.Unmarshal(body, &c) != nil || c.Model != "chat-lora" {
		t.Fatalf("adapter request: %d %s", resp.StatusCode, body)
	}
	if resp, body := post(t, addr, "/v1/unload_lora_adapter", `{"lora_name":"chat-lora"}`); resp.StatusCode != 200 {
		t.Fatalf("unload: %d %s", resp.StatusCode, body)
	}
	if resp, _ := post(t, addr, "/v1/chat/completions", `{"model":"chat-lora","messages":[{"role":"user","content":"hi"}]}`); resp.StatusCode != 404 {
		t.Fatalf("unloaded adapter answered %d, want 404", resp.StatusCode)
	}
}

func TestServer_StartupDelayAndFailureInjection(t *testing.T) {
	f := startFleet(t, func(c *Config) {
		c.StartupDelay = Duration{300 * time.Millisecond}
		c.FailureRate = 1
		c.FailureStatus = 503
	})
	addr := f.Addrs()[0]
	health := func() int {
		resp, err := http.Get("http://" + addr + "/health")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := health(); got != 503 {
		t.Fatalf("health during startup: %d, want 503", got)
	}
	deadline := time.Now().Add(5 * time.Second)
	for health() != 200 {
		if time.Now().After(deadline) {
			t.Fatal("health never became 200")
		}
		time.Sleep(20 * time.Millisecond)
	}
	resp, body := post(t, addr, "/v1/completions", `{"model":"m","prompt":"hi"}`)
	if resp.StatusCode != 503 || !strings.Contains(string(body), "Simulated failure") {
		t.Fatalf("injected failure: %d %s", resp.StatusCode, body)
	}
}

func TestServer_ClientDisconnectFreesResources(t *testing.T) {
	f := startFleet(t, nil) // real time: the request would take minutes
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "POST", "http://"+f.Addrs()[0]+"/v1/chat/completions",
		strings.NewReader(chatBody(strings.Repeat("long context ", 2000), `,"max_tokens":20000,"ignore_eos":true,"stream":true`)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	sr := openai.NewSSEReader(resp.Body)
	for range 3 { // role chunk and two tokens: the sequence is running
		if _, err := sr.Next(); err != nil {
			t.Fatal(err)
		}
	}
	eng := f.Servers()[0].Engine()
	if st := eng.State(); st.Running != 1 || st.KVCacheUsage == 0 {
		t.Fatalf("before disconnect: %+v", st)
	}
	cancel()
	resp.Body.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		st := eng.State()
		if st.Running == 0 && st.Waiting == 0 && st.KVCacheUsage == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("resources still held after disconnect: %+v", st)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// scrape reads a replica's /metrics with the Prometheus text parser.
func scrape(t testing.TB, addr string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return fams
}

func gaugeValue(t testing.TB, fams map[string]*dto.MetricFamily, name string) float64 {
	t.Helper()
	f, ok := fams[name]
	if !ok || len(f.Metric) == 0 {
		t.Fatalf("metric %s missing", name)
	}
	m := f.Metric[0]
	switch {
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Counter != nil:
		return m.Counter.GetValue()
	}
	t.Fatalf("metric %s is neither gauge nor counter", name)
	return 0
}

func TestServer_MetricsShowQueueingAtMaxNumSeqs(t *testing.T) {
	f := startFleet(t, func(c *Config) { c.MaxNumSeqs = 4 })
	addr := f.Addrs()[0]
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i := range 80 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequestWithContext(ctx, "POST", "http://"+addr+"/v1/completions",
				strings.NewReader(fmt.Sprintf(`{"model":"m","prompt":"request %d","max_tokens":2000,"ignore_eos":true}`, i)))
			if resp, err := http.DefaultClient.Do(req); err == nil {
				resp.Body.Close()
			}
		}()
	}
	defer func() { cancel(); wg.Wait() }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		fams := scrape(t, addr)
		waiting := gaugeValue(t, fams, "vllm:num_requests_waiting")
		running := gaugeValue(t, fams, "vllm:num_requests_running")
		if running == 4 && waiting == 76 {
			if kv := gaugeValue(t, fams, "vllm:kv_cache_usage_perc"); kv <= 0 || kv > 1 {
				t.Errorf("kv usage %v", kv)
			}
			return
		}
		if running > 4 {
			t.Fatalf("running %v exceeds max-num-seqs 4", running)
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting %v running %v, want 76 and 4", waiting, running)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestServer_MetricsNamesPerEngine(t *testing.T) {
	for _, engine := range []string{EngineVLLM, EngineSGLang} {
		t.Run(engine, func(t *testing.T) {
			f := startFleet(t, func(c *Config) { c.Engine = engine; c.TimeScale = 20; c.LoRAModules = []string{"a"} })
			addr := f.Addrs()[0]
			post(t, addr, "/v1/chat/completions", `{"model":"a","messages":[{"role":"user","content":"hi"}],"max_tokens":3,"ignore_eos":true}`)
			fams := scrape(t, addr)
			n := namesFor(engine)
			for _, name := range []string{n.waiting, n.running, n.kvUsage, n.cacheConfig, n.promptTokens, n.generationTokens, n.prefixQueries, n.prefixHits} {
				if _, ok := fams[name]; !ok {
					t.Errorf("%s missing", name)
				}
			}
			for _, name := range []string{n.ttft, n.e2e, n.queueTime, n.itl, n.tpot, n.promptHist, n.generationHist} {
				f, ok := fams[name]
				if !ok || f.Metric[0].Histogram == nil {
					t.Errorf("histogram %s missing", name)
					continue
				}
				if name != n.itl && name != n.tpot && f.Metric[0].Histogram.GetSampleCount() != 1 {
					t.Errorf("%s count %d, want 1", name, f.Metric[0].Histogram.GetSampleCount())
				}
			}
			if a, b := fams[n.itl].Metric[0].Histogram.GetSampleCount(), fams[n.tpot].Metric[0].Histogram.GetSampleCount(); a != 2 || b != a {
				t.Errorf("inter-token latency count %d, time per output token count %d, want 2 each", a, b)
			}
			if got := fams[n.generationHist].Metric[0].Histogram.GetSampleSum(); got != 3 {
				t.Errorf("%s sum %v, want 3", n.generationHist, got)
			}
			if got := gaugeValue(t, fams, n.generationTokens); got != 3 {
				t.Errorf("generation tokens %v, want 3", got)
			}
			cc := fams[n.cacheConfig].Metric[0]
			labels := map[string]string{}
			for _, l := range cc.Label {
				labels[l.GetName()] = l.GetValue()
			}
			if labels[n.cacheBlockLabel] != "16" || labels[n.cacheNumBlocksLabel] != "26000" {
				t.Errorf("cache config labels %v", labels)
			}
			if engine == EngineVLLM {
				info := fams["vllm:lora_requests_info"]
				if info == nil {
					t.Fatal("vllm:lora_requests_info missing")
				}
				m := info.Metric[len(info.Metric)-1]
				if m.Gauge.GetValue() < float64(time.Now().Add(-time.Minute).Unix()) {
					t.Errorf("lora_requests_info value %v is not a recent timestamp", m.Gauge.GetValue())
				}
			} else if _, ok := fams["vllm:lora_requests_info"]; ok {
				t.Error("sglang replica exports vllm metrics")
			}
		})
	}
}

func TestServer_LoRAInfoReportsRunningAndWaitingAdapters(t *testing.T) {
	f := startFleet(t, func(c *Config) { c.LoRAModules = []string{"a", "b"}; c.MaxLoRAs = 1 })
	addr := f.Addrs()[0]
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, m := range []string{"a", "b"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequestWithContext(ctx, "POST", "http://"+addr+"/v1/completions",
				strings.NewReader(`{"model":"`+m+`","prompt":"x","max_tokens":5000,"ignore_eos":true}`))
			if resp, err := http.DefaultClient.Do(req); err == nil {
				resp.Body.Close()
			}
		}()
		time.Sleep(50 * time.Millisecond) // a arrives before b
	}
	defer func() { cancel(); wg.Wait() }()
	deadline := time.Now().Add(5 * time.Second)
	for {
		info := scrape(t, addr)["vllm:lora_requests_info"]
		var newest *dto.Metric
		for _, m := range info.GetMetric() {
			if newest == nil || m.Gauge.GetValue() > newest.Gauge.GetValue() {
				newest = m
			}
		}
		labels := map[string]string{}
		for _, l := range newest.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		if labels["running_lora_adapters"] == "a" && labels["waiting_lora_adapters"] == "b" && labels["max_lora"] == "1" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("newest lora info %v", labels)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestServer_RepeatedLongPromptHitsPrefixCache(t *testing.T) {
	f := startFleet(t, nil) // real time, default H100 calibration
	addr := f.Addrs()[0]
	prompt := make([]string, 2000)
	for i := range prompt {
		prompt[i] = strconv.Itoa(1000 + i) // "1000" .. "2999": one token each (with the space, after the first)
	}
	promptJSON, _ := json.Marshal(strings.Join(prompt, " "))
	if n := openai.CountTokens(strings.Join(prompt, " ")); n != 2000 {
		t.Fatalf("prompt has %d tokens, want 2000", n)
	}
	body := `{"model":"m","prompt":` + string(promptJSON) + `,"max_tokens":4,"ignore_eos":true,"stream":true,"stream_options":{"include_usage":true}}`
	measure := func() (time.Duration, openai.Usage) {
		start := time.Now()
		resp, err := http.Post("http://"+addr+"/v1/completions", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		sr := openai.NewSSEReader(resp.Body)
		if _, err := sr.Next(); err != nil {
			t.Fatal(err)
		}
		ttft := time.Since(start)
		var usage openai.Usage
		for {
			data, err := sr.Next()
			if err != nil {
				t.Fatal(err)
			}
			if string(data) == openai.SSEDone {
				return ttft, usage
			}
			var c openai.Completion
			if err := json.Unmarshal(data, &c); err != nil {
				t.Fatal(err)
			}
			if c.Usage != nil {
				usage = *c.Usage
			}
		}
	}
	ttft1, u1 := measure()
	ttft2, u2 := measure()
	t.Logf("TTFT %v then %v; cached %d then %d", ttft1, ttft2, u1.PromptTokensDetails.CachedTokens, u2.PromptTokensDetails.CachedTokens)
	if u2.PromptTokensDetails.CachedTokens < 1984 {
		t.Errorf("second request cached %d tokens, want ≥ 1984", u2.PromptTokensDetails.CachedTokens)
	}
	if ttft2*3 >= ttft1 {
		t.Errorf("second TTFT %v is not under a third of the first %v", ttft2, ttft1)
	}
	fams := scrape(t, addr)
	if hits := gaugeValue(t, fams, "vllm:prefix_cache_hits_total"); hits < 1984 {
		t.Errorf("prefix_cache_hits_total %v, want ≥ 1984", hits)
	}
}

func TestFleet_ReplicasOnConsecutivePorts(t *testing.T) {
	// Find three consecutive free ports, then serve on them.
	var f *Fleet
	for attempt := 0; f == nil; attempt++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		base := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		if base+2 > 65535 {
			continue
		}
		cfg := DefaultConfig()
		cfg.Port, cfg.Replicas, cfg.Model, cfg.TimeScale = base, 3, "m", 20
		f, err = StartFleet(cfg, nil)
		if err != nil && attempt > 20 {
			t.Fatal(err)
		}
	}
	defer f.Close(context.Background())
	base := f.Addrs()[0]
	_, port, _ := net.SplitHostPort(base)
	p, _ := strconv.Atoi(port)
	for i, addr := range f.Addrs() {
		if want := "127.0.0.1:" + strconv.Itoa(p+i); addr != want {
			t.Fatalf("replica %d at %s, want %s", i, addr, want)
		}
		post(t, addr, "/v1/completions", `{"model":"m","prompt":"hi","max_tokens":1}`)
	}
	// Independent engines: each served exactly its own request.
	for i, s := range f.Servers() {
		if got := s.Engine().State().Finished["length"] + s.Engine().State().Finished["stop"]; got != 1 {
			t.Errorf("replica %d finished %d requests, want 1", i, got)
		}
	}
}

func TestFleet_IdleReplicasCostNoCPU(t *testing.T) {
	f := startFleet(t, func(c *Config) { c.Replicas = 16 })
	_ = f
	before := cpuTimeOf(t)
	time.Sleep(500 * time.Millisecond)
	used := cpuTimeOf(t) - before
	// A spinning engine loop would burn a whole core (500ms here).
	if used > 100*time.Millisecond {
		t.Errorf("16 idle replicas used %v of CPU in 500ms", used)
	}
}

// cpuTimeOf is the CPU time (user + system) this process has used.
func cpuTimeOf(t testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestServer_RemembersTraceparents: the replica keeps the traceparent of
// each request (bounded, oldest dropped) and answers them on
// /debug/traceparents, so a test can see that a gateway propagated its
// trace.
func TestServer_RemembersTraceparents(t *testing.T) {
	cfg := DefaultConfig()
	s, err := NewServer(cfg, 0, newVocab())
	if err != nil {
		t.Fatal(err)
	}
	for i := range maxTraceparents + 2 {
		r := httptest.NewRequest(http.MethodPost, "/tokenize", strings.NewReader(`{"prompt":"hi"}`))
		r.Header.Set("Traceparent", fmt.Sprintf("00-%032x-%016x-01", i+1, i+1))
		s.ServeHTTP(httptest.NewRecorder(), r)
	}
	s.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodPost, "/tokenize", strings.NewReader(`{"prompt":"hi"}`))) // none: nothing kept
	w := httptest.NewRecorder()
	s.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/debug/traceparents", nil))
	var got []string
	if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if len(got) != maxTraceparents {
		t.Fatalf("%d traceparents kept, want %d", len(got), maxTraceparents)
	}
	if want := fmt.Sprintf("00-%032x-%016x-01", 3, 3); got[0] != want {
		t.Errorf("oldest kept %s, want %s", got[0], want)
	}
	if want := fmt.Sprintf("00-%032x-%016x-01", maxTraceparents+2, maxTraceparents+2); got[len(got)-1] != want {
		t.Errorf("newest %s, want %s", got[len(got)-1], want)
	}
}
