package bench

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"sigs.k8s.io/yaml"
)

// Workload kinds, as Workload.Kind reports them.
const (
	KindSharedPrefix = "shared-prefix"
	KindShareGPTLike = "sharegpt-like"
	KindMultiTurn    = "multi-turn"
)

// APIs a workload can speak.
const (
	APIChat        = "chat"
	APICompletions = "completions"
)

// Workload is a benchmark workload file (bench/workloads/*.yaml): what to
// send (exactly one of SharedPrefix, ShareGPT and MultiTurn, optionally
// modified by the mixes), how hard (Stages and bounds) and, for the
// comparison tool, which simulated fleet to send it to. Keys are
// snake_case, as in inference-perf, except inside Fleet, whose keys are
// the simulator's own (kebab-case). Unknown keys are errors.
type Workload struct {
	// Name labels results; it defaults to the file name without extension.
	Name string `json:"name,omitempty"`
	// Description is free text for reports.
	Description string `json:"description,omitempty"`
	// Model is the served model name requests carry (unless the LoRA mix
	// picks an adapter).
	Model string `json:"model"`
	// API is "chat" (default, /v1/chat/completions) or "completions"
	// (/v1/completions, the prompt being the messages' texts joined by
	// newlines).
	API string `json:"api,omitempty"`
	// Seed makes the text, the request order, the mixes and the arrival
	// times reproducible: every contender of a comparison gets the same.
	Seed int64 `json:"seed"`

	// SharedPrefix, ShareGPT and MultiTurn are the generators; exactly
	// one is set.
	SharedPrefix *SharedPrefix `json:"shared_prefix,omitempty"`
	ShareGPT     *ShareGPT     `json:"sharegpt,omitempty"`
	MultiTurn    *MultiTurn    `json:"multi_turn,omitempty"`

	// LoRAMix sends each request (each session, for multi-turn) to an
	// adapter picked by weight; an entry with an empty name (or the base
	// model's) keeps the base model.
	LoRAMix []WeightedName `json:"lora_mix,omitempty"`
	// PriorityMix sets HeaderObjective to an objective picked by weight; an
	// entry with an empty name sends no header.
	PriorityMix []WeightedName `json:"priority_mix,omitempty"`
	// FairnessMix sets HeaderFairnessID to a tenant picked by weight; an
	// entry with an empty name sends no header.
	FairnessMix []WeightedName `json:"fairness_mix,omitempty"`
	// SLOMix gives requests latency objectives (the x-slo-ttft-ms and
	// x-slo-tpot-ms headers) picked by weight; an entry without objectives
	// sends none. Reports then show how many requests met theirs.
	SLOMix []SLOClass `json:"slo_mix,omitempty"`

	// Vocabulary, when set, replaces the built-in words prompts are made
	// of. Lengths are in tokens, and the built-in words are one token each
	// only under pkg/openai's estimate: a comparison whose fleet tokenizes
	// with a model's tokenizer sets the words that are one token in it
	// (tokenizer.OneTokenWords), so its prompts are as long as stated. Not
	// read from files.
	Vocabulary []string `json:"-"`

	// Stages is the load ladder. It may be left out when the command line
	// gives the load instead.
	Stages []Stage `json:"stages,omitempty"`
	// Warmup, MaxDuration, MaxRequests and RequestTimeout bound the run
	// (see Options).
	Warmup         Duration `json:"warmup,omitempty"`
	MaxDuration    Duration `json:"max_duration,omitempty"`
	MaxRequests    int      `json:"max_requests,omitempty"`
	RequestTimeout Duration `json:"request_timeout,omitempty"`

	// Fleet describes the simulated fleet for the comparison tool: the
	// simulator's YAML settings (replicas, time-scale, max-num-seqs,
	// kv-cache-blocks, performance, ...), passed through untouched so this
	// package need not know the simulator. Decode it with DecodeFleet.
	Fleet json.RawMessage `json:"fleet,omitempty"`
}

