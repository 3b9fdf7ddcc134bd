package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// TestBenchOverhead_ThroughAProxy measures a reverse proxy (this process)
// in front of a streaming server and checks the report adds up: both
// paths answered, the proxy's CPU and allocation per request are there,
// and the allocation is at least what forwarding a body takes.
func TestBenchOverhead_ThroughAProxy(t *testing.T) {
	var bodyBytes atomic.Int64 // written by concurrent handlers
	direct := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var req struct {
			Model  string `json:"model"`
			Stream bool   `json:"stream"`
		}
		if json.Unmarshal(b, &req) != nil || req.Model != "m" || !req.Stream {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		bodyBytes.Store(int64(len(b)))
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, "data: {\"choices\":[{\"delta\":{\"role\":\"assistant\"}}]}\n\ndata: [DONE]\n\n")
	}))
	defer direct.Close()
	target, _ := url.Parse(direct.URL)
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.FlushInterval = -1
	gateway := httptest.NewServer(proxy)
	defer gateway.Close()
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector())
	metrics := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer metrics.Close()

	var out bytes.Buffer
	err := runBenchOverhead(context.Background(), &out, benchOverheadFlags{
		gateway: gateway.URL, direct: direct.URL, model: "m", promptBytes: 16 << 10, distinct: 3, maxTokens: 2,
		concurrency: 4, requests: 40, block: 10, duration: 10 * time.Second, timeout: 5 * time.Second,
		idle: 50 * time.Millisecond, gatewayPID: os.Getpid(), gatewayMetrics: metrics.URL + "/metrics",
	})
	t.Logf("%s", out.String())
	if err != nil {
		t.Fatal(err)
	}
	_, js, ok := strings.Cut(out.String(), "json          ")
	if !ok {
		t.Fatal("no json line")
	}
	var rep overheadReport
	if err := json.Unmarshal([]byte(strings.TrimSpace(js)), &rep); err != nil {
		t.Fatal(err)
	}
	r := rep.Result
	if r.Gateway.OK != 40 || r.Direct.OK != 40 || r.Phases != 8 || r.Gateway.TTFB.Count != 40 {
		t.Errorf("counts: %+v", r)
	}
	if seen := int(bodyBytes.Load()); rep.BodyBytes != seen || seen < 16<<10 {
		t.Errorf("body %d bytes, server saw %d", rep.BodyBytes, seen)
	}
	if !r.HasCPU || !r.HasAlloc {
		t.Errorf("CPU or allocation not measured: %+v", r)
	}
	// The "gateway" shares this process with the load generator, which
	// writes each body and reads it again as the server: well over a body
	// per request.
	if rep.GatewayBytesPerRequest < float64(bodyBytes.Load()) || rep.GatewayNetBytesPerRequest > rep.GatewayBytesPerRequest {
		t.Errorf("bytes per request %.0f (net %.0f), body %d", rep.GatewayBytesPerRequest, rep.GatewayNetBytesPerRequest, bodyBytes.Load())
	}
	for _, want := range []string{"added TTFB", "gateway CPU", "gateway alloc", "× the body"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q", want)
		}
	}
}

func TestBenchOverhead_Flags(t *testing.T) {
	ok := benchOverheadFlags{gateway: "http://127.0.0.1:1", direct: "http://localhost:2", model: "m", promptBytes: 1, distinct: 1,
		maxTokens: 1, concurrency: 1, requests: 1, block: 1, duration: time.Second}
	for _, tc := range []struct {
		edit func(*benchOverheadFlags)
		want string
	}{
		{func(f *benchOverheadFlags) { f.gateway = "http://10.0.0.1:8080" }, "--gateway \"http://10.0.0.1:8080\": only loopback"},
		{func(f *benchOverheadFlags) { f.direct = "http://example.com" }, "--direct \"http://example.com\": only loopback"},
		{func(f *benchOverheadFlags) { f.gatewayMetrics = "http://192.168.1.1:9090/metrics" }, "--gateway-metrics"},
		{func(f *benchOverheadFlags) { f.direct = "https://[::1]:8443" }, "want an http:// URL"},
		{func(f *benchOverheadFlags) { f.block = 0 }, "must be positive"},
		// Loopback and valid: gets as far as the warm-up, which nothing answers.
		{func(f *benchOverheadFlags) { f.gateway = "http://[::1]:1" }, "warm-up"},
	} {
		f := ok
		tc.edit(&f)
		err := runBenchOverhead(context.Background(), io.Discard, f)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: err %v, want %q", f, err, tc.want)
		}
	}
}
