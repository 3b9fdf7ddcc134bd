package modelserver

import "github.com/igw-dev/igw/pkg/datastore"

// aggregation says how the matching series of one family become one number.
type aggregation uint8

const (
	// sumSeries adds the series up: counts of requests, each of which
	// competes for the same server whatever its model_name.
	sumSeries aggregation = iota
	// maxSeries takes the largest series: fractions and sizes, where the
	// most loaded cache is the one that limits the server.
	maxSeries
)

// source is one place a concept can be read from.
type source struct {
	// family is the metric family name as exported by the engine.
	family string
	// whereLabel and whereValue, when set, restrict the family to the
	// series carrying that label value (Triton multiplexes several
	// quantities on one family).
	whereLabel, whereValue string
	// fromLabel, when set, reads the number from this label of the series
	// with the largest sample value (info-style metrics whose value is a
	// constant or a timestamp) instead of from the sample value.
	fromLabel string
	agg       aggregation
}

// sumOf reads family's sample values, added across series.
func sumOf(family string) source { return source{family: family, agg: sumSeries} }

// maxOf reads family's largest sample value.
func maxOf(family string) source { return source{family: family, agg: maxSeries} }

// labelOf reads a number from label name of family's newest (largest-valued) series.
func labelOf(family, name string) source { return source{family: family, fromLabel: name} }

// where restricts s to the series whose label l equals v.
func (s source) where(l, v string) source {
	s.whereLabel, s.whereValue = l, v
	return s
}

// mapping is how one engine exports the concepts igw reads. Every concept
// lists its sources in order of preference: the first family present on the
// page wins, which is how newer names fall back to older ones.
type mapping struct {
	// Required: a scrape without them fails.
	waiting, running, kvUsage []source
	// Optional: left at zero when absent or unparsable.
	blockSize, numBlocks []source
	// lora is a vLLM-style LoRA info family (labels running_lora_adapters,
	// waiting_lora_adapters, max_lora); "" when the engine has none.
	lora string
}

// LoRA info labels of vllm:lora_requests_info.
const (
	loraRunningLabel = "running_lora_adapters"
	loraWaitingLabel = "waiting_lora_adapters"
	loraMaxLabel     = "max_lora"
)

// mappingFor returns the metric mapping of engine (REFERENCE §4). It is
// the only place that knows engine metric names.
func mappingFor(engine datastore.Engine) (mapping, bool) {
	switch engine {
	case datastore.EngineVLLM:
		return mapping{
			waiting: []source{sumOf("vllm:num_requests_waiting")},
			running: []source{sumOf("vllm:num_requests_running")},
			kvUsage: []source{
				maxOf("vllm:kv_cache_usage_perc"),
				maxOf("vllm:gpu_cache_usage_perc"), // vLLM before the V1 engine
			},
			blockSize: []source{labelOf("vllm:cache_config_info", "block_size")},
			numBlocks: []source{labelOf("vllm:cache_config_info", "num_gpu_blocks")},
			lora:      "vllm:lora_requests_info",
		}, true
	case datastore.EngineSGLang:
		return mapping{
			waiting:   []source{sumOf("sglang:num_queue_reqs")},
			running:   []source{sumOf("sglang:num_running_reqs")},
			kvUsage:   []source{maxOf("sglang:token_usage")},
			blockSize: []source{labelOf("sglang:cache_config_info", "page_size")},
			numBlocks: []source{labelOf("sglang:cache_config_info", "num_pages")},
		}, true
	case datastore.EngineTRTLLMServe:
		return mapping{
			waiting:   []source{sumOf("trtllm_num_requests_waiting")},
			running:   []source{sumOf("trtllm_num_requests_running")},
			kvUsage:   []source{maxOf("trtllm_kv_cache_utilization")},
			blockSize: []source{maxOf("trtllm_kv_cache_tokens_per_block")},
			numBlocks: []source{maxOf("trtllm_kv_cache_max_blocks")},
		}, true
	case datastore.EngineTritonTRT:
		return mapping{
			waiting: []source{sumOf("nv_trt_llm_request_metrics").where("request_type", "waiting")},
			running: []source{sumOf("nv_trt_llm_request_metrics").where("request_type", "scheduled")},
			kvUsage: []source{maxOf("nv_trt_llm_kv_cache_block_metrics").where("kv_cache_block_type", "fraction")},
		}, true
	}
	return mapping{}, false
}

// families lists, without duplicates, every family m reads: the only lines
// of a page the parser keeps. newest[i] is true when only the newest
// (largest-valued) series of families[i] is ever read: info-style families
// such as the LoRA info, whose old series linger on the page. The parser
// drops their older series before decoding.
func (m *mapping) families() (families []string, newest []bool) {
	index := func(name string) int {
		for i, have := range families {
			if have == name {
				return i
			}
		}
		families = append(families, name)
		newest = append(newest, true)
		return len(families) - 1
	}
	for _, group := range [][]source{m.waiting, m.running, m.kvUsage, m.blockSize, m.numBlocks} {
		for _, s := range group {
			i := index(s.family)
			if s.fromLabel == "" || s.whereLabel != "" {
				newest[i] = false // aggregated over series, or filtered by label
			}
		}
	}
	if m.lora != "" {
		index(m.lora)
	}
	return families, newest
}
