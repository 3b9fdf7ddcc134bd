package bench

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// ReplicaStats is what one model server's /metrics says about a run: how
// much of the prompt work its prefix cache saved and how much of the load
// it carried. A router's quality shows in both: prefix affinity raises the
// hit rate, and a share far from 1/replicas means it concentrated load.
// Counters are cumulative since the replica started; the comparison starts
// a fresh fleet per contender, so they cover exactly one contender's run
// (warm-up included).
type ReplicaStats struct {
	// Address is the replica's host:port.
	Address string `json:"address"`
	// PrefixCacheQueries and PrefixCacheHits count prompt tokens looked up
	// in, and found in, the prefix cache.
	PrefixCacheQueries float64 `json:"prefix_cache_queries"`
	PrefixCacheHits    float64 `json:"prefix_cache_hits"`
	// HitRate is PrefixCacheHits / PrefixCacheQueries (0 without queries).
	HitRate float64 `json:"hit_rate"`
	// Requests counts finished requests (any finish reason).
	Requests float64 `json:"requests"`
	// Share is Requests over the fleet's finished requests.
	Share float64 `json:"share"`
	// PromptTokens and GenerationTokens are the tokens the replica
	// prefilled (hits included, as vLLM counts them) and generated.
	PromptTokens     float64 `json:"prompt_tokens"`
	GenerationTokens float64 `json:"generation_tokens"`
	// Preemptions counts sequences evicted from the running batch for want
	// of KV blocks.
	Preemptions float64 `json:"preemptions"`
	// MeanTTFT and MeanQueueTime are the replica's own histograms' means, in
	// the modelled GPU's seconds (a simulator at time-scale s reports s×
	// the wall time); comparing them with the client's TTFT shows how much
	// of it the gateway and the machine added.
	MeanTTFT      float64 `json:"mean_ttft"`
	MeanQueueTime float64 `json:"mean_queue_time"`
}

// metricNames are one engine's names for what ReplicaStats reads.
type metricNames struct {
	queries, hits, requests, prompt, generation, preemptions, ttft, queue string
}

var (
	vllmNames = metricNames{
		queries: "vllm:prefix_cache_queries_total", hits: "vllm:prefix_cache_hits_total",
		requests: "vllm:request_success_total", prompt: "vllm:prompt_tokens_total",
		generation: "vllm:generation_tokens_total", preemptions: "vllm:num_preemptions_total",
		ttft: "vllm:time_to_first_token_seconds", queue: "vllm:request_queue_time_seconds",
	}
	sglangNames = metricNames{
		queries: "sglang:prefix_cache_queries_total", hits: "sglang:prefix_cache_hits_total",
		requests: "sglang:num_requests_total", prompt: "sglang:prompt_tokens_total",
		generation: "sglang:generation_tokens_total", preemptions: "sglang:num_retractions_total",
		ttft: "sglang:time_to_first_token_seconds", queue: "sglang:queue_time_seconds",
	}
)

// ParseReplicaMetrics reads a model server's Prometheus text exposition
// (vLLM's or SGLang's names, recognized by what is present). Series of one
// name are summed over their labels (models, finish reasons).
func ParseReplicaMetrics(r io.Reader) (ReplicaStats, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(r)
	if err != nil {
		return ReplicaStats{}, fmt.Errorf("metrics: %w", err)
	}
	names := vllmNames
	if _, ok := lookupFamily(fams, vllmNames.requests); !ok {
		if _, ok := lookupFamily(fams, sglangNames.requests); ok {
			names = sglangNames
		}
	}
	s := ReplicaStats{
		PrefixCacheQueries: sumFamily(fams, names.queries),
		PrefixCacheHits:    sumFamily(fams, names.hits),
		Requests:           sumFamily(fams, names.requests),
		PromptTokens:       sumFamily(fams, names.prompt),
		GenerationTokens:   sumFamily(fams, names.generation),
		Preemptions:        sumFamily(fams, names.preemptions),
		MeanTTFT:           histogramMean(fams, names.ttft),
		MeanQueueTime:      histogramMean(fams, names.queue),
	}
	if s.PrefixCacheQueries > 0 {
		s.HitRate = s.PrefixCacheHits / s.PrefixCacheQueries
	}
	return s, nil
}

// lookupFamily finds a family by name, with or without the _total suffix
// (exposition formats disagree on whether a counter's family carries it).
func lookupFamily(fams map[string]*dto.MetricFamily, name string) (*dto.MetricFamily, bool) {
	if f, ok := fams[name]; ok {
		return f, true
	}
	if base, ok := strings.CutSuffix(name, "_total"); ok {
		f, ok := fams[base]
		return f, ok
	}
	return nil, false
}

// sumFamily sums the values of every series of a counter, gauge or untyped
// family; 0 if absent.
func sumFamily(fams map[string]*dto.MetricFamily, name string) float64 {
	f, ok := lookupFamily(fams, name)
	if !ok {
		return 0
	}
	sum := 0.0
	for _, m := range f.GetMetric() {
		switch {
		case m.Counter != nil:
			sum += m.GetCounter().GetValue()
		case m.Gauge != nil:
			sum += m.GetGauge().GetValue()
		case m.Untyped != nil:
			sum += m.GetUntyped().GetValue()
		}
	}
	return sum
}

