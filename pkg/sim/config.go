package sim

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"sigs.k8s.io/yaml"
)

// Engine kinds the simulator can impersonate; they select metric names.
const (
	EngineVLLM   = "vllm"
	EngineSGLang = "sglang"
)

// Duration is a time.Duration that reads "200ms"-style strings from YAML.
type Duration struct{ time.Duration }

// UnmarshalJSON accepts a Go duration string or a number of seconds.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := yaml.Unmarshal(b, &s); err == nil && len(b) > 0 && b[0] == '"' {
		v, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("invalid duration %q: %w", s, err)
		}
		d.Duration = v
		return nil
	}
	var secs float64
	if err := yaml.Unmarshal(b, &secs); err != nil {
		return fmt.Errorf("invalid duration %s: want a string like \"200ms\" or seconds", b)
	}
	d.Duration = time.Duration(secs * float64(time.Second))
	return nil
}

// MarshalJSON writes the duration as a Go duration string.
func (d Duration) MarshalJSON() ([]byte, error) { return []byte(`"` + d.String() + `"`), nil }

// Config is everything one `igw sim` process needs. YAML keys are the flag
// names, so a config file and a command line say the same thing the same
// way.
type Config struct {
	Address         string   `json:"address"`
	Port            int      `json:"port"`
	Replicas        int      `json:"replicas"`
	Model           string   `json:"model"`
	ServedModelName string   `json:"served-model-name"`
	Engine          string   `json:"engine"`
	LoRAModules     []string `json:"lora-modules"`
	Seed            int64    `json:"seed"`

	// Engine limits, with vLLM's names and defaults.
	MaxNumSeqs          int `json:"max-num-seqs"`
	MaxNumBatchedTokens int `json:"max-num-batched-tokens"`
	KVCacheBlocks       int `json:"kv-cache-blocks"`
	BlockSize           int `json:"block-size"`
	MaxModelLen         int `json:"max-model-len"`
	MaxLoRAs            int `json:"max-loras"`

	Perf Performance `json:"performance"`

	// LoRALoadDelay is the time a step spends swapping an adapter into one
	// of the max-loras GPU slots.
	LoRALoadDelay Duration `json:"lora-load-delay"`
	// TimeScale divides every simulated duration: 10 runs ten times faster
	// than the modelled GPU. Metrics report simulated (unscaled) seconds.
	TimeScale float64 `json:"time-scale"`

	// Fault injection.
	FailureRate   float64 `json:"failure-rate"`
	FailureStatus int     `json:"failure-status"`
	// KVFullStatus, when set, answers a request the KV cache cannot admit
	// now with this HTTP status instead of queueing it, as some engines
	// do (and as vLLM does not); 0 queues it.
	KVFullStatus int      `json:"kv-full-status"`
	StartupDelay Duration `json:"startup-delay"`

	// KVEvents is vLLM's --kv-events-config: when enabled, every replica
	// publishes its KV-cache events (blocks stored, evicted, cleared) over
	// ZeroMQ, so a router can track exactly what each replica caches.
	KVEvents *KVEventsConfig `json:"kv-events-config,omitempty"`

	// Tokenizer is vLLM's --tokenizer: a directory in the Hugging Face
	// layout (tokenizer.json, tokenizer_config.json with chat_template).
	// When set, prompts are tokenized with it and rendered with its chat
	// template, so the token ids in KV-cache events are the ones igw's
	// precise-prefix-cache-scorer computes from the same files; otherwise
	// the simulator's built-in tokenizer and ChatML-like template serve.
	Tokenizer string `json:"tokenizer,omitempty"`
}

// KVEventsConfig is vLLM's KVEventsConfig, with its JSON field names, so
// the --kv-events-config a vLLM deployment uses works here unchanged.
type KVEventsConfig struct {
	// EnableKVCacheEvents turns publishing on.
	EnableKVCacheEvents bool `json:"enable_kv_cache_events"`
	// Publisher is "zmq" (the default once enabled) or "null".
	Publisher string `json:"publisher,omitempty"`
	// Endpoint is where replica 0's PUB socket binds, e.g. "tcp://*:5557";
	// replica i binds port+i (port 0: an ephemeral port for each).
	Endpoint string `json:"endpoint,omitempty"`
	// ReplayEndpoint is vLLM's replay ROUTER socket; the simulator has none
	// and rejects the setting rather than ignore it.
	ReplayEndpoint string `json:"replay_endpoint,omitempty"`
	// BufferSteps is how many batches vLLM keeps for replay; accepted and
	// unused, since there is no replay.
	BufferSteps int `json:"buffer_steps,omitempty"`
	// HWM is the PUB socket's high-water mark in messages: past it,
	// messages to slow subscribers are dropped (sequence numbers show it).
	HWM int `json:"hwm,omitempty"`
	// MaxQueueSize bounds the batches waiting to be encoded and sent; a full
	// queue drops the batch, and the gap in sequence numbers shows it.
	MaxQueueSize int `json:"max_queue_size,omitempty"`
	// Topic is the first frame of every message. Empty, the simulator uses
	// the convention kv@<replica address>@<served model name>.
	Topic string `json:"topic,omitempty"`
}

