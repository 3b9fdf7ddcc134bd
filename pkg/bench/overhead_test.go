package bench

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// sseServer answers every POST with a chat stream: the role chunk after
// delay, then a token and [DONE]. It records the order of the requests it
// saw in log under name.
func sseServer(t *testing.T, name string, delay time.Duration, log *requestLog) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/v1/chat/completions" {
			http.Error(w, "no", http.StatusNotFound)
			return
		}
		log.add(name)
		time.Sleep(delay)
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, "data: {\"choices\":[{\"delta\":{\"role\":\"assistant\"}}]}\n\n")
		w.(http.Flusher).Flush()
		fmt.Fprint(w, "data: {\"choices\":[{\"delta\":{\"content\":\"x\"}}]}\n\ndata: [DONE]\n\n")
	}))
	t.Cleanup(srv.Close)
	return srv
}

type requestLog struct {
	mu    sync.Mutex
	names []string
}

func (l *requestLog) add(name string) {
	l.mu.Lock()
	l.names = append(l.names, name)
	l.mu.Unlock()
}

// runs collapses the log into its runs: "g5 d5 g5 d5".
func (l *requestLog) runs() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for i := 0; i < len(l.names); {
		j := i
		for j < len(l.names) && l.names[j] == l.names[i] {
			j++
		}
		out = append(out, fmt.Sprintf("%s%d", l.names[i], j-i))
		i = j
	}
	return strings.Join(out, " ")
}

// TestMeasureOverhead_AlternatesPhasesAndMeasuresTheDifference has a
// "gateway" that is 20 ms slower than the "direct" server and checks the
// phases, the counts and the added TTFB.
func TestMeasureOverhead_AlternatesPhasesAndMeasuresTheDifference(t *testing.T) {
	var log requestLog
	direct := sseServer(t, "d", 2*time.Millisecond, &log)
	gateway := sseServer(t, "g", 22*time.Millisecond, &log)
	var probes atomic.Int64
	probe := func(context.Context) (ProcessReading, error) {
		// Each read: 10 ms more CPU and 1 MB more allocated.
		n := probes.Add(1)
		return ProcessReading{CPU: time.Duration(n) * 10 * time.Millisecond, HasCPU: true, AllocBytes: float64(n) * 1e6, HasAlloc: true}, nil
	}
	res, err := MeasureOverhead(context.Background(), OverheadOptions{
		Gateway: gateway.URL, Direct: direct.URL + "/", Bodies: [][]byte{[]byte(`{}`)},
		Concurrency: 2, Requests: 10, Block: 5, Duration: time.Minute, Warmup: 1, Timeout: 5 * time.Second,
		Idle: 10 * time.Millisecond, Probe: probe,
	})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := log.runs(), "g1 d1 g5 d5 g5 d5"; got != want { // warm-up first
		t.Errorf("request order %q, want %q", got, want)
	}
	for name, p := range map[string]OverheadPath{"gateway": res.Gateway, "direct": res.Direct} {
		if p.Sent != 10 || p.OK != 10 || p.Failed != 0 || p.TTFB.Count != 10 || p.E2E.Count != 10 {
			t.Errorf("%s: %+v", name, p)
		}
	}
	if res.Phases != 4 {
		t.Errorf("%d phases, want 4", res.Phases)
	}
	if a := res.AddedTTFB.P50; a < 0.015 || a > 0.2 {
		t.Errorf("added TTFB p50 %.1f ms, want about 20", a*1000)
	}
	if probes.Load() != 3 {
		t.Errorf("probe read %d times, want 3 (idle start, run start, run end)", probes.Load())
	}
	if !res.HasCPU || res.GatewayCPU != 10*time.Millisecond || res.GatewayAllocBytes != 1e6 {
		t.Errorf("gateway CPU %v, alloc %.0f, want 10ms and 1e6", res.GatewayCPU, res.GatewayAllocBytes)
	}
	if res.IdleCPUPerSecond <= 0 || res.IdleAllocBytesPerSecond <= 0 || res.GatewayTime <= 0 || res.GatewayTime > res.Elapsed {
		t.Errorf("idle or phase times: %+v", res)
	}
}

