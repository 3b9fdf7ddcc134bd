package quota

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/igw-dev/igw/pkg/openai"
)

// sseStream is a vLLM-style chat stream of n one-token deltas (" w0",
// " w1", ...), optionally followed by a usage chunk, then [DONE].
func sseStream(n int, usage bool) string {
	var b strings.Builder
	b.WriteString(`data: {"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}` + "\n\n")
	for i := range n {
		fmt.Fprintf(&b, `data: {"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":" w%d"},"finish_reason":null}]}`+"\n\n", i)
	}
	if usage {
		fmt.Fprintf(&b, `data: {"id":"c","object":"chat.completion.chunk","choices":[],"usage":{"prompt_tokens":7,"completion_tokens":%d,"total_tokens":%d}}`+"\n\n", n, n+7)
	}
	b.WriteString("data: [DONE]\n\n")
	return b.String()
}

type closeRecorder struct {
	io.Reader
	closed bool
}

func (c *closeRecorder) Close() error { c.closed = true; return nil }

// readEvents reads an SSE body as a client would.
func readEvents(t *testing.T, body io.Reader) []string {
	t.Helper()
	var out []string
	r := openai.NewSSEReader(body)
	for {
		ev, err := r.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("reading events: %v", err)
		}
		out = append(out, string(ev))
	}
}

func streamPolicy(maxOutput int64, step int64, sp StreamPolicy) *Policy {
	return &Policy{Name: "p", DefaultOutputTokens: step, Stream: sp, Limits: []*Limit{
		{Name: "p/1m/output_tokens", Scope: PerTenant, Metric: OutputTokens, Window: Minute, Max: maxOutput},
	}}
}