// Enabled reports whether events are published.
func (k *KVEventsConfig) Enabled() bool {
	return k != nil && k.EnableKVCacheEvents && k.Publisher != "null"
}

// withDefaults fills vLLM's defaults.
func (k KVEventsConfig) withDefaults() KVEventsConfig {
	if k.Publisher == "" {
		k.Publisher = "zmq"
	}
	if k.Endpoint == "" {
		k.Endpoint = "tcp://*:5557"
	}
	if k.HWM == 0 {
		k.HWM = 100_000
	}
	if k.MaxQueueSize == 0 {
		k.MaxQueueSize = 100_000
	}
	return k
}

// ParseKVEventsConfig reads vLLM's --kv-events-config JSON. Unknown fields
// are errors, as everywhere in igw's configuration.
func ParseKVEventsConfig(s string) (*KVEventsConfig, error) {
	var k KVEventsConfig
	dec := json.NewDecoder(strings.NewReader(s))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&k); err != nil {
		return nil, fmt.Errorf("kv-events-config: %w", err)
	}
	return &k, nil
}

// hostPort splits the endpoint "tcp://host:port".
func (k *KVEventsConfig) hostPort() (host string, port int, err error) {
	rest, ok := strings.CutPrefix(k.Endpoint, "tcp://")
	if !ok {
		return "", 0, fmt.Errorf("kv-events-config: endpoint %q: only tcp://host:port is supported", k.Endpoint)
	}
	h, p, err := net.SplitHostPort(rest)
	if err != nil {
		return "", 0, fmt.Errorf("kv-events-config: endpoint %q: %w", k.Endpoint, err)
	}
	n, err := strconv.Atoi(p)
	if err != nil || n < 0 || n > 65535 {
		return "", 0, fmt.Errorf("kv-events-config: endpoint %q: bad port", k.Endpoint)
	}
	return h, n, nil
}

// Performance is the step-time model: how long one engine step takes given
// what it computes. See docs/sim.md for the formula and its calibration.
type Performance struct {
	// StepFloor is the fixed cost of a step (reading the weights once).
	StepFloor Duration `json:"step-floor"`
	// PrefillTokensPerSecond is the prefill throughput of uncached prompt
	// tokens.
	PrefillTokensPerSecond float64 `json:"prefill-tokens-per-second"`
	// ContextTokenCost is the cost per resident context token of the
	// sequences in the step (reading their KV cache).
	ContextTokenCost Duration `json:"context-token-cost"`
	// DecodeSeqCost is the extra cost per decoding sequence.
	DecodeSeqCost Duration `json:"decode-seq-cost"`
	// MeanOutputTokens is the median of sampled output lengths when the
	// request does not pin its length with ignore_eos.
	MeanOutputTokens int `json:"mean-output-tokens"`
}

// DefaultConfig is calibrated to Llama-3.1-8B on one H100 (docs/sim.md).
func DefaultConfig() Config {
	return Config{
		Address:             "127.0.0.1",
		Port:                8000,
		Replicas:            1,
		Model:               "meta-llama/Llama-3.1-8B-Instruct",
		Engine:              EngineVLLM,
		MaxNumSeqs:          256,
		MaxNumBatchedTokens: 8192,
		KVCacheBlocks:       26000,
		BlockSize:           16,
		MaxModelLen:         131072,
		MaxLoRAs:            4,
		LoRALoadDelay:       Duration{100 * time.Millisecond},
		TimeScale:           1,
		FailureStatus:       500,
		Perf: Performance{
			StepFloor:              Duration{5 * time.Millisecond},
			PrefillTokensPerSecond: 30000,
			ContextTokenCost:       Duration{40 * time.Nanosecond},
			DecodeSeqCost:          Duration{30 * time.Microsecond},
			MeanOutputTokens:       128,
		},
	}
}

