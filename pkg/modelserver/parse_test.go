package modelserver

import (
	"errors"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/igw-dev/igw/pkg/datastore"
)

func readPage(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// want is the part of a snapshot a parse test compares; adapter sets are
// compared as sorted names.
type want struct {
	waiting, running        int
	kv                      float64
	active, waitingAdapters []string
	maxAdapters             int
	blockSize, numBlocks    int
}

func setNames(s map[string]struct{}) []string {
	return slices.Sorted(maps.Keys(s))
}

func checkMetrics(t *testing.T, got *datastore.Metrics, w want) {
	t.Helper()
	if got.WaitingQueueSize != w.waiting || got.RunningRequests != w.running {
		t.Errorf("waiting, running = %d, %d; want %d, %d", got.WaitingQueueSize, got.RunningRequests, w.waiting, w.running)
	}
	if got.KVCacheUsage != w.kv {
		t.Errorf("KVCacheUsage = %v, want %v", got.KVCacheUsage, w.kv)
	}
	if a := setNames(got.ActiveAdapters); !slices.Equal(a, w.active) {
		t.Errorf("ActiveAdapters = %q, want %q", a, w.active)
	}
	if a := setNames(got.WaitingAdapters); !slices.Equal(a, w.waitingAdapters) {
		t.Errorf("WaitingAdapters = %q, want %q", a, w.waitingAdapters)
	}
	if got.MaxActiveAdapters != w.maxAdapters {
		t.Errorf("MaxActiveAdapters = %d, want %d", got.MaxActiveAdapters, w.maxAdapters)
	}
	if got.CacheBlockSize != w.blockSize || got.CacheNumBlocks != w.numBlocks {
		t.Errorf("cache geometry = %d×%d, want %d×%d", got.CacheBlockSize, got.CacheNumBlocks, w.blockSize, w.numBlocks)
	}
	if !got.UpdateTime.IsZero() {
		t.Errorf("UpdateTime = %v, want zero (stamped by the scraper)", got.UpdateTime)
	}
}

func TestParse_Engines(t *testing.T) {
	tests := []struct {
		name   string
		engine datastore.Engine
		page   string // file under testdata
		want   want
	}{
		{
			// Two model_name series (base model and a LoRA) are summed;
			// the newest of three lingering LoRA series wins.
			name: "vllm", engine: datastore.EngineVLLM, page: "vllm.txt",
			want: want{
				waiting: 4, running: 9, kv: 0.4375,
				active: []string{"sql-lora", "tweet-lora"}, waitingAdapters: []string{"chat-lora"}, maxAdapters: 4,
				blockSize: 16, numBlocks: 27503,
			},
		},
		{
			// Older vLLM: only vllm:gpu_cache_usage_perc; the newest LoRA
			// series is listed last and has no running adapters.
			name: "vllm v0 fallback", engine: datastore.EngineVLLM, page: "vllm_v0.txt",
			want: want{
				waiting: 6, running: 12, kv: 0.91,
				waitingAdapters: []string{"new-lora"}, maxAdapters: 2,
				blockSize: 32, numBlocks: 4096,
			},
		},
		{
			name: "empty engine means vllm", engine: "", page: "vllm_v0.txt",
			want: want{
				waiting: 6, running: 12, kv: 0.91,
				waitingAdapters: []string{"new-lora"}, maxAdapters: 2,
				blockSize: 32, numBlocks: 4096,
			},
		},
		{
			name: "sglang", engine: datastore.EngineSGLang, page: "sglang.txt",
			want: want{waiting: 9, running: 24, kv: 0.28, blockSize: 1, numBlocks: 440311},
		},
		{
			name: "trtllm-serve", engine: datastore.EngineTRTLLMServe, page: "trtllm_serve.txt",
			want: want{waiting: 2, running: 31, kv: 0.65, blockSize: 32, numBlocks: 12288},
		},
		{
			name: "triton-tensorrt-llm", engine: datastore.EngineTritonTRT, page: "triton.txt",
			want: want{waiting: 4, running: 14, kv: 0.3515625},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := NewParser(tc.engine)
			if err != nil {
				t.Fatal(err)
			}
			got, err := p.Parse(readPage(t, tc.page))
			if err != nil {
				t.Fatal(err)
			}
			checkMetrics(t, got, tc.want)
		})
	}
}

