package sim

import (
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metricNames are the engine-specific metric names, so one collector can
// impersonate vLLM or SGLang to a scraper (REFERENCE §4).
type metricNames struct {
	waiting, running, kvUsage            string
	cacheConfig                          string
	cacheBlockLabel, cacheNumBlocksLabel string
	promptTokens, generationTokens       string
	prefixQueries, prefixHits            string
	preemptions, requestSuccess          string
	ttft, e2e, queueTime, itl            string
	// tpot is the older name of the inter-token latency histogram, which
	// vLLM still exports beside itl: dashboards built before the rename
	// (the reference EPP's model-server panel) query it.
	tpot                       string
	promptHist, generationHist string // tokens per request
	loraInfo                   string // "" when the engine has none
}

func namesFor(engine string) metricNames {
	if engine == EngineSGLang {
		return metricNames{
			waiting: "sglang:num_queue_reqs", running: "sglang:num_running_reqs", kvUsage: "sglang:token_usage",
			cacheConfig: "sglang:cache_config_info", cacheBlockLabel: "page_size", cacheNumBlocksLabel: "num_pages",
			promptTokens: "sglang:prompt_tokens_total", generationTokens: "sglang:generation_tokens_total",
			prefixQueries: "sglang:prefix_cache_queries_total", prefixHits: "sglang:prefix_cache_hits_total",
			preemptions: "sglang:num_retractions_total", requestSuccess: "sglang:num_requests_total",
			ttft: "sglang:time_to_first_token_seconds", e2e: "sglang:e2e_request_latency_seconds",
			queueTime: "sglang:queue_time_seconds", itl: "sglang:inter_token_latency_seconds",
			tpot:       "sglang:time_per_output_token_seconds",
			promptHist: "sglang:request_prompt_tokens", generationHist: "sglang:request_generation_tokens",
		}
	}
	return metricNames{
		waiting: "vllm:num_requests_waiting", running: "vllm:num_requests_running", kvUsage: "vllm:kv_cache_usage_perc",
		cacheConfig: "vllm:cache_config_info", cacheBlockLabel: "block_size", cacheNumBlocksLabel: "num_gpu_blocks",
		promptTokens: "vllm:prompt_tokens_total", generationTokens: "vllm:generation_tokens_total",
		prefixQueries: "vllm:prefix_cache_queries_total", prefixHits: "vllm:prefix_cache_hits_total",
		preemptions: "vllm:num_preemptions_total", requestSuccess: "vllm:request_success_total",
		ttft: "vllm:time_to_first_token_seconds", e2e: "vllm:e2e_request_latency_seconds",
		queueTime: "vllm:request_queue_time_seconds", itl: "vllm:inter_token_latency_seconds",
		tpot:       "vllm:time_per_output_token_seconds",
		promptHist: "vllm:request_prompt_tokens", generationHist: "vllm:request_generation_tokens",
		loraInfo: "vllm:lora_requests_info",
	}
}

// Histogram buckets, in seconds, as vLLM defines them.
var (
	ttftBuckets    = []float64{0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0}
	latencyBuckets = []float64{0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0}
	itlBuckets     = []float64{0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0}
	tokenBuckets   = []float64{1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000, 100000}
)

// engineMetrics are the latency histograms the engine observes as it runs.
type engineMetrics struct {
	ttft, e2e, queueTime, itl, tpot prometheus.Observer
	promptTokens, generationTokens  prometheus.Observer
}

// collector reports the engine's state at scrape time: gauges are read
// under the engine's lock, so a scrape sees the true queue lengths and KV
// usage, never a cached value.
type collector struct {
	engine    *Engine
	model     string
	names     metricNames
	maxLoRAs  int
	blockSize int
	numBlocks int

	waiting, running, kvUsage, cacheConfig *prometheus.Desc
	promptTokens, generationTokens         *prometheus.Desc
	prefixQueries, prefixHits, preemptions *prometheus.Desc
	requestSuccess, loraInfo               *prometheus.Desc

	// loraSeries remembers earlier lora_requests_info label sets with the
	// time they were last current: vLLM leaves old series behind in its
	// registry, and scrapers must cope by taking the newest.
	mu         sync.Mutex
	loraSeries []loraSeries
}

type loraSeries struct {
	running, waiting string
	at               float64
}

const maxLingeringLoRASeries = 4

// newMetrics registers the engine's metrics for model on reg and returns
// the histograms the engine observes.
func newMetrics(reg prometheus.Registerer, engine string, model string) (*engineMetrics, func(*Engine)) {
	n := namesFor(engine)
	labels := prometheus.Labels{"model_name": model}
	hist := func(name, help string, buckets []float64) prometheus.Histogram {
		h := prometheus.NewHistogram(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets, ConstLabels: labels})
		reg.MustRegister(h)
		return h
	}
	m := &engineMetrics{
		ttft:      hist(n.ttft, "Histogram of time to first token in seconds.", ttftBuckets),
		e2e:       hist(n.e2e, "Histogram of end to end request latency in seconds.", latencyBuckets),
		queueTime: hist(n.queueTime, "Histogram of time spent in WAITING phase for request.", latencyBuckets),
		itl:       hist(n.itl, "Histogram of inter-token latency in seconds.", itlBuckets),
		tpot:      hist(n.tpot, "Histogram of time per output token in seconds (the inter-token latency under its older name).", itlBuckets),

		promptTokens:     hist(n.promptHist, "Number of prefill tokens processed, per request.", tokenBuckets),
		generationTokens: hist(n.generationHist, "Number of generation tokens processed, per request.", tokenBuckets),
	}
	attach := func(e *Engine) {
		desc := func(name, help string, variable ...string) *prometheus.Desc {
			return prometheus.NewDesc(name, help, variable, labels)
		}
		c := &collector{
			engine: e, model: model, names: n,
			maxLoRAs: e.cfg.MaxLoRAs, blockSize: e.cfg.BlockSize, numBlocks: e.cfg.KVCacheBlocks,
			waiting:          desc(n.waiting, "Number of requests waiting to be processed."),
			running:          desc(n.running, "Number of requests in model execution batches."),
			kvUsage:          desc(n.kvUsage, "KV-cache usage. 1 means 100 percent usage."),
			cacheConfig:      prometheus.NewDesc(n.cacheConfig, "Information of the LLMEngine CacheConfig", []string{n.cacheBlockLabel, n.cacheNumBlocksLabel, "enable_prefix_caching"}, nil),
			promptTokens:     desc(n.promptTokens, "Number of prefill tokens processed."),
			generationTokens: desc(n.generationTokens, "Number of generation tokens processed."),
			prefixQueries:    desc(n.prefixQueries, "Prefix cache queries, in terms of number of queried tokens."),
			prefixHits:       desc(n.prefixHits, "Prefix cache hits, in terms of number of cached tokens."),
			preemptions:      desc(n.preemptions, "Cumulative number of preemptions from the engine."),
			requestSuccess:   desc(n.requestSuccess, "Count of successfully processed requests.", "finished_reason"),
		}
		if n.loraInfo != "" {
			c.loraInfo = prometheus.NewDesc(n.loraInfo, "Running stats on lora requests.", []string{"running_lora_adapters", "max_lora", "waiting_lora_adapters"}, nil)
		}
		reg.MustRegister(c)
	}
	return m, attach
}

