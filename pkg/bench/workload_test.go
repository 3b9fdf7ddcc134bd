package bench

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/igw-dev/igw/pkg/openai"
)

// Chat-template markers as the simulator renders them: single tokens.
const (
	testIMStart uint32 = 0xFFFF_FF01
	testIMEnd   uint32 = 0xFFFF_FF02
)

// renderChat tokenizes messages with the simulator's chat template
// (docs/sim.md), including the generation prompt.
func renderChat(msgs []openai.ChatMessage) []uint32 {
	var dst []uint32
	for _, m := range msgs {
		dst = append(dst, testIMStart)
		dst = openai.AppendTokens(dst, m.Role)
		dst = openai.AppendTokens(dst, "\n")
		dst = openai.AppendTokens(dst, m.Content.Text)
		dst = append(dst, testIMEnd)
		dst = openai.AppendTokens(dst, "\n")
	}
	dst = append(dst, testIMStart)
	dst = openai.AppendTokens(dst, "assistant")
	return openai.AppendTokens(dst, "\n")
}

func TestVocabulary_EveryWordIsOneToken(t *testing.T) {
	seen := map[string]bool{}
	for _, w := range words {
		if len(w) < 1 || len(w) > openai.MaxWordPieceRunes || strings.Trim(w, "abcdefghijklmnopqrstuvwxyz") != "" {
			t.Errorf("word %q: want 1..%d lower-case letters", w, openai.MaxWordPieceRunes)
		}
		if seen[w] {
			t.Errorf("word %q listed twice", w)
		}
		seen[w] = true
		if openai.CountTokens(w) != 1 || openai.CountTokens(" "+w) != 1 {
			t.Errorf("word %q is not one token alone and after a space", w)
		}
	}
	g := textGen{newRand(1, 1), nil}
	for _, n := range []int{1, 2, 17, 2000} {
		if got := openai.CountTokens(g.text(n)); got != n {
			t.Errorf("text(%d) has %d tokens", n, got)
		}
	}
}

func sharedPrefixWorkload(api string) *Workload {
	return &Workload{Model: "m", API: api, Seed: 9, SharedPrefix: &SharedPrefix{
		NumGroups: 4, NumPromptsPerGroup: 3, SystemPromptLen: 50, QuestionLen: 7, OutputLen: 11,
	}}
}

func mustSource(t *testing.T, w *Workload) Source {
	t.Helper()
	if err := w.Validate(); err != nil {
		t.Fatal(err)
	}
	src, err := w.NewSource()
	if err != nil {
		t.Fatal(err)
	}
	return src
}

func TestSharedPrefix_PrefixSharingExactlyAsConfigured(t *testing.T) {
	w := sharedPrefixWorkload(APIChat)
	src := mustSource(t, w)
	cfg := w.SharedPrefix
	systems := map[int]string{}
	type key struct {
		g int
		q string
	}
	seen := map[key]int{}
	total := cfg.NumGroups * cfg.NumPromptsPerGroup
	for i := range 3 * total {
		req := src.Next()
		if len(req.Messages) != 2 || req.Messages[0].Role != "system" || req.Messages[1].Role != "user" {
			t.Fatalf("messages %+v", req.Messages)
		}
		sys, q := req.Messages[0].Content.Text, req.Messages[1].Content.Text
		if n := openai.CountTokens(sys); n != cfg.SystemPromptLen {
			t.Fatalf("system prompt has %d tokens, want %d", n, cfg.SystemPromptLen)
		}
		if n := openai.CountTokens(q); n != cfg.QuestionLen {
			t.Fatalf("question has %d tokens, want %d", n, cfg.QuestionLen)
		}
		if req.MaxTokens != cfg.OutputLen || req.Model != "m" || req.CollectAnswer {
			t.Fatalf("request %+v", req)
		}
		if prev, ok := systems[req.Group]; ok && prev != sys {
			t.Fatalf("group %d has two system prompts", req.Group)
		}
		systems[req.Group] = sys
		seen[key{req.Group, q}]++
		// Every cycle visits each prompt exactly once.
		if (i+1)%total == 0 {
			for k, n := range seen {
				if n != (i+1)/total {
					t.Fatalf("after %d requests prompt %v sent %d times", i+1, k, n)
				}
			}
		}
	}
	if len(systems) != cfg.NumGroups || len(seen) != total {
		t.Fatalf("%d groups, %d prompts; want %d, %d", len(systems), len(seen), cfg.NumGroups, total)
	}
	// Different groups differ within the first KV block (16 tokens).
	var firsts [][]uint32
	for _, s := range systems {
		first := openai.AppendTokens(nil, s)[:16]
		for _, f := range firsts {
			if slices.Equal(f, first) {
				t.Fatal("two groups share their first block")
			}
		}
		firsts = append(firsts, first)
	}
}