// LoadConfigFile overlays the YAML file at path onto cfg. Unknown keys are
// errors, so a typo never silently falls back to a default.
func LoadConfigFile(path string, cfg *Config) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("sim config: %w", err)
	}
	if err := yaml.UnmarshalStrict(data, cfg); err != nil {
		return fmt.Errorf("sim config %s: %w", path, err)
	}
	return nil
}

// ServedName is the model name clients must send.
func (c *Config) ServedName() string {
	if c.ServedModelName != "" {
		return c.ServedModelName
	}
	return c.Model
}

// Validate rejects settings that would make the engine meaningless, naming
// the setting.
func (c *Config) Validate() error {
	var errs []error
	check := func(ok bool, format string, args ...any) {
		if !ok {
			errs = append(errs, fmt.Errorf(format, args...))
		}
	}
	check(c.Port > 0 && c.Port+c.Replicas-1 <= 65535, "port: %d with %d replicas is outside 1..65535", c.Port, c.Replicas)
	check(c.Replicas >= 1 && c.Replicas <= 1024, "replicas: must be 1..1024, got %d", c.Replicas)
	check(c.Model != "", "model: must not be empty")
	check(c.Engine == EngineVLLM || c.Engine == EngineSGLang, "engine: must be vllm or sglang, got %q", c.Engine)
	check(c.MaxNumSeqs >= 1, "max-num-seqs: must be ≥ 1, got %d", c.MaxNumSeqs)
	check(c.MaxNumBatchedTokens >= 1, "max-num-batched-tokens: must be ≥ 1, got %d", c.MaxNumBatchedTokens)
	check(c.BlockSize >= 1, "block-size: must be ≥ 1, got %d", c.BlockSize)
	check(c.KVCacheBlocks >= 1, "kv-cache-blocks: must be ≥ 1, got %d", c.KVCacheBlocks)
	check(c.MaxModelLen >= 2, "max-model-len: must be ≥ 2, got %d", c.MaxModelLen)
	check(c.MaxLoRAs >= 1, "max-loras: must be ≥ 1, got %d", c.MaxLoRAs)
	check(c.LoRALoadDelay.Duration >= 0, "lora-load-delay: must not be negative")
	check(c.TimeScale > 0, "time-scale: must be > 0, got %g", c.TimeScale)
	check(c.FailureRate >= 0 && c.FailureRate <= 1, "failure-rate: must be 0..1, got %g", c.FailureRate)
	check(c.FailureStatus >= 400 && c.FailureStatus <= 599, "failure-status: must be 400..599, got %d", c.FailureStatus)
	check(c.KVFullStatus == 0 || c.KVFullStatus >= 400 && c.KVFullStatus <= 599, "kv-full-status: must be 0 or 400..599, got %d", c.KVFullStatus)
	check(c.StartupDelay.Duration >= 0, "startup-delay: must not be negative")
	if c.KVEvents.Enabled() {
		k := c.KVEvents.withDefaults()
		check(k.Publisher == "zmq", "kv-events-config: publisher must be zmq or null, got %q", k.Publisher)
		check(k.ReplayEndpoint == "", "kv-events-config: replay_endpoint is not supported by the simulator")
		check(k.HWM >= 0, "kv-events-config: hwm must not be negative")
		check(k.MaxQueueSize >= 0, "kv-events-config: max_queue_size must not be negative")
		if _, port, err := k.hostPort(); err != nil {
			errs = append(errs, err)
		} else {
			check(port == 0 || port+c.Replicas-1 <= 65535, "kv-events-config: endpoint port %d with %d replicas is outside 1..65535", port, c.Replicas)
		}
	}
	check(c.Perf.StepFloor.Duration >= 0, "performance.step-floor: must not be negative")
	check(c.Perf.PrefillTokensPerSecond > 0, "performance.prefill-tokens-per-second: must be > 0")
	check(c.Perf.ContextTokenCost.Duration >= 0, "performance.context-token-cost: must not be negative")
	check(c.Perf.DecodeSeqCost.Duration >= 0, "performance.decode-seq-cost: must not be negative")
	check(c.Perf.MeanOutputTokens >= 1, "performance.mean-output-tokens: must be ≥ 1")
	seen := map[string]bool{}
	for _, name := range c.LoRAModules {
		check(name != "", "lora-modules: empty adapter name")
		check(name != c.ServedName(), "lora-modules: adapter %q has the base model's name", name)
		check(!seen[name], "lora-modules: adapter %q listed twice", name)
		seen[name] = true
	}
	return errors.Join(errs...)
}