func TestParse_Edges(t *testing.T) {
	tests := []struct {
		name    string
		engine  datastore.Engine
		page    string
		want    want
		wantErr error // nil: success; errAny: any error
	}{
		{
			name:   "no trailing newline, untyped, no labels",
			engine: datastore.EngineVLLM,
			page:   "vllm:num_requests_waiting 2\nvllm:num_requests_running 1\nvllm:kv_cache_usage_perc 0.5",
			want:   want{waiting: 2, running: 1, kv: 0.5},
		},
		{
			name:   "quoted metric names",
			engine: datastore.EngineVLLM,
			page: `{"vllm:num_requests_waiting",model_name="m"} 3
{"vllm:num_requests_running",model_name="m"} 4
{"vllm:kv_cache_usage_perc",model_name="m"} 0.25
`,
			want: want{waiting: 3, running: 4, kv: 0.25},
		},
		{
			name:   "usage above 1 and negative counts are clamped",
			engine: datastore.EngineSGLang,
			page:   "sglang:num_queue_reqs -1\nsglang:num_running_reqs 2.6\nsglang:token_usage 1.02\n",
			want:   want{waiting: 0, running: 3, kv: 1},
		},
		{
			name:   "new name preferred over the old one",
			engine: datastore.EngineVLLM,
			page:   "vllm:num_requests_waiting 0\nvllm:num_requests_running 0\nvllm:gpu_cache_usage_perc 0.9\nvllm:kv_cache_usage_perc 0.1\n",
			want:   want{kv: 0.1},
		},
		{
			name:   "unparsable optional geometry is ignored",
			engine: datastore.EngineVLLM,
			page:   "vllm:num_requests_waiting 0\nvllm:num_requests_running 0\nvllm:kv_cache_usage_perc 0\nvllm:cache_config_info{block_size=\"16\",num_gpu_blocks=\"None\"} 1\n",
			want:   want{blockSize: 16},
		},
		{
			name:   "malformed line elsewhere on the page is not read",
			engine: datastore.EngineVLLM,
			page:   "vllm:num_requests_waiting 1\nsomething{ broken\nvllm:num_requests_running 1\nvllm:kv_cache_usage_perc 0.5\n",
			want:   want{waiting: 1, running: 1, kv: 0.5},
		},
		{
			name:    "missing KV usage",
			engine:  datastore.EngineVLLM,
			page:    "vllm:num_requests_waiting 1\nvllm:num_requests_running 1\n",
			wantErr: ErrMissingMetric,
		},
		{
			name:    "empty page",
			engine:  datastore.EngineTRTLLMServe,
			page:    "",
			wantErr: ErrMissingMetric,
		},
		{
			name:    "wrong engine",
			engine:  datastore.EngineSGLang,
			page:    "vllm:num_requests_waiting 1\nvllm:num_requests_running 1\nvllm:kv_cache_usage_perc 0.5\n",
			wantErr: ErrMissingMetric,
		},
		{
			name:    "triton family without the waiting series",
			engine:  datastore.EngineTritonTRT,
			page:    "nv_trt_llm_request_metrics{request_type=\"scheduled\"} 1\nnv_trt_llm_kv_cache_block_metrics{kv_cache_block_type=\"fraction\"} 0.1\n",
			wantErr: ErrMissingMetric,
		},
		{
			name:    "NaN is no value",
			engine:  datastore.EngineVLLM,
			page:    "vllm:num_requests_waiting 1\nvllm:num_requests_running 1\nvllm:kv_cache_usage_perc NaN\n",
			wantErr: ErrMissingMetric,
		},
		{
			name:    "garbage",
			engine:  datastore.EngineVLLM,
			page:    "<html><body>502 Bad Gateway</body></html>\n",
			wantErr: errAny,
		},
		{
			name:    "malformed wanted line",
			engine:  datastore.EngineVLLM,
			page:    "vllm:num_requests_waiting{model_name=\"m\" 1\nvllm:num_requests_running 1\nvllm:kv_cache_usage_perc 0.5\n",
			wantErr: errAny,
		},
		{
			name:    "non-numeric value",
			engine:  datastore.EngineVLLM,
			page:    "vllm:num_requests_waiting many\nvllm:num_requests_running 1\nvllm:kv_cache_usage_perc 0.5\n",
			wantErr: errAny,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := NewParser(tc.engine)
			if err != nil {
				t.Fatal(err)
			}
			got, err := p.Parse([]byte(tc.page))
			switch {
			case tc.wantErr == nil && err != nil:
				t.Fatalf("Parse: %v", err)
			case tc.wantErr == nil:
				checkMetrics(t, got, tc.want)
			case err == nil:
				t.Fatalf("Parse succeeded with %+v, want error", got)
			case tc.wantErr != errAny && !errors.Is(err, tc.wantErr):
				t.Fatalf("Parse error %v, want %v", err, tc.wantErr)
			default:
				t.Logf("error (expected): %v", err)
			}
		})
	}
}

var errAny = errors.New("any error")

func TestNewParser_UnknownEngine(t *testing.T) {
	_, err := NewParser("tgi")
	if !errors.Is(err, ErrUnknownEngine) {
		t.Fatalf("NewParser(tgi) error = %v, want ErrUnknownEngine", err)
	}
}