func TestSharedPrefix_TokenPrefixUnderBothAPIs(t *testing.T) {
	for _, api := range []string{APIChat, APICompletions} {
		src := mustSource(t, sharedPrefixWorkload(api))
		byGroup := map[int][][]uint32{}
		for range 24 {
			req := src.Next()
			var toks []uint32
			if api == APIChat {
				toks = renderChat(req.Messages)
			} else {
				if req.Messages != nil {
					t.Fatal("completions request carries messages")
				}
				toks = openai.AppendTokens(nil, req.Prompt)
				if len(toks) != 50+1+7 {
					t.Fatalf("completions prompt has %d tokens, want system 50 + newline + question 7", len(toks))
				}
			}
			byGroup[req.Group] = append(byGroup[req.Group], toks)
		}
		// Within a group, prompts share exactly the system prompt's tokens
		// (plus, for chat, the template around it).
		want := 50
		if api == APIChat {
			want = len(renderChat([]openai.ChatMessage{message("system", "")})) - 3 + 50 // minus generation prompt
		}
		for g, ps := range byGroup {
			for _, p := range ps[1:] {
				n := commonPrefix(ps[0], p)
				if n < want {
					t.Fatalf("%s group %d: prompts share %d tokens, want ≥ %d", api, g, n, want)
				}
			}
		}
	}
}

func commonPrefix(a, b []uint32) int {
	n := 0
	for n < len(a) && n < len(b) && a[n] == b[n] {
		n++
	}
	return n
}

func TestSharedPrefix_SameSeedSameRequests(t *testing.T) {
	a, b := mustSource(t, sharedPrefixWorkload(APIChat)), mustSource(t, sharedPrefixWorkload(APIChat))
	w2 := sharedPrefixWorkload(APIChat)
	w2.Seed = 10
	c := mustSource(t, w2)
	differs := false
	for range 30 {
		ra, rb, rc := a.Next(), b.Next(), c.Next()
		if ra.Group != rb.Group || ra.Messages[1].Content != rb.Messages[1].Content {
			t.Fatal("same seed gave different requests")
		}
		differs = differs || ra.Messages[0].Content != rc.Messages[0].Content
	}
	if !differs {
		t.Fatal("different seeds gave the same text")
	}
}

func TestShareGPT_LengthsAsConfigured(t *testing.T) {
	w := &Workload{Model: "m", Seed: 3, ShareGPT: &ShareGPT{}} // defaults
	src := mustSource(t, w)
	const n = 20000
	var in, out float64
	for range n {
		req := src.Next()
		k := openai.CountTokens(req.Messages[0].Content.Text)
		if k < 4 || k > 2048 || req.MaxTokens < 1 || req.MaxTokens > 1024 {
			t.Fatalf("lengths %d in / %d out outside the clamps", k, req.MaxTokens)
		}
		in += float64(k)
		out += float64(req.MaxTokens)
	}
	in, out = in/n, out/n
	// Sample means of log-normals with sigma ~1 have a few percent of
	// spread at this size; clamping pulls them slightly down.
	if math.Abs(in-200)/200 > 0.06 || math.Abs(out-180)/180 > 0.06 {
		t.Fatalf("mean lengths %.1f in / %.1f out, want about 200 / 180", in, out)
	}
}

