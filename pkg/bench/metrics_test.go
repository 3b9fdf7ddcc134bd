package bench

import (
	"context"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/igw-dev/igw/pkg/sim"
)

const vllmMetrics = `# HELP vllm:prefix_cache_queries_total Prefix cache queries, in terms of number of queried tokens.
# TYPE vllm:prefix_cache_queries_total counter
vllm:prefix_cache_queries_total{model_name="m"} 4000
# HELP vllm:prefix_cache_hits_total Prefix cache hits, in terms of number of cached tokens.
# TYPE vllm:prefix_cache_hits_total counter
vllm:prefix_cache_hits_total{model_name="m"} 3000
# TYPE vllm:request_success_total counter
vllm:request_success_total{finished_reason="length",model_name="m"} 7
vllm:request_success_total{finished_reason="stop",model_name="m"} 3
vllm:request_success_total{finished_reason="length",model_name="sql-lora"} 2
# TYPE vllm:prompt_tokens_total counter
vllm:prompt_tokens_total{model_name="m"} 4000
# TYPE vllm:generation_tokens_total counter
vllm:generation_tokens_total{model_name="m"} 1200
# TYPE vllm:num_preemptions_total counter
vllm:num_preemptions_total{model_name="m"} 1
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{model_name="m"} 5
# TYPE vllm:time_to_first_token_seconds histogram
vllm:time_to_first_token_seconds_bucket{model_name="m",le="0.1"} 8
vllm:time_to_first_token_seconds_bucket{model_name="m",le="+Inf"} 12
vllm:time_to_first_token_seconds_sum{model_name="m"} 1.2
vllm:time_to_first_token_seconds_count{model_name="m"} 12
# TYPE vllm:request_queue_time_seconds histogram
vllm:request_queue_time_seconds_bucket{model_name="m",le="+Inf"} 12
vllm:request_queue_time_seconds_sum{model_name="m"} 0.6
vllm:request_queue_time_seconds_count{model_name="m"} 12
`

// SGLang's exposition, with counters whose family omits _total.
const sglangMetrics = `# TYPE sglang:prefix_cache_queries counter
sglang:prefix_cache_queries_total 100
# TYPE sglang:prefix_cache_hits counter
sglang:prefix_cache_hits_total 25
# TYPE sglang:num_requests counter
sglang:num_requests_total{finished_reason="length"} 4
`

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

func TestParseReplicaMetrics_VLLM(t *testing.T) {
	s, err := ParseReplicaMetrics(strings.NewReader(vllmMetrics))
	if err != nil {
		t.Fatal(err)
	}
	want := ReplicaStats{
		PrefixCacheQueries: 4000, PrefixCacheHits: 3000, HitRate: 0.75, Requests: 12,
		PromptTokens: 4000, GenerationTokens: 1200, Preemptions: 1, MeanTTFT: 0.1, MeanQueueTime: 0.05,
	}
	if !near(s.HitRate, want.HitRate) || !near(s.MeanTTFT, want.MeanTTFT) || !near(s.MeanQueueTime, want.MeanQueueTime) {
		t.Fatalf("got %+v, want %+v", s, want)
	}
	s.HitRate, s.MeanTTFT, s.MeanQueueTime = want.HitRate, want.MeanTTFT, want.MeanQueueTime
	if s != want {
		t.Fatalf("got %+v, want %+v", s, want)
	}
}

func TestParseReplicaMetrics_SGLangAndEmpty(t *testing.T) {
	s, err := ParseReplicaMetrics(strings.NewReader(sglangMetrics))
	if err != nil {
		t.Fatal(err)
	}
	if s.PrefixCacheQueries != 100 || s.PrefixCacheHits != 25 || !near(s.HitRate, 0.25) || s.Requests != 4 {
		t.Fatalf("sglang: %+v", s)
	}
	s, err = ParseReplicaMetrics(strings.NewReader(""))
	if err != nil || s != (ReplicaStats{}) {
		t.Fatalf("empty: %+v %v", s, err)
	}
	if _, err := ParseReplicaMetrics(strings.NewReader("vllm:x{ 1\n")); err == nil {
		t.Fatal("malformed exposition accepted")
	}
}

func TestAggregateReplicas(t *testing.T) {
	agg := AggregateReplicas([]ReplicaStats{
		{PrefixCacheQueries: 1000, PrefixCacheHits: 900, Requests: 30, MeanTTFT: 0.1, Preemptions: 1},
		{PrefixCacheQueries: 3000, PrefixCacheHits: 300, Requests: 10, MeanTTFT: 0.5, Preemptions: 2},
	})
	// Token-weighted, not the mean of the replicas' rates (0.5).
	if !near(agg.HitRate, 0.3) || agg.Requests != 40 || !near(agg.MeanTTFT, 0.2) || agg.Preemptions != 3 {
		t.Fatalf("%+v", agg)
	}
	if z := AggregateReplicas(nil); z != (FleetCache{}) {
		t.Fatalf("empty: %+v", z)
	}
}

