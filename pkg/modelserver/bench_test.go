package modelserver

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/igw-dev/igw/pkg/datastore"
)

// vllmBenchPage builds a /metrics page shaped like a busy vLLM server's as
// written by prometheus_client: process metrics, gauges and counters per
// model_name (base model plus LoRA adapters) with their _created samples,
// a dozen histograms with vLLM's bucket boundaries, several lingering
// lora_requests_info series and cache_config_info.
func vllmBenchPage() []byte {
	var b bytes.Buffer
	models := []string{"meta-llama/Llama-3.1-8B-Instruct", "sql-lora", "tweet-lora"}
	lbl := func(model string, extra ...string) string {
		s := `engine="0",model_name="` + model + `"`
		for i := 0; i+1 < len(extra); i += 2 {
			s += "," + extra[i] + `="` + extra[i+1] + `"`
		}
		return "{" + s + "}"
	}
	for _, gen := range []string{"0", "1", "2"} {
		fmt.Fprintf(&b, "python_gc_objects_collected_total{generation=%q} 1234.0\n", gen)
	}
	for _, n := range []string{"process_virtual_memory_bytes", "process_resident_memory_bytes", "process_start_time_seconds", "process_cpu_seconds_total", "process_open_fds", "process_max_fds"} {
		fmt.Fprintf(&b, "# HELP %s Process metric.\n# TYPE %s gauge\n%s 1.234e+09\n", n, n, n)
	}
	gauge := func(name string, v func(i int) float64) {
		fmt.Fprintf(&b, "# HELP %s Gauge.\n# TYPE %s gauge\n", name, name)
		for i, m := range models {
			fmt.Fprintf(&b, "%s%s %g\n", name, lbl(m), v(i))
		}
	}
	gauge("vllm:num_requests_running", func(i int) float64 { return float64(7 - i) })
	gauge("vllm:num_requests_waiting", func(i int) float64 { return float64(3 + i) })
	gauge("vllm:kv_cache_usage_perc", func(int) float64 { return 0.4375 })
	counter := func(name string, extras ...[]string) {
		if len(extras) == 0 {
			extras = [][]string{nil}
		}
		fmt.Fprintf(&b, "# HELP %s_total Counter.\n# TYPE %s_total counter\n", name, name)
		for _, m := range models {
			for _, extra := range extras {
				fmt.Fprintf(&b, "%s_total%s 918273.0\n", name, lbl(m, extra...))
			}
		}
		fmt.Fprintf(&b, "# HELP %s_created Counter.\n# TYPE %s_created gauge\n", name, name)
		for _, m := range models {
			for _, extra := range extras {
				fmt.Fprintf(&b, "%s_created%s 1.7459e+09\n", name, lbl(m, extra...))
			}
		}
	}
	counter("vllm:num_preemptions")
	counter("vllm:prompt_tokens")
	counter("vllm:generation_tokens")
	counter("vllm:prefix_cache_queries")
	counter("vllm:prefix_cache_hits")
	counter("vllm:request_success",
		[]string{"finished_reason", "stop"}, []string{"finished_reason", "length"}, []string{"finished_reason", "abort"})
	latency := []string{"0.001", "0.005", "0.01", "0.02", "0.04", "0.06", "0.08", "0.1", "0.25", "0.5", "0.75", "1.0", "2.5", "5.0", "7.5", "10.0", "20.0", "40.0", "80.0", "160.0", "640.0", "2560.0"}
	tokens := []string{"1.0", "2.0", "5.0", "10.0", "20.0", "50.0", "100.0", "200.0", "500.0", "1000.0", "2000.0", "5000.0", "10000.0", "20000.0", "50000.0", "100000.0"}
	hist := func(name string, buckets []string) {
		fmt.Fprintf(&b, "# HELP %s Histogram.\n# TYPE %s histogram\n", name, name)
		for _, m := range models {
			for i, le := range buckets {
				fmt.Fprintf(&b, "%s_bucket%s %d.0\n", name, lbl(m, "le", le), i*17)
			}
			fmt.Fprintf(&b, "%s_bucket%s 4211.0\n", name, lbl(m, "le", "+Inf"))
			fmt.Fprintf(&b, "%s_count%s 4211.0\n", name, lbl(m))
			fmt.Fprintf(&b, "%s_sum%s 9876.54321\n", name, lbl(m))
		}
		fmt.Fprintf(&b, "# HELP %s_created Histogram.\n# TYPE %s_created gauge\n", name, name)
		for _, m := range models {
			fmt.Fprintf(&b, "%s_created%s 1.7459e+09\n", name, lbl(m))
		}
	}
	for _, h := range []string{"time_to_first_token_seconds", "e2e_request_latency_seconds", "request_queue_time_seconds", "inter_token_latency_seconds", "request_inference_time_seconds", "request_prefill_time_seconds", "request_decode_time_seconds", "time_per_output_token_seconds"} {
		hist("vllm:"+h, latency)
	}
	for _, h := range []string{"request_prompt_tokens", "request_generation_tokens", "iteration_tokens_total", "request_max_num_generation_tokens", "request_params_max_tokens"} {
		hist("vllm:"+h, tokens)
	}
	b.WriteString("# HELP vllm:lora_requests_info Running stats on lora requests.\n# TYPE vllm:lora_requests_info gauge\n")
	for i := range 20 {
		fmt.Fprintf(&b, "vllm:lora_requests_info{max_lora=\"4\",running_lora_adapters=\"sql-lora,tweet-lora\",waiting_lora_adapters=\"%s\"} %d.0\n",
			strings.Repeat("x", i%7), 1745900000+i)
	}
	b.WriteString("# HELP vllm:cache_config_info Information of the LLMEngine CacheConfig\n# TYPE vllm:cache_config_info gauge\n")
	b.WriteString(`vllm:cache_config_info{block_size="16",cache_dtype="auto",enable_prefix_caching="True",engine="0",gpu_memory_utilization="0.9",num_cpu_blocks="None",num_gpu_blocks="27503",swap_space="4"} 1.0` + "\n")
	return b.Bytes()
}