// SharedPrefix is inference-perf's shared-prefix workload: NumGroups
// groups, each with its own system prompt of SystemPromptLen tokens,
// followed by one of NumPromptsPerGroup questions of QuestionLen tokens.
// Requests take the NumGroups×NumPromptsPerGroup prompts in a seeded
// random order, reshuffled every cycle. All lengths are in tokens of
// message content (the chat template adds a few).
type SharedPrefix struct {
	NumGroups          int `json:"num_groups"`
	NumPromptsPerGroup int `json:"num_prompts_per_group"`
	SystemPromptLen    int `json:"system_prompt_len"`
	QuestionLen        int `json:"question_len"`
	OutputLen          int `json:"output_len"`
}

// ShareGPT is a synthetic stand-in for the ShareGPT conversation data set
// (no download, no tokenizer): input and output lengths are log-normal with
// the given means (in tokens) and log-space standard deviations, clamped to
// [min, max]. Zero values take the defaults, which approximate ShareGPT:
// means 200 in / 180 out, sigma 1.0 / 0.9, input 4..2048, output 1..1024.
type ShareGPT struct {
	InputMean   float64 `json:"input_mean,omitempty"`
	InputSigma  float64 `json:"input_sigma,omitempty"`
	InputMin    int     `json:"input_min,omitempty"`
	InputMax    int     `json:"input_max,omitempty"`
	OutputMean  float64 `json:"output_mean,omitempty"`
	OutputSigma float64 `json:"output_sigma,omitempty"`
	OutputMin   int     `json:"output_min,omitempty"`
	OutputMax   int     `json:"output_max,omitempty"`
}

// MultiTurn is chat sessions whose history grows: each turn sends the whole
// conversation so far (system prompt, earlier questions and the server's
// own answers) plus a new user message of UserLen tokens, so each turn's
// prompt is a token prefix of the next. NumSessions sessions are open at
// once and interleave; a session that has had Turns turns (or failed) is
// replaced by a new one. When every open session is waiting for an
// answer, an arrival opens an extra session, as a new user would.
type MultiTurn struct {
	NumSessions int `json:"num_sessions"`
	Turns       int `json:"turns"`
	// SystemPromptLen is each session's own system prompt (0 for none).
	SystemPromptLen int `json:"system_prompt_len,omitempty"`
	UserLen         int `json:"user_len"`
	OutputLen       int `json:"output_len"`
}

// WeightedName is one entry of a mix: a name and its relative weight.
type WeightedName struct {
	// Name is the adapter, objective or tenant; empty for none.
	Name string `json:"name"`
	// Weight is relative to the other entries' (they need not sum to 1).
	Weight float64 `json:"weight"`
}

// SLOClass is one entry of the SLO mix.
type SLOClass struct {
	// TTFTMs and TPOTMs are the objectives in milliseconds; 0 for none.
	TTFTMs int `json:"ttft_ms,omitempty"`
	TPOTMs int `json:"tpot_ms,omitempty"`
	// Weight is relative to the other entries'.
	Weight float64 `json:"weight"`
}

// LoadWorkload reads and validates a workload file. Errors name the file
// and the field.
func LoadWorkload(path string) (*Workload, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("workload: %w", err)
	}
	w, err := ParseWorkload(data)
	if err != nil {
		return nil, fmt.Errorf("workload %s: %w", path, err)
	}
	if w.Name == "" {
		w.Name = strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))
	}
	return w, nil
}

// ParseWorkload decodes a workload strictly (unknown keys are errors),
// applies defaults and validates it.
func ParseWorkload(data []byte) (*Workload, error) {
	var w Workload
	if err := yaml.UnmarshalStrict(data, &w); err != nil {
		return nil, fmt.Errorf("decode: %w", err)
	}
	w = w.withDefaults()
	if err := w.Validate(); err != nil {
		return nil, err
	}
	return &w, nil
}