func TestScrapeReplicas_SimulatorCountersAndShares(t *testing.T) {
	cfg := sim.DefaultConfig()
	cfg.Port, cfg.Replicas, cfg.Model, cfg.TimeScale = 0, 2, "m", 50
	f, err := sim.StartFleet(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = f.Close(ctx)
	})
	addrs := f.Addrs()
	w := &Workload{Model: "m", Seed: 3, SharedPrefix: &SharedPrefix{NumGroups: 1, NumPromptsPerGroup: 2, SystemPromptLen: 100, QuestionLen: 10, OutputLen: 4}}
	src := mustSource(t, w)
	// Three requests to replica 0, one to replica 1: the same prefix
	// twice on replica 0 hits its cache.
	for i, a := range []string{addrs[0], addrs[0], addrs[0], addrs[1]} {
		c := newTestClient(t, "http://"+a)
		if r, _ := c.Send(context.Background(), src.Next(), time.Now()); !r.OK() {
			t.Fatalf("request %d: %s", i, r.Error)
		}
	}
	stats, err := ScrapeReplicas(context.Background(), addrs)
	if err != nil {
		t.Fatal(err)
	}
	if len(stats) != 2 || stats[0].Address != addrs[0] || stats[0].Requests != 3 || stats[1].Requests != 1 {
		t.Fatalf("stats %+v", stats)
	}
	if !near(stats[0].Share, 0.75) || !near(stats[1].Share, 0.25) {
		t.Fatalf("shares %g %g", stats[0].Share, stats[1].Share)
	}
	if stats[0].HitRate <= 0.5 || stats[1].HitRate != 0 || stats[0].GenerationTokens != 12 || stats[0].MeanTTFT <= 0 {
		t.Fatalf("replica 0 %+v, replica 1 %+v", stats[0], stats[1])
	}
	if _, err := ScrapeReplicas(context.Background(), []string{"127.0.0.1:1"}); err == nil {
		t.Fatal("scraping a closed port succeeded")
	}
}

func TestParseAllocBytes(t *testing.T) {
	for _, tc := range []struct{ name, text string }{
		{"memstats", "# TYPE go_memstats_alloc_bytes_total counter\ngo_memstats_alloc_bytes_total 1.2345e+08\n"},
		{"runtime/metrics", "# TYPE go_gc_heap_allocs_bytes_total counter\ngo_gc_heap_allocs_bytes_total 1.2345e+08\n"},
		{"both, memstats first", "# TYPE go_gc_heap_allocs_bytes_total counter\ngo_gc_heap_allocs_bytes_total 1\n" +
			"# TYPE go_memstats_alloc_bytes_total counter\ngo_memstats_alloc_bytes_total 1.2345e+08\n"},
	} {
		got, err := ParseAllocBytes(strings.NewReader(tc.text))
		if err != nil || got != 1.2345e8 {
			t.Errorf("%s: %v, %v", tc.name, got, err)
		}
	}
	if _, err := ParseAllocBytes(strings.NewReader(vllmMetrics)); err == nil || !strings.Contains(err.Error(), "Go collector") {
		t.Errorf("no Go collector: err %v", err)
	}
}

// TestScrapeAllocBytes_RealRegistry reads the counter from a registry with
// the Go collector, as igw's own (pkg/telemetry) registers it, and sees it
// grow by at least what was allocated in between.
func TestScrapeAllocBytes_RealRegistry(t *testing.T) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector())
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer srv.Close()
	ctx := context.Background()
	a0, err := ScrapeAllocBytes(ctx, srv.Client(), srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	var keep [][]byte
	for range 64 {
		keep = append(keep, make([]byte, 64<<10)) // large objects: counted at once
	}
	a1, err := ScrapeAllocBytes(ctx, srv.Client(), srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	if d := a1 - a0; d < float64(len(keep)*64<<10) {
		t.Errorf("allocated %.0f bytes between scrapes, want ≥ %d", d, len(keep)*64<<10)
	}
	missing := httptest.NewServer(http.NotFoundHandler())
	defer missing.Close()
	if _, err := ScrapeAllocBytes(ctx, missing.Client(), missing.URL); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("404: err %v", err)
	}
}