func TestVLLMBenchPage_Parses(t *testing.T) {
	// Keep the benchmark honest: its page must be valid for the full
	// parser and give the expected snapshot.
	page := vllmBenchPage()
	full := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := full.TextToMetricFamilies(bytes.NewReader(page))
	if err != nil {
		t.Fatalf("bench page is not valid text format: %v", err)
	}
	if len(page) < 30_000 || len(fams) < 30 {
		t.Fatalf("bench page too small to be realistic: %d bytes, %d families", len(page), len(fams))
	}
	p, err := NewParser(datastore.EngineVLLM)
	if err != nil {
		t.Fatal(err)
	}
	got, err := p.Parse(page)
	if err != nil {
		t.Fatal(err)
	}
	checkMetrics(t, got, want{
		waiting: 12, running: 18, kv: 0.4375,
		active: []string{"sql-lora", "tweet-lora"}, waitingAdapters: []string{"xxxxx"}, maxAdapters: 4,
		blockSize: 16, numBlocks: 27503,
	})
}

// BenchmarkParseVLLM is one scrape's parsing cost on a realistic vLLM page:
// the price paid 20 times a second per endpoint.
func BenchmarkParseVLLM(b *testing.B) {
	page := vllmBenchPage()
	p, err := NewParser(datastore.EngineVLLM)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(page)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := p.Parse(page); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParseVLLM_FullPage is the baseline the filter is measured
// against: the whole page through expfmt, as a naive scraper would.
func BenchmarkParseVLLM_FullPage(b *testing.B) {
	page := vllmBenchPage()
	tp := expfmt.NewTextParser(model.UTF8Validation)
	r := bytes.NewReader(nil)
	b.SetBytes(int64(len(page)))
	b.ReportAllocs()
	for b.Loop() {
		r.Reset(page)
		if _, err := tp.TextToMetricFamilies(r); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCandidates_100Endpoints is the per-cycle staleness filter of the
// scheduler: it must not allocate.
func BenchmarkCandidates_100Endpoints(b *testing.B) {
	now := time.Now()
	eps := make([]*datastore.Endpoint, 100)
	for i := range eps {
		ep := datastore.NewEndpoint(fmt.Sprintf("ep-%d", i), fmt.Sprintf("10.0.0.%d:8000", i), "pool", datastore.EngineVLLM, nil)
		ep.SetReady(i%10 != 0)
		ep.SetMetrics(&datastore.Metrics{UpdateTime: now.Add(-time.Duration(i%5) * 60 * time.Millisecond)})
		eps[i] = ep
	}
	dst := make([]*datastore.Endpoint, 0, len(eps))
	b.ReportAllocs()
	for b.Loop() {
		dst = datastore.Candidates(dst[:0], eps, now, datastore.DefaultMaxAge)
	}
}

// BenchmarkScrape_VLLM is one whole scrape over a loopback socket with a
// kept-alive connection: request, read, parse, stamp.
func BenchmarkScrape_VLLM(b *testing.B) {
	page := vllmBenchPage()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write(page)
	}))
	defer srv.Close()
	s, err := NewScraper(Options{})
	if err != nil {
		b.Fatal(err)
	}
	p, err := NewParser(datastore.EngineVLLM)
	if err != nil {
		b.Fatal(err)
	}
	var body bytes.Buffer
	url := srv.URL + "/metrics"
	b.SetBytes(int64(len(page)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.scrape(context.Background(), url, p, &body); err != nil {
			b.Fatal(err)
		}
	}
}
