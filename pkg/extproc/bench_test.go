package extproc_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/igw-dev/igw/pkg/extproc/envoytest"
)

// benchmarkDecision runs the whole Envoy message sequence of one request
// per iteration over a real loopback gRPC stream, in parallel as Envoy's
// connections do: request headers and body (full duplex), the decision and
// the body echoed back, then a small JSON response through the response
// phase. It reports decisions per second.
func benchmarkDecision(b *testing.B, promptBytes int) {
	e := newPickerEnv(b, envOptions{})
	prompt := strings.Repeat("The quick brown fox jumps over the lazy dog. ", promptBytes/45+1)[:promptBytes]
	resp := &envoytest.Response{Status: 200, Headers: map[string]string{"content-type": "application/json"},
		Chunks: [][]byte{[]byte(`{"model":"` + baseModel + `","usage":{"prompt_tokens":900,"completion_tokens":8}}`)}}
	b.ReportAllocs()
	// Envoy multiplexes many requests' streams on its connections: enough
	// of them in flight that the picker, not one stream's round trips,
	// sets the pace.
	b.SetParallelism(8)
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		i := 0
		for pb.Next() {
			i++
			// Distinct prompts (a different first word), so the prefix index
			// does real work, with shared tails as real traffic has.
			body := chatRequest(baseModel, strings.Repeat("x", i%97)+prompt, false)
			res, err := envoytest.Exchange(ctx, e.conn, &envoytest.Request{Headers: chatHeaders(), Body: body, ChunkSize: 16 << 10}, resp)
			if err != nil {
				b.Error(err)
				return
			}
			if res.Immediate != nil {
				b.Errorf("rejected: %s", res.Immediate.GetBody())
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "decisions/s")
}

func BenchmarkEPP_Decision4KB(b *testing.B)   { benchmarkDecision(b, 4<<10) }
func BenchmarkEPP_Decision200KB(b *testing.B) { benchmarkDecision(b, 200<<10) }
