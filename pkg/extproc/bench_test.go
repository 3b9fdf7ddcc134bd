package extproc_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/igw-dev/igw/pkg/extproc"
	"github.com/igw-dev/igw/pkg/extproc/envoytest"
)

// benchmarkEPP runs one request per iteration over a real loopback gRPC
// stream, in parallel as Envoy's connections do, and reports requests per
// second. The request phase is what Envoy waits for before it can route:
// request headers and body (full duplex), the decision and the body echoed
// back. With full, the response phase follows (response headers and a JSON
// body with usage), as Envoy sends it after the model server answered.
//
// Besides decisions/s it reports the process's CPU time per request, which
// the load of other processes on a shared machine does not change.
//
// The model servers' metrics may be up to 2 s old here (instead of 200 ms):
// with the CPU saturated by the benchmark (and, on a shared machine, by
// others) the scraper's requests wait for CPU like everything else, and an
// endpoint going stale would measure the scraper, not the picker.
func benchmarkEPP(b *testing.B, promptBytes int, full bool) {
	e := newPickerEnv(b, envOptions{maxAge: 2 * time.Second})
	benchmarkStream(b, e.conn, promptBytes, full)
}

// benchmarkTransport is benchmarkEPP against a processor that runs the same
// gRPC server and stream driver but decides nothing (every request goes to
// one address): the floor under the picker. The difference between the two
// is what the Director adds per request; the rest is gRPC, protobuf and the
// goroutine hand-offs of a stream.
func benchmarkTransport(b *testing.B, promptBytes int) {
	conn := serveGRPC(b, extproc.NewGRPCServer(extproc.NewFixedProcessor("127.0.0.1:8000"), 0, nil))
	benchmarkStream(b, conn, promptBytes, false)
}

func benchmarkStream(b *testing.B, conn *grpc.ClientConn, promptBytes int, full bool) {
	prompt := strings.Repeat("The quick brown fox jumps over the lazy dog. ", promptBytes/45+1)[:promptBytes]
	// Distinct prompts (a different first word), so the prefix index does
	// real work, with shared tails as real traffic has.
	bodies := make([][]byte, 97)
	for i := range bodies {
		bodies[i] = chatRequest(baseModel, strings.Repeat("x", i)+prompt, false)
	}
	var resp *envoytest.Response
	if full {
		resp = &envoytest.Response{Status: 200, Headers: map[string]string{"content-type": "application/json"},
			Chunks: [][]byte{[]byte(`{"model":"` + baseModel + `","usage":{"prompt_tokens":900,"completion_tokens":8}}`)}}
	}
	b.ReportAllocs()
	// Envoy multiplexes many requests' streams on its connections: enough
	// of them in flight that the picker, not one stream's round trips,
	// sets the pace.
	b.SetParallelism(8)
	b.ResetTimer()
	start, cpu := time.Now(), processCPU()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		i := 0
		for pb.Next() {
			i++
			res, err := envoytest.Exchange(ctx, conn, &envoytest.Request{Headers: chatHeaders(), Body: bodies[i%len(bodies)], ChunkSize: 16 << 10}, resp)
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
	// CPU per request of the whole process (the Envoy stand-in, the picker,
	// the simulated servers and the scraper): on a machine shared with
	// other work, decisions/s falls with their load, this does not.
	if c := processCPU() - cpu; c > 0 {
		b.ReportMetric(float64(c.Microseconds())/float64(b.N), "cpu-µs/op")
	}
}

func BenchmarkEPP_Decision4KB(b *testing.B)   { benchmarkEPP(b, 4<<10, false) }
func BenchmarkEPP_Decision200KB(b *testing.B) { benchmarkEPP(b, 200<<10, false) }

func BenchmarkTransport_Decision4KB(b *testing.B)   { benchmarkTransport(b, 4<<10) }
func BenchmarkTransport_Decision200KB(b *testing.B) { benchmarkTransport(b, 200<<10) }

// BenchmarkEPP_Exchange4KB adds the response phase: Envoy's whole message
// sequence for a non-streamed request.
func BenchmarkEPP_Exchange4KB(b *testing.B) { benchmarkEPP(b, 4<<10, true) }