func TestOverheadResult_PerRequest(t *testing.T) {
	r := OverheadResult{
		Gateway: OverheadPath{Sent: 100}, Elapsed: 2 * time.Second, GatewayTime: time.Second,
		GatewayCPU: 300 * time.Millisecond, HasCPU: true, IdleCPUPerSecond: 10 * time.Millisecond,
		GatewayAllocBytes: 30e6, HasAlloc: true, IdleAllocBytesPerSecond: 1e6,
	}
	raw, net := r.CPUPerRequest()
	// raw: (300 − 10×1 s of direct phases) / 100; net: (300 − 10×2 s) / 100.
	if raw != 2900*time.Microsecond || net != 2800*time.Microsecond {
		t.Errorf("CPU per request %v / %v, want 2.9ms / 2.8ms", raw, net)
	}
	if a, n := r.AllocPerRequest(); a != 290e3 || n != 280e3 {
		t.Errorf("alloc per request %.0f / %.0f, want 290000 / 280000", a, n)
	}
	r.HasCPU, r.HasAlloc = false, false
	if raw, net := r.CPUPerRequest(); raw != 0 || net != 0 {
		t.Errorf("unknown CPU: %v %v", raw, net)
	}
	if a, n := r.AllocPerRequest(); a != 0 || n != 0 {
		t.Errorf("unknown alloc: %v %v", a, n)
	}
}

func TestMeasureOverhead_CountsFailures(t *testing.T) {
	var log requestLog
	direct := sseServer(t, "d", 0, &log)
	failing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, "data: {}\n\n") // and no [DONE]
	}))
	defer failing.Close()
	res, err := MeasureOverhead(context.Background(), OverheadOptions{
		Gateway: failing.URL, Direct: direct.URL, Bodies: [][]byte{[]byte(`{}`)},
		Concurrency: 3, Requests: 6, Block: 6, Duration: time.Minute,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Gateway.Sent != 6 || res.Gateway.Failed != 6 || res.Gateway.OK != 0 || !strings.Contains(res.Gateway.FirstError, "[DONE]") {
		t.Errorf("gateway %+v", res.Gateway)
	}
	if res.Direct.OK != 6 {
		t.Errorf("direct %+v", res.Direct)
	}

	// A warm-up that fails says so.
	status := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, `{"error":{"message":"no ready model server"}}`, http.StatusServiceUnavailable)
	}))
	defer status.Close()
	_, err = MeasureOverhead(context.Background(), OverheadOptions{
		Gateway: status.URL, Direct: direct.URL, Bodies: [][]byte{[]byte(`{}`)},
		Concurrency: 1, Requests: 1, Block: 1, Duration: time.Minute, Warmup: 2,
	})
	if err == nil || !strings.Contains(err.Error(), "503") || !strings.Contains(err.Error(), "no ready model server") {
		t.Errorf("err %v", err)
	}
}

// TestMeasureOverhead_DurationBoundsTheRun: with a request budget far
// beyond the duration, the run stops starting requests at the duration.
func TestMeasureOverhead_DurationBoundsTheRun(t *testing.T) {
	var log requestLog
	direct := sseServer(t, "d", 5*time.Millisecond, &log)
	gateway := sseServer(t, "g", 5*time.Millisecond, &log)
	t0 := time.Now()
	res, err := MeasureOverhead(context.Background(), OverheadOptions{
		Gateway: gateway.URL, Direct: direct.URL, Bodies: [][]byte{[]byte(`{}`)},
		Concurrency: 2, Requests: 1 << 20, Block: 10, Duration: 200 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(t0); took > 2*time.Second {
		t.Errorf("took %v", took)
	}
	if res.Gateway.Sent == 0 || res.Direct.Sent == 0 || res.Gateway.Sent+res.Direct.Sent > 200 {
		t.Errorf("sent %d + %d", res.Gateway.Sent, res.Direct.Sent)
	}
}