// withDefaults returns a copy of w with unset optional fields filled in;
// w itself (and its sections) are not modified.
func (w Workload) withDefaults() Workload {
	if w.API == "" {
		w.API = APIChat
	}
	if w.ShareGPT != nil {
		g := *w.ShareGPT
		w.ShareGPT = &g
		def := func(v *float64, d float64) {
			if *v == 0 {
				*v = d
			}
		}
		defInt := func(v *int, d int) {
			if *v == 0 {
				*v = d
			}
		}
		def(&g.InputMean, 200)
		def(&g.InputSigma, 1.0)
		defInt(&g.InputMin, 4)
		defInt(&g.InputMax, 2048)
		def(&g.OutputMean, 180)
		def(&g.OutputSigma, 0.9)
		defInt(&g.OutputMin, 1)
		defInt(&g.OutputMax, 1024)
	}
	return w
}

// Kind names the workload's generator.
func (w *Workload) Kind() string {
	switch {
	case w.SharedPrefix != nil:
		return KindSharedPrefix
	case w.ShareGPT != nil:
		return KindShareGPTLike
	case w.MultiTurn != nil:
		return KindMultiTurn
	}
	return ""
}

// Validate checks every field (unset optional ones taking their defaults),
// naming each one that is wrong.
func (w *Workload) Validate() error {
	d := w.withDefaults()
	w = &d
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if w.Model == "" {
		bad("model: must not be empty")
	}
	if w.Vocabulary != nil && len(w.Vocabulary) < minVocabulary {
		bad("vocabulary: %d words, want at least %d so that prompts differ", len(w.Vocabulary), minVocabulary)
	}
	if w.API != "" && w.API != APIChat && w.API != APICompletions {
		bad("api: must be %q or %q, got %q", APIChat, APICompletions, w.API)
	}
	kinds := 0
	for _, set := range []bool{w.SharedPrefix != nil, w.ShareGPT != nil, w.MultiTurn != nil} {
		if set {
			kinds++
		}
	}
	if kinds != 1 {
		bad("exactly one of shared_prefix, sharegpt and multi_turn must be set, got %d", kinds)
	}
	atLeast := func(field string, v, lo int) {
		if v < lo {
			bad("%s: must be ≥ %d, got %d", field, lo, v)
		}
	}
	if p := w.SharedPrefix; p != nil {
		atLeast("shared_prefix.num_groups", p.NumGroups, 1)
		atLeast("shared_prefix.num_prompts_per_group", p.NumPromptsPerGroup, 1)
		atLeast("shared_prefix.system_prompt_len", p.SystemPromptLen, 1)
		atLeast("shared_prefix.question_len", p.QuestionLen, 1)
		atLeast("shared_prefix.output_len", p.OutputLen, 1)
	}
	if g := w.ShareGPT; g != nil {
		for _, f := range []struct {
			name string
			v    float64
		}{{"input_mean", g.InputMean}, {"input_sigma", g.InputSigma}, {"output_mean", g.OutputMean}, {"output_sigma", g.OutputSigma}} {
			if f.v <= 0 {
				bad("sharegpt.%s: must be > 0, got %g", f.name, f.v)
			}
		}
		atLeast("sharegpt.input_min", g.InputMin, 1)
		atLeast("sharegpt.output_min", g.OutputMin, 1)
		atLeast("sharegpt.input_max", g.InputMax, g.InputMin)
		atLeast("sharegpt.output_max", g.OutputMax, g.OutputMin)
	}
	if m := w.MultiTurn; m != nil {
		atLeast("multi_turn.num_sessions", m.NumSessions, 1)
		atLeast("multi_turn.turns", m.Turns, 1)
		atLeast("multi_turn.system_prompt_len", m.SystemPromptLen, 0)
		atLeast("multi_turn.user_len", m.UserLen, 1)
		atLeast("multi_turn.output_len", m.OutputLen, 1)
		if w.API == APICompletions {
			bad("api: multi_turn needs %q", APIChat)
		}
	}
	errs = append(errs, validateMix("lora_mix", w.LoRAMix)...)
	errs = append(errs, validateMix("priority_mix", w.PriorityMix)...)
	errs = append(errs, validateMix("fairness_mix", w.FairnessMix)...)
	for i, c := range w.SLOMix {
		if c.TTFTMs < 0 || c.TPOTMs < 0 || c.TTFTMs > 3_600_000 || c.TPOTMs > 3_600_000 {
			errs = append(errs, fmt.Errorf("slo_mix[%d]: ttft_ms and tpot_ms must be between 0 and 3600000", i))
		}
		if !(c.Weight > 0) {
			errs = append(errs, fmt.Errorf("slo_mix[%d].weight: must be > 0, got %v", i, c.Weight))
		}
	}
	// Stages may come from the command line instead; Run requires them.
	if len(w.Stages) > 0 {
		errs = append(errs, (&Options{
			Stages: w.Stages, Warmup: w.Warmup.Duration, MaxDuration: w.MaxDuration.Duration,
			MaxRequests: w.MaxRequests, RequestTimeout: w.RequestTimeout.Duration,
		}).validate())
	}
	if f := bytes.TrimSpace(w.Fleet); len(f) > 0 && f[0] != '{' && !bytes.Equal(f, []byte("null")) {
		bad("fleet: must be a mapping of simulator settings")
	}
	return errors.Join(errs...)
}