// Describe implements prometheus.Collector.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.waiting, c.running, c.kvUsage, c.cacheConfig, c.promptTokens,
		c.generationTokens, c.prefixQueries, c.prefixHits, c.preemptions, c.requestSuccess} {
		ch <- d
	}
	if c.loraInfo != nil {
		ch <- c.loraInfo
	}
}

// Collect implements prometheus.Collector.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	st := c.engine.State()
	gauge := func(d *prometheus.Desc, v float64, lv ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, lv...)
	}
	counter := func(d *prometheus.Desc, v uint64, lv ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), lv...)
	}
	gauge(c.waiting, float64(st.Waiting))
	gauge(c.running, float64(st.Running))
	gauge(c.kvUsage, st.KVCacheUsage)
	gauge(c.cacheConfig, 1, strconv.Itoa(c.blockSize), strconv.Itoa(c.numBlocks), "True")
	counter(c.promptTokens, st.PromptTokens)
	counter(c.generationTokens, st.GenerationTokens)
	counter(c.prefixQueries, st.PrefixQueries)
	counter(c.prefixHits, st.PrefixHits)
	counter(c.preemptions, st.Preemptions)
	reasons := make([]string, 0, len(st.Finished))
	for r := range st.Finished {
		reasons = append(reasons, r)
	}
	slices.Sort(reasons)
	for _, r := range reasons {
		if r != "abort" {
			counter(c.requestSuccess, st.Finished[r], r)
		}
	}
	if c.loraInfo != nil {
		maxLoRA := strconv.Itoa(c.maxLoRAs)
		for _, s := range c.updateLoRASeries(strings.Join(st.RunningAdapters, ","), strings.Join(st.WaitingAdapters, ",")) {
			gauge(c.loraInfo, s.at, s.running, maxLoRA, s.waiting)
		}
	}
}

// updateLoRASeries stamps the current adapter sets with the scrape time and
// returns the series to report: the current one and a few stale ones.
func (c *collector) updateLoRASeries(running, waiting string) []loraSeries {
	now := float64(time.Now().UnixNano()) / 1e9
	c.mu.Lock()
	defer c.mu.Unlock()
	i := slices.IndexFunc(c.loraSeries, func(s loraSeries) bool { return s.running == running && s.waiting == waiting })
	if i >= 0 {
		c.loraSeries[i].at = now
	} else {
		c.loraSeries = append(c.loraSeries, loraSeries{running: running, waiting: waiting, at: now})
		if len(c.loraSeries) > maxLingeringLoRASeries {
			c.loraSeries = slices.Delete(c.loraSeries, 0, 1)
		}
	}
	return slices.Clone(c.loraSeries)
}