func TestParse_ReusesUnchangedAdapterSets(t *testing.T) {
	p, err := NewParser(datastore.EngineVLLM)
	if err != nil {
		t.Fatal(err)
	}
	page := func(running string) []byte {
		return []byte("vllm:num_requests_waiting 0\nvllm:num_requests_running 0\nvllm:kv_cache_usage_perc 0\n" +
			`vllm:lora_requests_info{max_lora="2",running_lora_adapters="` + running + `",waiting_lora_adapters=""} 1` + "\n")
	}
	m1, err := p.Parse(page("a,b"))
	if err != nil {
		t.Fatal(err)
	}
	m2, err := p.Parse(page("b, a"))
	if err != nil {
		t.Fatal(err)
	}
	if len(m1.ActiveAdapters) != 2 || !sameMap(m1.ActiveAdapters, m2.ActiveAdapters) {
		t.Fatalf("unchanged adapter set was rebuilt: %v then %v", m1.ActiveAdapters, m2.ActiveAdapters)
	}
	m3, err := p.Parse(page("a"))
	if err != nil {
		t.Fatal(err)
	}
	if sameMap(m2.ActiveAdapters, m3.ActiveAdapters) {
		t.Fatal("changed adapter set shares the previous map")
	}
	if got := setNames(m1.ActiveAdapters); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("published snapshot was modified: %q", got)
	}
	if got := setNames(m3.ActiveAdapters); !slices.Equal(got, []string{"a"}) {
		t.Fatalf("ActiveAdapters = %q, want [a]", got)
	}
}

// sameMap reports whether a and b are the same map value (not just equal).
func sameMap(a, b map[string]struct{}) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	const probe = "\x00probe"
	a[probe] = struct{}{}
	_, shared := b[probe]
	delete(a, probe)
	return shared
}

func TestParser_KeepsOnlyWantedLines(t *testing.T) {
	p := &Parser{wanted: []string{"vllm:x", "my.metric"}, newest: []bool{false, false}}
	tests := map[string]bool{
		"vllm:x{model_name=\"m\"} 1\n":  true,
		"vllm:x 1":                      true,
		"  vllm:x\t1\n":                 true,
		"# HELP vllm:x Some help.\n":    false, // help text is never read
		"# TYPE vllm:x gauge\n":         true,
		"#\tTYPE   vllm:x gauge\n":      true,
		"# TYPE \"my.metric\" gauge\n":  true,
		"{\"my.metric\",a=\"b\"} 1\n":   true,
		"{ \"my.metric\"} 1\n":          true,
		"vllm:x_bucket{le=\"0.1\"} 3\n": false,
		"vllm:xy 1\n":                   false,
		"vllm:\n":                       false,
		"vllm:x":                        false, // a name without a value
		"{\"my.metric.more\"} 1\n":      false,
		"# TYPER vllm:x\n":              false,
		"# TYPE vllm:xx gauge\n":        false,
		"# just a comment\n":            false,
		"# EOF\n":                       false,
		"\n":                            false,
		"   \n":                         false,
	}
	for line, want := range tests {
		if fam, _ := p.match([]byte(line)); (fam >= 0) != want {
			t.Errorf("match(%q) = %d, want a match: %v", line, fam, want)
		}
	}
}

func TestParse_IgnoresHistogramsOfWantedPrefix(t *testing.T) {
	// A histogram whose name starts like a wanted gauge must not confuse
	// the filter or the parser.
	page := strings.Join([]string{
		"# TYPE vllm:num_requests_waiting_time histogram",
		`vllm:num_requests_waiting_time_bucket{le="1"} 1`,
		`vllm:num_requests_waiting_time_bucket{le="+Inf"} 2`,
		"vllm:num_requests_waiting_time_sum 3",
		"vllm:num_requests_waiting_time_count 2",
		"# TYPE vllm:num_requests_waiting gauge",
		"vllm:num_requests_waiting 5",
		"vllm:num_requests_running 1",
		"vllm:kv_cache_usage_perc 0.5",
	}, "\n")
	p, err := NewParser(datastore.EngineVLLM)
	if err != nil {
		t.Fatal(err)
	}
	got, err := p.Parse([]byte(page))
	if err != nil {
		t.Fatal(err)
	}
	checkMetrics(t, got, want{waiting: 5, running: 1, kv: 0.5})
}

