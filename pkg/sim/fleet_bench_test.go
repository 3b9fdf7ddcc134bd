package sim

import (
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// BenchmarkFleet_16Replicas1000RPS offers 1,000 req/s (open loop, evenly
// spaced) for 2 s per iteration to 16 replicas in one process, at real time
// (time-scale 1), and reports what was achieved: the simulator is not the
// bottleneck when achieved req/s matches the offered rate and the CPU used
// (simulator and load generator together) stays well under the machine's
// two cores. Run with -benchtime 1x.
func BenchmarkFleet_16Replicas1000RPS(b *testing.B) { benchFleet(b, false) }

// BenchmarkFleet_16Replicas1000RPSStreaming is the same load with every
// response streamed token by token over SSE.
func BenchmarkFleet_16Replicas1000RPSStreaming(b *testing.B) { benchFleet(b, true) }

func benchFleet(b *testing.B, stream bool) {
	const (
		replicas = 16
		rate     = 1000
		duration = 2 * time.Second
		outLen   = 32
	)
	f := startFleet(b, func(c *Config) { c.Replicas = replicas })
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 512, MaxConnsPerHost: 0}}
	bodies := make([]string, 64)
	for i := range bodies {
		bodies[i] = fmt.Sprintf(`{"model":"m","messages":[{"role":"system","content":"You are a helpful assistant for fleet %d."},`+
			`{"role":"user","content":"%s"}],"max_tokens":%d,"ignore_eos":true,"stream":%v}`,
			i%8, strings.Repeat("Explain continuous batching in one paragraph please. ", 8), outLen, stream)
	}
	do := func(i int) (time.Duration, bool) {
		start := time.Now()
		resp, err := client.Post("http://"+f.Addrs()[i%replicas]+"/v1/chat/completions", "application/json", strings.NewReader(bodies[i%len(bodies)]))
		if err != nil {
			return 0, false
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return time.Since(start), err == nil && resp.StatusCode == 200
	}
	for i := range 2 * replicas { // open connections before measuring
		do(i)
	}
	b.ResetTimer()
	var achieved, p50, p99, cores float64
	var failed int
	for range b.N {
		n := int(duration.Seconds() * rate)
		lat := make([]time.Duration, n)
		end := make([]time.Time, n)
		ok := make([]bool, n)
		var wg sync.WaitGroup
		cpu0, start := cpuTimeOf(b), time.Now()
		for i := range n {
			if d := time.Until(start.Add(time.Duration(i) * time.Second / rate)); d > 0 {
				time.Sleep(d)
			}
			wg.Add(1)
			go func() { defer wg.Done(); lat[i], ok[i] = do(i); end[i] = time.Now() }()
		}
		wg.Wait()
		wall := time.Since(start)
		cores = float64(cpuTimeOf(b)-cpu0) / float64(wall)
		// Sustained throughput: completions in the steady window between
		// the first 500ms (ramp-up) and the end of arrivals.
		winStart, winEnd := start.Add(500*time.Millisecond), start.Add(duration)
		failed = 0
		inWindow := 0
		var good []time.Duration
		for i := range n {
			if !ok[i] {
				failed++
				continue
			}
			good = append(good, lat[i])
			if end[i].After(winStart) && !end[i].After(winEnd) {
				inWindow++
			}
		}
		slices.Sort(good)
		achieved = float64(inWindow) / winEnd.Sub(winStart).Seconds()
		if len(good) > 0 {
			p50 = float64(good[len(good)/2]) / 1e6
			p99 = float64(good[len(good)*99/100]) / 1e6
		}
	}
	b.ReportMetric(achieved, "req/s")
	b.ReportMetric(float64(failed), "failed")
	b.ReportMetric(p50, "p50-ms")
	b.ReportMetric(p99, "p99-ms")
	b.ReportMetric(cores, "cpu-cores")
}
