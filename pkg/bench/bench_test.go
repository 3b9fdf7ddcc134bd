package bench

import (
	"bytes"
	"fmt"
	"testing"
	"time"
)

// vllmStream is a chat stream as vLLM (and the simulator) sends it: a role
// chunk, n token chunks, a usage chunk and [DONE].
func vllmStream(n int) []byte {
	var b bytes.Buffer
	b.WriteString(`data: {"id":"chatcmpl-1f41-2a","object":"chat.completion.chunk","created":1767225600,"model":"meta-llama/Llama-3.1-8B-Instruct","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}` + "\n\n")
	for i := range n {
		finish := "null"
		if i == n-1 {
			finish = `"length"`
		}
		fmt.Fprintf(&b, `data: {"id":"chatcmpl-1f41-2a","object":"chat.completion.chunk","created":1767225600,"model":"meta-llama/Llama-3.1-8B-Instruct","choices":[{"index":0,"delta":{"content":" %s"},"finish_reason":%s}]}`+"\n\n", words[i%len(words)], finish)
	}
	fmt.Fprintf(&b, `data: {"id":"chatcmpl-1f41-2a","object":"chat.completion.chunk","created":1767225600,"model":"meta-llama/Llama-3.1-8B-Instruct","choices":[],"usage":{"prompt_tokens":2110,"completion_tokens":%d,"total_tokens":%d,"prompt_tokens_details":{"cached_tokens":2096}}}`+"\n\n", n, 2110+n)
	b.WriteString("data: [DONE]\n\n")
	return b.Bytes()
}

// BenchmarkSSEClient is the client's cost per streamed token: SSE framing,
// classifying the event, timing it and keeping its inter-token latency.
// The load generator shares a small machine with the gateway and the
// simulator, so this must stay far below a token's wall time.
func BenchmarkSSEClient(b *testing.B) {
	for _, collect := range []bool{false, true} {
		name := "measure"
		if collect {
			name = "collect-answer"
		}
		b.Run(name, func(b *testing.B) {
			const tokens = 256
			stream := vllmStream(tokens)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				p := streamParser{collect: collect, start: time.Now()}
				if err := p.read(bytes.NewReader(stream)); err != nil || !p.done || p.events != tokens || !p.haveUsage {
					b.Fatalf("parse: err %v done %v events %d usage %v", err, p.done, p.events, p.haveUsage)
				}
				if collect && p.answer.Len() == 0 {
					b.Fatal("no answer collected")
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/(tokens+3), "ns/chunk")
		})
	}
}