func TestParser_FilterKeepsNewestInfoSeriesOnly(t *testing.T) {
	p, err := NewParser(datastore.EngineVLLM)
	if err != nil {
		t.Fatal(err)
	}
	page := strings.Join([]string{
		"# HELP vllm:lora_requests_info Running stats on lora requests.",
		"# TYPE vllm:lora_requests_info gauge",
		`vllm:lora_requests_info{max_lora="4",running_lora_adapters="nan",waiting_lora_adapters=""} NaN`,
		`vllm:lora_requests_info{max_lora="4",running_lora_adapters="a",waiting_lora_adapters=""} 1.7e+09`,
		`vllm:lora_requests_info{max_lora="4",running_lora_adapters="c}",waiting_lora_adapters="b"} 1.9e+09`,
		`vllm:lora_requests_info{max_lora="4",running_lora_adapters="tie",waiting_lora_adapters=""} 1.9e+09`,
		`vllm:lora_requests_info{max_lora="4",running_lora_adapters="old",waiting_lora_adapters=""} 1.8e+09 1700000000000`,
		"# TYPE vllm:num_requests_waiting gauge",
		`vllm:num_requests_waiting{model_name="m"} 1`,
		`vllm:num_requests_waiting{model_name="n"} 2`,
		"vllm:num_requests_running 0",
		"vllm:kv_cache_usage_perc 0",
	}, "\n")
	kept := string(p.filter(nil, []byte(page)))
	if n := strings.Count(kept, "vllm:lora_requests_info{"); n != 1 {
		t.Fatalf("kept %d LoRA series, want the newest only:\n%s", n, kept)
	}
	if n := strings.Count(kept, "vllm:num_requests_waiting{"); n != 2 {
		t.Fatalf("kept %d waiting series, want both (they are summed):\n%s", n, kept)
	}
	got, err := p.Parse([]byte(page))
	if err != nil {
		t.Fatal(err)
	}
	checkMetrics(t, got, want{waiting: 3, active: []string{"c}"}, waitingAdapters: []string{"b"}, maxAdapters: 4})
}

func TestParse_UnreadableInfoValueIsAnError(t *testing.T) {
	p, err := NewParser(datastore.EngineVLLM)
	if err != nil {
		t.Fatal(err)
	}
	page := "vllm:num_requests_waiting 0\nvllm:num_requests_running 0\nvllm:kv_cache_usage_perc 0\n" +
		`vllm:lora_requests_info{max_lora="4",running_lora_adapters="a",waiting_lora_adapters=""} 1` + "\n" +
		`vllm:lora_requests_info{max_lora="4",running_lora_adapters="b",waiting_lora_adapters=""} soon` + "\n"
	if m, err := p.Parse([]byte(page)); err == nil {
		t.Fatalf("Parse succeeded with %+v, want a parse error for the value \"soon\"", m)
	}
}

func TestLineValue(t *testing.T) {
	tests := []struct {
		line string
		want float64
		ok   bool
	}{
		{"a 1\n", 1, true},
		{"a{b=\"}\"} 2.5e+09\n", 2.5e9, true},
		{"a{b=\"x\"}\t3 1700000000000\n", 3, true},
		{"a{b=\"x\"} +Inf", math.Inf(1), true},
		{"a{b=\"x\"}\n", 0, false},
		{"a\n", 0, false},
		{"a{b=\"x\"} one\n", 0, false},
	}
	for _, tc := range tests {
		got, ok := lineValue([]byte(tc.line))
		if ok != tc.ok || (ok && got != tc.want) {
			t.Errorf("lineValue(%q) = %v, %v; want %v, %v", tc.line, got, ok, tc.want, tc.ok)
		}
	}
}

func TestParse_BaseModelsFromModelNameLabel(t *testing.T) {
	p, err := NewParser(datastore.EngineVLLM)
	if err != nil {
		t.Fatal(err)
	}
	page := []byte(`vllm:num_requests_waiting{model_name="llama"} 1
vllm:num_requests_waiting{model_name="llama-instruct"} 2
vllm:num_requests_running{model_name="llama"} 0
vllm:kv_cache_usage_perc{model_name="llama"} 0.5
`)
	m1, err := p.Parse(page)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(m1.BaseModels, []string{"llama", "llama-instruct"}) {
		t.Fatalf("base models %v", m1.BaseModels)
	}
	m2, _ := p.Parse(page)
	if &m1.BaseModels[0] != &m2.BaseModels[0] {
		t.Error("an unchanged set of base models was rebuilt")
	}
	m3, _ := p.Parse([]byte(`vllm:num_requests_waiting{model_name="other"} 1
vllm:num_requests_running 0
vllm:kv_cache_usage_perc 0.5
`))
	if !slices.Equal(m3.BaseModels, []string{"other"}) || !slices.Equal(m1.BaseModels, []string{"llama", "llama-instruct"}) {
		t.Fatalf("after change: %v (earlier snapshot %v)", m3.BaseModels, m1.BaseModels)
	}
}