func validateMix(field string, mix []WeightedName) []error {
	var errs []error
	seen := map[string]bool{}
	for i, e := range mix {
		if e.Weight <= 0 {
			errs = append(errs, fmt.Errorf("%s[%d].weight: must be > 0, got %g", field, i, e.Weight))
		}
		if seen[e.Name] {
			errs = append(errs, fmt.Errorf("%s[%d].name: %q listed twice", field, i, e.Name))
		}
		seen[e.Name] = true
	}
	return errs
}

// Options returns the run options the workload asks for; a CLI overrides
// what its flags set.
func (w *Workload) Options() Options {
	return Options{
		Stages:         w.Stages,
		Warmup:         w.Warmup.Duration,
		MaxDuration:    w.MaxDuration.Duration,
		MaxRequests:    w.MaxRequests,
		Seed:           w.Seed,
		RequestTimeout: w.RequestTimeout.Duration,
	}
}

// DecodeFleet decodes the fleet section strictly into dst (for example a
// *sim.Config holding the simulator's defaults, which the section then
// overrides), so a mistyped simulator setting fails with its name. An
// absent section leaves dst untouched.
func (w *Workload) DecodeFleet(dst any) error {
	f := bytes.TrimSpace(w.Fleet)
	if len(f) == 0 || bytes.Equal(f, []byte("null")) {
		return nil
	}
	if err := yaml.UnmarshalStrict(f, dst); err != nil {
		return fmt.Errorf("fleet: %w", err)
	}
	return nil
}

// NewSource returns a fresh generator of the workload's requests; two
// sources of one workload produce the same requests in the same order
// (multi-turn: the same sessions, interleaved as answers arrive). It
// validates the workload first, filling in defaults of a copy, so a
// Workload built in Go works as one read from YAML.
func (w *Workload) NewSource() (Source, error) {
	cp := w.withDefaults()
	if err := cp.Validate(); err != nil {
		return nil, fmt.Errorf("workload: %w", err)
	}
	w = &cp
	mix := newMixer(w)
	switch {
	case w.SharedPrefix != nil:
		return newSharedPrefixSource(w, mix), nil
	case w.ShareGPT != nil:
		return newShareGPTSource(w, mix), nil
	case w.MultiTurn != nil:
		return newMultiTurnSource(w, mix), nil
	}
	return nil, errors.New("workload: no generator section (shared_prefix, sharegpt or multi_turn)")
}