func TestMultiTurn_HistoryGrowsAsTokenPrefix(t *testing.T) {
	w := &Workload{Model: "m", Seed: 5, MultiTurn: &MultiTurn{NumSessions: 3, Turns: 4, SystemPromptLen: 20, UserLen: 6, OutputLen: 5}}
	src := mustSource(t, w)
	type state struct {
		prompt []uint32 // previous turn's prompt followed by its answer
		turns  int
	}
	sessions := map[int]*state{}
	var order []int
	for i := range 3 * 4 {
		req := src.Next()
		order = append(order, req.Group)
		if !req.CollectAnswer || req.MaxTokens != 5 {
			t.Fatalf("request %+v", req)
		}
		toks := renderChat(req.Messages)
		st := sessions[req.Group]
		if st == nil {
			st = &state{}
			sessions[req.Group] = st
			if req.Turn != 0 || len(req.Messages) != 2 || openai.CountTokens(req.Messages[0].Content.Text) != 20 {
				t.Fatalf("first turn %+v", req)
			}
		} else {
			if req.Turn != st.turns {
				t.Fatalf("session %d: turn %d, want %d", req.Group, req.Turn, st.turns)
			}
			if commonPrefix(st.prompt, toks) != len(st.prompt) {
				t.Fatalf("session %d turn %d: previous prompt + answer is not a token prefix", req.Group, req.Turn)
			}
			if len(toks) <= len(st.prompt) {
				t.Fatalf("session %d: history did not grow", req.Group)
			}
		}
		if got := openai.CountTokens(req.Messages[len(req.Messages)-1].Content.Text); got != 6 {
			t.Fatalf("user message has %d tokens", got)
		}
		answer := " the of and to in"
		st.prompt = openai.AppendTokens(toks, answer)
		st.turns++
		src.Complete(req, &RequestResult{}, answer)
		_ = i
	}
	// Sessions interleave: each of the first three requests is a new one,
	// and the next three continue them in the same order.
	if !slices.Equal(order[:6], []int{0, 1, 2, 0, 1, 2}) {
		t.Fatalf("session order %v, want interleaved 0 1 2 0 1 2 ...", order)
	}
	// After Turns turns a session is replaced by a fresh one.
	if req := src.Next(); req.Group != 3 || req.Turn != 0 {
		t.Fatalf("after finishing, got session %d turn %d; want new session 3 turn 0", req.Group, req.Turn)
	}
}

func TestMultiTurn_FailedSessionIsReplacedAndBusyPoolGrows(t *testing.T) {
	w := &Workload{Model: "m", Seed: 5, MultiTurn: &MultiTurn{NumSessions: 1, Turns: 3, UserLen: 2, OutputLen: 2}}
	src := mustSource(t, w)
	a := src.Next()
	b := src.Next() // a still waiting: a new session opens
	if a.Group == b.Group || len(a.Messages) != 1 {
		t.Fatalf("groups %d %d, messages %d", a.Group, b.Group, len(a.Messages))
	}
	src.Complete(a, &RequestResult{ErrorKind: ErrHTTP}, "")
	src.Complete(b, &RequestResult{}, " ok")
	// b continues; a failed and the pool (1 session) is already full.
	if c := src.Next(); c.Group != b.Group || c.Turn != 1 {
		t.Fatalf("got session %d turn %d, want %d turn 1", c.Group, c.Turn, b.Group)
	}
}

func TestMixes_PickByWeight(t *testing.T) {
	w := sharedPrefixWorkload(APIChat)
	w.LoRAMix = []WeightedName{{"a", 3}, {"", 1}}
	w.PriorityMix = []WeightedName{{"critical", 1}, {"sheddable", 1}}
	w.FairnessMix = []WeightedName{{"t1", 1}}
	src := mustSource(t, w)
	counts := map[string]int{}
	const n = 8000
	for range n {
		req := src.Next()
		counts["model="+req.Model]++
		counts["obj="+req.Objective]++
		counts["fair="+req.FairnessID]++
	}
	for k, want := range map[string]float64{"model=a": 0.75, "model=m": 0.25, "obj=critical": 0.5, "obj=sheddable": 0.5, "fair=t1": 1} {
		if got := float64(counts[k]) / n; math.Abs(got-want) > 0.025 {
			t.Errorf("%s share %.3f, want %.2f", k, got, want)
		}
	}
}

