package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/igw-dev/igw/pkg/openai"
)

// fakeServer streams chat chunks like vLLM: a role chunk, tokens words with
// gap between them, a usage chunk and [DONE]. It records the last request.
type fakeServer struct {
	tokens   int
	gap      time.Duration
	cached   int
	endpoint string
	noDone   bool
	status   int

	mu      sync.Mutex
	body    map[string]any
	headers http.Header
}

func (f *fakeServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	f.body = map[string]any{}
	_ = json.Unmarshal(b, &f.body)
	f.headers = r.Header.Clone()
	f.mu.Unlock()
	if f.endpoint != "" {
		w.Header().Set(HeaderEndpointServed, f.endpoint)
	}
	if f.status != 0 {
		openai.WriteError(w, openai.NewError(f.status, openai.ErrTypeUnavailable, "overloaded"))
		return
	}
	sse := openai.NewSSEWriter(w)
	_ = sse.Event([]byte(`{"id":"x","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}`))
	for i := range f.tokens {
		if f.gap > 0 {
			select {
			case <-time.After(f.gap):
			case <-r.Context().Done():
				return
			}
		}
		_ = sse.Event(fmt.Appendf(nil, `{"id":"x","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":" w%d"},"finish_reason":null}]}`, i))
	}
	_ = sse.Event(fmt.Appendf(nil, `{"id":"x","object":"chat.completion.chunk","choices":[],"usage":{"prompt_tokens":100,"completion_tokens":%d,"total_tokens":%d,"prompt_tokens_details":{"cached_tokens":%d}}}`, f.tokens, 100+f.tokens, f.cached))
	if !f.noDone {
		_ = sse.Done()
	}
}

