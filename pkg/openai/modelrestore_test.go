package openai

import (
	"bytes"
	"strings"
	"testing"
)

// Whatever the chunk boundaries, the rewritten stream equals the whole
// stream rewritten at once.
func TestModelRewriter_IndependentOfChunking(t *testing.T) {
	const target, requested = "meta-llama/Llama-3.1-8B", "chat"
	stream := `data: {"model":"meta-llama/Llama-3.1-8B","x":"\"model\":\"meta-llama/Llama-3.1-8B\""}` + "\n\n" +
		`data: {"model": "meta-llama/Llama-3.1-8B","m":"meta-llama/Llama-3.1-8"}` + "\n\n" +
		`{"model":"meta-llama/Llama-3.1-8B-Instruct","model":"meta-llama/Llama-3.1-8B"` + "\n"
	want := strings.NewReplacer(`"model":"`+target+`"`, `"model":"`+requested+`"`, `"model": "`+target+`"`, `"model": "`+requested+`"`).Replace(stream)
	if !strings.Contains(want, `\"model\":\"meta-llama/Llama-3.1-8B\"`) || !strings.Contains(want, `"model":"meta-llama/Llama-3.1-8B-Instruct"`) {
		t.Fatal("the test stream must keep its escaped and longer names")
	}
	for i := 0; i <= len(stream); i++ {
		for j := i; j <= len(stream); j += 7 {
			rw := NewModelRestorer(target, requested)
			var out []byte
			out = append(out, rw.Write([]byte(stream[:i]), false)...)
			out = append(out, rw.Write([]byte(stream[i:j]), false)...)
			out = append(out, rw.Write([]byte(stream[j:]), true)...)
			if string(out) != want {
				t.Fatalf("split at %d,%d:\n got %s\nwant %s", i, j, out, want)
			}
		}
	}
}

func TestReplacer_HoldsOnlyPossiblePatternStarts(t *testing.T) {
	r := &replacer{old: []byte(`"model":"x"`), new: []byte(`"model":"y"`)}
	if out := r.write([]byte("data: {}\n\n"), false); string(out) != "data: {}\n\n" {
		t.Errorf("held back a complete event: %q", out)
	}
	if out := r.write([]byte(`{"a":1,"mod`), false); string(out) != `{"a":1,` {
		t.Errorf("got %q, want the bytes before the possible pattern", out)
	}
	if out := r.write([]byte(`el":"x"}`), true); string(out) != `"model":"y"}` {
		t.Errorf("got %q", out)
	}
	p := []byte("no pattern here")
	if out := r.write(p, false); &out[0] != &p[0] {
		t.Error("a chunk without the pattern was copied")
	}
}

func BenchmarkModelRewriter_SSEChunk(b *testing.B) {
	chunk := []byte(`data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"meta-llama/Llama-3.1-8B-Instruct","choices":[{"index":0,"delta":{"content":" token"}}]}` + "\n\n")
	rw := NewModelRestorer("meta-llama/Llama-3.1-8B-Instruct", "chat")
	b.ReportAllocs()
	b.SetBytes(int64(len(chunk)))
	for b.Loop() {
		if out := rw.Write(chunk, false); !bytes.Contains(out, []byte(`"model":"chat"`)) {
			b.Fatal("not rewritten")
		}
	}
}