func TestParseWorkload_StrictAndNamesFields(t *testing.T) {
	base := "model: m\nstages: [{qps: 1, duration: 1s}]\n"
	for _, tc := range []struct {
		name, yaml, want string
	}{
		{"unknown field", base + "shared_prefix: {num_groups: 1, num_prompts_per_group: 1, system_prompt_len: 1, question_len: 1, output_len: 1, num_group: 2}\n", `unknown field "num_group"`},
		{"unknown top-level", base + "sharegpt: {}\nqsp: 3\n", `unknown field "qsp"`},
		{"no generator", base, "exactly one of shared_prefix, sharegpt and multi_turn"},
		{"two generators", base + "sharegpt: {}\nmulti_turn: {num_sessions: 1, turns: 1, user_len: 1, output_len: 1}\n", "exactly one of"},
		{"bad length", base + "shared_prefix: {num_groups: 0, num_prompts_per_group: 1, system_prompt_len: 1, question_len: 1, output_len: 1}\n", "shared_prefix.num_groups: must be ≥ 1"},
		{"bad sigma", base + "sharegpt: {input_sigma: -1}\n", "sharegpt.input_sigma: must be > 0"},
		{"bad clamp", base + "sharegpt: {output_min: 10, output_max: 5}\n", "sharegpt.output_max: must be ≥ 10"},
		{"bad turns", base + "multi_turn: {num_sessions: 1, turns: 0, user_len: 1, output_len: 1}\n", "multi_turn.turns: must be ≥ 1"},
		{"bad weight", base + "sharegpt: {}\nlora_mix: [{name: a, weight: 0}]\n", "lora_mix[0].weight: must be > 0"},
		{"duplicate mix", base + "sharegpt: {}\npriority_mix: [{name: a, weight: 1}, {name: a, weight: 1}]\n", `priority_mix[1].name: "a" listed twice`},
		{"bad stage", "model: m\nsharegpt: {}\nstages: [{qps: 1, duration: 1s}, {duration: 1s}]\n", "stages[1]: set qps or concurrency"},
		{"bad duration", "model: m\nsharegpt: {}\nstages: [{qps: 1, duration: soon}]\n", `invalid duration "soon"`},
		{"no model", "sharegpt: {}\nstages: [{qps: 1, duration: 1s}]\n", "model: must not be empty"},
		{"bad api", base + "api: grpc\nsharegpt: {}\n", `api: must be "chat" or "completions"`},
		{"multi-turn completions", base + "api: completions\nmulti_turn: {num_sessions: 1, turns: 1, user_len: 1, output_len: 1}\n", `api: multi_turn needs "chat"`},
		{"fleet not a map", base + "sharegpt: {}\nfleet: [1]\n", "fleet: must be a mapping"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseWorkload([]byte(tc.yaml))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestLoadWorkload_NamesFileAndDefaultsName(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "mine.yaml")
	if err := os.WriteFile(p, []byte("model: m\nsharegpt: {}\nstages: [{concurrency: 2, duration: 1m}]\nfleet: {replicas: 2, time-scale: 10}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	w, err := LoadWorkload(p)
	if err != nil {
		t.Fatal(err)
	}
	if w.Name != "mine" || w.Kind() != KindShareGPTLike || w.API != APIChat || w.ShareGPT.InputMean != 200 || w.ShareGPT.OutputMean != 180 {
		t.Fatalf("workload %+v / %+v", w, w.ShareGPT)
	}
	if o := w.Options(); len(o.Stages) != 1 || o.Stages[0].Concurrency != 2 || o.Stages[0].Duration.Duration != time.Minute {
		t.Fatalf("options %+v", o)
	}
	// The fleet section passes through to whoever knows the simulator.
	var fleet struct {
		Replicas  int     `json:"replicas"`
		TimeScale float64 `json:"time-scale"`
	}
	if err := w.DecodeFleet(&fleet); err != nil || fleet.Replicas != 2 || fleet.TimeScale != 10 {
		t.Fatalf("fleet %+v, %v", fleet, err)
	}
	var strict struct {
		Replicas int `json:"replicas"`
	}
	if err := w.DecodeFleet(&strict); err == nil || !strings.Contains(err.Error(), `unknown field "time-scale"`) {
		t.Fatalf("strict fleet decode: %v", err)
	}

	if err := os.WriteFile(p, []byte("model: m\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadWorkload(p); err == nil || !strings.Contains(err.Error(), p) {
		t.Fatalf("error %v does not name the file", err)
	}
	if _, err := LoadWorkload(filepath.Join(dir, "none.yaml")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
}

func TestWorkloadFiles_LoadAndGenerate(t *testing.T) {
	files, _ := filepath.Glob("../../bench/workloads/*.yaml")
	if len(files) < 5 {
		t.Fatalf("found %d workload files, want at least 5", len(files))
	}
	kinds := map[string]bool{}
	for _, f := range files {
		w, err := LoadWorkload(f)
		if err != nil {
			t.Errorf("%v", err)
			continue
		}
		kinds[w.Kind()] = true
		var fleet struct {
			Replicas int `json:"replicas"`
		}
		// Not strict here: this package does not know every simulator key.
		if len(w.Fleet) == 0 {
			t.Errorf("%s: no fleet section", f)
		}
		src, err := w.NewSource()
		if err != nil {
			t.Fatal(err)
		}
		for range 5 {
			if req := src.Next(); req.MaxTokens < 1 || (len(req.Messages) == 0 && req.Prompt == "") {
				t.Fatalf("%s: request %+v", f, req)
			}
		}
		_ = fleet
	}
	for _, k := range []string{KindSharedPrefix, KindShareGPTLike, KindMultiTurn} {
		if !kinds[k] {
			t.Errorf("no workload file of kind %s", k)
		}
	}
}