func newTestClient(t *testing.T, url string) *Client {
	t.Helper()
	c, err := NewClient(url, ClientOptions{Headers: http.Header{"Authorization": {"Bearer k"}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func chatRequest() *Request {
	return &Request{Model: "m", Messages: []openai.ChatMessage{message("user", "hi")}, MaxTokens: 5,
		Objective: "critical", FairnessID: "tenant-a", Group: 3}
}

func TestClient_MeasuresStreamAndUsage(t *testing.T) {
	f := &fakeServer{tokens: 5, gap: 20 * time.Millisecond, cached: 64, endpoint: "10.0.0.7:8000"}
	srv := httptest.NewServer(f)
	defer srv.Close()
	c := newTestClient(t, srv.URL)

	epoch := time.Now()
	res, answer := c.Send(context.Background(), chatRequest(), epoch)
	if !res.OK() {
		t.Fatalf("request failed: %+v", res)
	}
	if answer != "" {
		t.Errorf("answer %q collected without CollectAnswer", answer)
	}
	if res.Status != 200 || res.Endpoint != "10.0.0.7:8000" || res.Group != 3 || res.Objective != "critical" {
		t.Errorf("status/endpoint/labels wrong: %+v", res)
	}
	if res.InputTokens != 100 || res.OutputTokens != 5 || res.CachedTokens != 64 || !res.UsageReported {
		t.Errorf("tokens = in %d out %d cached %d usage %v, want 100/5/64/true", res.InputTokens, res.OutputTokens, res.CachedTokens, res.UsageReported)
	}
	// The role-only chunk is not the first token: TTFT includes one gap.
	if res.TTFT < 15*time.Millisecond || res.TTFT > res.E2E {
		t.Errorf("TTFT %v, want ≥ one 20ms gap and ≤ e2e %v", res.TTFT, res.E2E)
	}
	if len(res.ITL) != 4 {
		t.Fatalf("%d ITLs, want 4", len(res.ITL))
	}
	for _, d := range res.ITL {
		if d < 15*time.Millisecond {
			t.Errorf("ITL %v shorter than the 20ms gap", d)
		}
	}
	if want := (res.E2E - res.TTFT) / 4; res.TPOT != want {
		t.Errorf("TPOT %v, want (e2e−ttft)/4 = %v", res.TPOT, want)
	}
	if want := res.E2E / 5; res.NTPOT != want {
		t.Errorf("NTPOT %v, want e2e/5 = %v", res.NTPOT, want)
	}
	if res.Start < 0 || res.End-res.Start != res.E2E {
		t.Errorf("offsets start %v end %v e2e %v inconsistent", res.Start, res.End, res.E2E)
	}

	// The wire: streaming with usage, exact output length, headers.
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.body["stream"] != true || f.body["max_tokens"] != 5.0 || f.body["ignore_eos"] != true || f.body["model"] != "m" {
		t.Errorf("body = %v", f.body)
	}
	if so, _ := f.body["stream_options"].(map[string]any); so["include_usage"] != true {
		t.Errorf("stream_options = %v, want include_usage", f.body["stream_options"])
	}
	for k, v := range map[string]string{HeaderObjective: "critical", HeaderFairnessID: "tenant-a", "Authorization": "Bearer k", "Accept-Encoding": ""} {
		if got := f.headers.Get(k); got != v {
			t.Errorf("header %s = %q, want %q", k, got, v)
		}
	}
}

func TestClient_CollectsAnswer(t *testing.T) {
	srv := httptest.NewServer(&fakeServer{tokens: 3})
	defer srv.Close()
	req := chatRequest()
	req.CollectAnswer = true
	_, answer := newTestClient(t, srv.URL).Send(context.Background(), req, time.Now())
	if answer != " w0 w1 w2" {
		t.Fatalf("answer = %q", answer)
	}
}

func TestClient_CompletionsAPI(t *testing.T) {
	var path string
	var body map[string]any
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		path = r.URL.Path
		_ = json.NewDecoder(r.Body).Decode(&body)
		sse := openai.NewSSEWriter(w)
		_ = sse.Event([]byte(`{"object":"text_completion","choices":[{"index":0,"text":" a","finish_reason":null}]}`))
		_ = sse.Event([]byte(`{"object":"text_completion","choices":[{"index":0,"text":" b","finish_reason":"length"}]}`))
		_ = sse.Done()
	}))
	defer srv.Close()
	res, _ := newTestClient(t, srv.URL+"/").Send(context.Background(), &Request{Prompt: "hello", MaxTokens: 2}, time.Now())
	if path != "/v1/completions" || body["prompt"] != "hello" || body["ignore_eos"] != true {
		t.Fatalf("path %q body %v", path, body)
	}
	// No usage chunk: output tokens fall back to content events.
	if !res.OK() || res.OutputTokens != 2 || res.UsageReported || len(res.ITL) != 1 {
		t.Fatalf("result %+v", res)
	}
}

func TestClient_ErrorKinds(t *testing.T) {
	overloaded := httptest.NewServer(&fakeServer{status: 503})
	defer overloaded.Close()
	cut := httptest.NewServer(&fakeServer{tokens: 2, noDone: true})
	defer cut.Close()
	errEvent := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		sse := openai.NewSSEWriter(w)
		_ = sse.Event([]byte(`{"error":{"message":"engine died","type":"InternalServerError","code":500}}`))
		_ = sse.Done()
	}))
	defer errEvent.Close()
	slow := httptest.NewServer(&fakeServer{tokens: 100, gap: 50 * time.Millisecond})
	defer slow.Close()
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	refused := "http://" + ln.Addr().String()
	ln.Close()

	timeoutCtx := func() (context.Context, context.CancelFunc) {
		return context.WithTimeoutCause(context.Background(), 100*time.Millisecond, errRequestTimeout)
	}
	cancelCtx := func() (context.Context, context.CancelFunc) {
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(100*time.Millisecond, cancel)
		return ctx, cancel
	}
	for _, tc := range []struct {
		name      string
		url       string
		ctx       func() (context.Context, context.CancelFunc)
		kind      ErrorKind
		status    int
		transport string
		msg       string
	}{
		{"503", overloaded.URL, nil, ErrHTTP, 503, "", "overloaded"},
		{"no [DONE]", cut.URL, nil, ErrStream, 200, "", "stream ended without [DONE]"},
		{"error event", errEvent.URL, nil, ErrStream, 200, "", "error event: engine died"},
		{"refused", refused, nil, ErrTransport, 0, "refused", ""},
		{"timeout", slow.URL, timeoutCtx, ErrTimeout, 200, "", ""},
		{"canceled", slow.URL, cancelCtx, ErrCanceled, 200, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.Background(), context.CancelFunc(func() {})
			if tc.ctx != nil {
				ctx, cancel = tc.ctx()
			}
			defer cancel()
			res, _ := newTestClient(t, tc.url).Send(ctx, chatRequest(), time.Now())
			if res.ErrorKind != tc.kind || res.Status != tc.status || res.TransportError != tc.transport {
				t.Fatalf("kind %q status %d transport %q (%s), want %q %d %q", res.ErrorKind, res.Status, res.TransportError, res.Error, tc.kind, tc.status, tc.transport)
			}
			if tc.msg != "" && !strings.Contains(res.Error, tc.msg) {
				t.Fatalf("error %q, want it to contain %q", res.Error, tc.msg)
			}
		})
	}
}

func TestNewClient_RejectsBadTarget(t *testing.T) {
	for _, u := range []string{"localhost:8080", "ftp://x", "http://", "://"} {
		if _, err := NewClient(u, ClientOptions{}); err == nil {
			t.Errorf("NewClient(%q) accepted", u)
		}
	}
}

func TestHasNonEmptyString_NotFooledByText(t *testing.T) {
	for _, tc := range []struct {
		data string
		want bool
	}{
		{`{"choices":[{"delta":{"content":" a"}}]}`, true},
		{`{"choices":[{"delta":{"content": "a"}}]}`, true},
		{`{"choices":[{"delta":{"role":"assistant","content":""}}]}`, false},
		{`{"choices":[{"delta":{"content":null}}]}`, false},
		{`{"choices":[{"delta":{"reasoning_content":"x"}}]}`, false},
		{`{"choices":[],"usage":{"prompt_tokens":1}}`, false},
		{`{"choices":[{"delta":{"content":"","x":"\"content\":\"y\""}}]}`, false},
	} {
		if got := hasNonEmptyString([]byte(tc.data), keyContent); got != tc.want {
			t.Errorf("%s: got %v, want %v", tc.data, got, tc.want)
		}
	}
}