// histogramMean is Σsum / Σcount over a histogram family's series; 0 if
// absent or empty.
func histogramMean(fams map[string]*dto.MetricFamily, name string) float64 {
	f, ok := fams[name]
	if !ok {
		return 0
	}
	var sum float64
	var count uint64
	for _, m := range f.GetMetric() {
		if h := m.GetHistogram(); h != nil {
			sum += h.GetSampleSum()
			count += h.GetSampleCount()
		}
	}
	if count == 0 {
		return 0
	}
	return sum / float64(count)
}

// ScrapeReplicas reads every replica's /metrics and fills in the shares.
func ScrapeReplicas(ctx context.Context, addrs []string) ([]ReplicaStats, error) {
	client := &http.Client{}
	out := make([]ReplicaStats, 0, len(addrs))
	total := 0.0
	for _, a := range addrs {
		s, err := scrapeReplica(ctx, client, a)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
		total += s.Requests
	}
	if total > 0 {
		for i := range out {
			out[i].Share = out[i].Requests / total
		}
	}
	return out, nil
}

func scrapeReplica(ctx context.Context, client *http.Client, addr string) (ReplicaStats, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		return ReplicaStats{}, fmt.Errorf("replica %s: %w", addr, err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return ReplicaStats{}, fmt.Errorf("replica %s: %w", addr, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return ReplicaStats{}, fmt.Errorf("replica %s: /metrics: %s", addr, resp.Status)
	}
	s, err := ParseReplicaMetrics(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return ReplicaStats{}, fmt.Errorf("replica %s: %w", addr, err)
	}
	s.Address = addr
	return s, nil
}

// FleetCache aggregates replica stats: the fleet's prefix-cache hit rate
// (token-weighted, as vLLM computes it) and totals.
type FleetCache struct {
	// HitRate is Σhits / Σqueries over all replicas.
	HitRate float64 `json:"hit_rate"`
	// Requests, PromptTokens, GenerationTokens and Preemptions are summed
	// over the replicas.
	Requests         float64 `json:"requests"`
	PromptTokens     float64 `json:"prompt_tokens"`
	GenerationTokens float64 `json:"generation_tokens"`
	Preemptions      float64 `json:"preemptions"`
	// MeanTTFT is the request-weighted mean of the replicas' modelled TTFT.
	MeanTTFT float64 `json:"mean_ttft"`
}

// AggregateReplicas sums replica stats into fleet-wide figures.
func AggregateReplicas(rs []ReplicaStats) FleetCache {
	var c FleetCache
	var q, h, ttftWeighted float64
	for _, r := range rs {
		q += r.PrefixCacheQueries
		h += r.PrefixCacheHits
		c.Requests += r.Requests
		c.PromptTokens += r.PromptTokens
		c.GenerationTokens += r.GenerationTokens
		c.Preemptions += r.Preemptions
		ttftWeighted += r.MeanTTFT * r.Requests
	}
	if q > 0 {
		c.HitRate = h / q
	}
	if c.Requests > 0 {
		c.MeanTTFT = ttftWeighted / c.Requests
	}
	return c
}

// AllocCounterNames are the names, in order of preference, under which
// client_golang's Go collector exposes the Go runtime's cumulative count
// of bytes allocated on the heap (runtime/metrics /gc/heap/allocs:bytes):
// the MemStats-compatible name it exports by default, then the
// runtime/metrics name it exports when asked to.
var AllocCounterNames = []string{"go_memstats_alloc_bytes_total", "go_gc_heap_allocs_bytes_total"}

// ScrapeAllocBytes reads a Go process's cumulative heap allocation, in
// bytes, from its Prometheus /metrics at url. The difference of two reads
// is what the process allocated in between: a benchmark reads it before and
// after a run to report bytes allocated per request, which CPU time alone
// hides (allocation is paid again by the garbage collector). Small objects
// are counted when the runtime retires a span from a P's cache, so a read
// can lag by a few spans (tens of KB); over a run of megabytes that is
// noise. The scrape itself allocates in the process too (one gathering of
// its registry), which a caller that measures an idle window accounts for.
func ScrapeAllocBytes(ctx context.Context, client *http.Client, url string) (float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("%s: %s", url, resp.Status)
	}
	return ParseAllocBytes(io.LimitReader(resp.Body, 16<<20))
}

// ParseAllocBytes finds the first of AllocCounterNames in a Prometheus text
// exposition. It is an error if none is there: the process does not
// register the Go collector, and a silent 0 would read as "allocates
// nothing".
func ParseAllocBytes(r io.Reader) (float64, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(r)
	if err != nil {
		return 0, fmt.Errorf("metrics: %w", err)
	}
	for _, name := range AllocCounterNames {
		if _, ok := lookupFamily(fams, name); ok {
			return sumFamily(fams, name), nil
		}
	}
	return 0, fmt.Errorf("metrics: none of %s (the Go collector is not registered)", strings.Join(AllocCounterNames, ", "))
}