func TestStreamBody_CutsAtTheBudgetWithAnErrorEventThenDone(t *testing.T) {
	for _, chunking := range []struct {
		name string
		wrap func(io.Reader) io.Reader
	}{{"whole", func(r io.Reader) io.Reader { return r }}, {"one byte at a time", iotest.OneByteReader}, {"halves", iotest.HalfReader}} {
		t.Run(chunking.name, func(t *testing.T) {
			l := newLimiter(t, NewMemoryStore(), newFakeClock())
			var d Decision
			ctx := context.Background()
			// 25 output tokens in the window; 10 reserved at first, then
			// top-ups of 10, then 5.
			res, _ := l.Admit(ctx, Identity{Tenant: "a"}, []*Policy{streamPolicy(25, 10, StreamCut)}, Estimate{InputTokens: 3}, &d)
			if res == nil {
				t.Fatal("refused")
			}
			src := &closeRecorder{Reader: chunking.wrap(strings.NewReader(sseStream(40, true)))}
			body := NewStreamBody(ctx, src, res, nil)
			evs := readEvents(t, body)
			// role chunk + 25 one-token deltas, the error, [DONE].
			if len(evs) != 28 {
				t.Fatalf("%d events:\n%s", len(evs), strings.Join(evs, "\n"))
			}
			if !strings.Contains(evs[25], `" w24"`) {
				t.Errorf("last forwarded delta %s, want w24", evs[25])
			}
			var e openai.ErrorResponse
			if err := json.Unmarshal([]byte(evs[26]), &e); err != nil || e.Error.Type != openai.ErrTypeRateLimit || e.Error.Code != openai.CodeRateLimitExceeded {
				t.Errorf("error event %s (%v)", evs[26], err)
			}
			if evs[27] != openai.SSEDone {
				t.Errorf("last event %q, want [DONE]", evs[27])
			}
			if !body.Cut() || !src.closed || body.OutputTokens() != 25 {
				t.Errorf("cut %v, upstream closed %v, output %d", body.Cut(), src.closed, body.OutputTokens())
			}
			if err := res.Settle(ctx, 3, body.OutputTokens()); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestStreamBody_FinishPolicyPassesEverythingAndCounts(t *testing.T) {
	l := newLimiter(t, NewMemoryStore(), newFakeClock())
	var d Decision
	ctx := context.Background()
	res, _ := l.Admit(ctx, Identity{Tenant: "a"}, []*Policy{streamPolicy(25, 10, StreamFinish)}, Estimate{}, &d)
	in := sseStream(40, false)
	body := NewStreamBody(ctx, &closeRecorder{Reader: iotest.HalfReader(strings.NewReader(in))}, res, nil)
	out, err := io.ReadAll(body)
	if err != nil || string(out) != in {
		t.Fatalf("the stream was changed (err %v):\n%s", err, out)
	}
	if body.Cut() || body.OutputTokens() != 40 {
		t.Errorf("cut %v, counted %d, want 40", body.Cut(), body.OutputTokens())
	}
	res.Settle(ctx, 0, body.OutputTokens())
}

// A stream within its reservation is byte-for-byte unchanged, however it is
// chunked, and usage sent by the server wins over counting.
func TestStreamBody_WithinBudgetIsUnchanged(t *testing.T) {
	l := newLimiter(t, NewMemoryStore(), newFakeClock())
	var d Decision
	ctx := context.Background()
	res, _ := l.Admit(ctx, Identity{Tenant: "a"}, []*Policy{streamPolicy(1000, 100, StreamCut)}, Estimate{MaxOutputTokens: 50}, &d)
	in := strings.ReplaceAll(sseStream(12, true), "\n\n", "\r\n\r\n")
	body := NewStreamBody(ctx, &closeRecorder{Reader: iotest.OneByteReader(strings.NewReader(in))}, res, nil)
	var out bytes.Buffer
	if _, err := io.CopyBuffer(&out, body, make([]byte, 7)); err != nil {
		t.Fatal(err)
	}
	if out.String() != in {
		t.Fatalf("changed:\n%q", out.String())
	}
	if body.OutputTokens() != 12 {
		t.Errorf("counted %d, want 12", body.OutputTokens())
	}
	res.Settle(ctx, 7, 12)
}

func TestStreamBody_CountsCompletionsAndResponsesDeltas(t *testing.T) {
	in := `data: {"choices":[{"text":" hello world"}]}` + "\n\n" +
		`data: {"type":"response.output_text.delta","delta":" more text"}` + "\n\n" +
		`data: {"choices":[{"delta":{"reasoning_content":" think","tool_calls":[{"function":{"arguments":"{\"a\":1}"}}]}}]}` + "\n\n" +
		"data: [DONE]\n\n"
	body := NewStreamBody(context.Background(), &closeRecorder{Reader: strings.NewReader(in)}, nil, nil)
	if _, err := io.ReadAll(body); err != nil {
		t.Fatal(err)
	}
	want := int64(openai.CountTokens(" hello world") + openai.CountTokens(" more text") +
		openai.CountTokens(" think") + openai.CountTokens(`{"a":1}`))
	if body.OutputTokens() != want {
		t.Errorf("counted %d, want %d", body.OutputTokens(), want)
	}
}

// chunkedReader returns data in pieces whose sizes cycle through sizes.
type chunkedReader struct {
	data  []byte
	sizes []byte
	i     int
}

func (r *chunkedReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	n := 1
	if len(r.sizes) > 0 {
		n = int(r.sizes[r.i%len(r.sizes)])%64 + 1
		r.i++
	}
	n = min(n, len(p), len(r.data))
	copy(p, r.data[:n])
	r.data = r.data[n:]
	return n, nil
}

// Whatever the stream and its chunking: under Finish the client gets the
// stream byte for byte; under Cut it gets a prefix of it that ends on an
// event boundary, followed (if cut) by exactly the error event and [DONE].
func FuzzStreamBody(f *testing.F) {
	f.Add([]byte(sseStream(30, true)), []byte{3, 17, 1, 60}, uint8(12))
	f.Add([]byte(strings.ReplaceAll(sseStream(5, false), "\n\n", "\r\n\r\n")), []byte{0}, uint8(2))
	f.Add([]byte("data: {\"choices\":[{\"text\":\"abc def\"}]}\n\ndata: partial"), []byte{7}, uint8(1))
	f.Add([]byte(": comment\n\nevent: x\ndata: {\"choices\":[{\"delta\":{\"content\":\" a\"}}]}\n\n"), []byte{5, 2}, uint8(0))
	f.Fuzz(func(t *testing.T, stream, sizes []byte, budget uint8) {
		for _, sp := range []StreamPolicy{StreamFinish, StreamCut} {
			l := newLimiter(t, NewMemoryStore(), newFakeClock())
			var d Decision
			ctx := context.Background()
			res, _ := l.Admit(ctx, Identity{}, []*Policy{streamPolicy(int64(budget)+1, 1, sp)}, Estimate{MaxOutputTokens: 1}, &d)
			if res == nil {
				t.Fatal("refused")
			}
			body := NewStreamBody(ctx, &closeRecorder{Reader: &chunkedReader{data: stream, sizes: sizes}}, res, nil)
			out, err := io.ReadAll(body)
			if err != nil {
				t.Fatal(err)
			}
			if !body.Cut() {
				if !bytes.Equal(out, stream) {
					t.Fatalf("policy %d, not cut, but changed:\n%q\n%q", sp, stream, out)
				}
			} else {
				if sp != StreamCut {
					t.Fatal("cut under Finish")
				}
				i := bytes.Index(out, []byte("data: {\"error\""))
				if i < 0 || !bytes.HasPrefix(stream, out[:i]) || !bytes.HasSuffix(out, []byte("\n\ndata: [DONE]\n\n")) {
					t.Fatalf("cut output is not a prefix plus the closing events:\n%q\n%q", stream, out)
				}
				if i > 0 && !bytes.HasSuffix(out[:i], []byte("\n\n")) && !bytes.HasSuffix(out[:i], []byte("\n\r\n")) {
					t.Fatalf("cut inside an event:\n%q", out[:i])
				}
				if body.OutputTokens() > int64(budget)+1 {
					t.Fatalf("forwarded %d output tokens past a budget of %d", body.OutputTokens(), int64(budget)+1)
				}
			}
			_ = res.Settle(ctx, 0, body.OutputTokens())
		}
	})
}
