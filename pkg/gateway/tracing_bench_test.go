//go:build unix

package gateway

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"syscall"
	"testing"
	"time"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// BenchmarkGateway_Tracing is what tracing costs per request: the same
// closed loop as BenchmarkGateway_ServeInference through a gateway with
// tracing off, and with every request traced (always_on) and exported
// over OTLP/HTTP, batched as in production, to a loopback collector that
// reads and discards the spans. cpu-µs/op is the process's CPU time per
// request (client, gateway, backend and collector, the same in both but
// for the tracing).
func BenchmarkGateway_Tracing(b *testing.B) {
	for _, on := range []bool{false, true} {
		name := "off"
		if on {
			name = "on-sampled-100pct"
		}
		b.Run(name, func(b *testing.B) {
			var tracer trace.Tracer
			if on {
				collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					_, _ = io.Copy(io.Discard, r.Body)
				}))
				b.Cleanup(collector.Close)
				exp, err := otlptracehttp.New(context.Background(), otlptracehttp.WithEndpointURL(collector.URL+"/v1/traces"))
				if err != nil {
					b.Fatal(err)
				}
				tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithSampler(sdktrace.AlwaysSample()))
				b.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
				tracer = tp.Tracer("bench")
			}
			addr := startFastBackend(b)
			s := startGateway(b, parseConfig(b,
				poolYAML("fast", addr),
				routeYAML("fast", "  matches: [{model: {value: m}}]\n  backends: [{pool: fast}]\n"),
			), Options{Tracer: tracer})
			waitCandidates(b, s, "fast", 1)
			c := newBenchClient(b)
			url := "http://" + s.Addr() + "/v1/chat/completions"
			if err := doChat(c, url); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			cpu := processCPU()
			b.ResetTimer()
			for range b.N {
				if err := doChat(c, url); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64((processCPU()-cpu).Microseconds())/float64(b.N), "cpu-µs/op")
		})
	}
}

// processCPU is the CPU time (user and system) the process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
