package preciseprefix_test

import (
	"context"
	"strings"
	"testing"

	"github.com/igw-dev/igw/pkg/datastore"
	"github.com/igw-dev/igw/pkg/kvevents"
	"github.com/igw-dev/igw/pkg/scheduling"
	"github.com/igw-dev/igw/pkg/scheduling/plugins"
	"github.com/igw-dev/igw/pkg/scheduling/plugins/preciseprefix"
)

// fakeHasher stands in for part 3's tokenizer: each prompt is given its
// engine block hashes by the test.
type fakeHasher struct {
	hashes map[string][]uint64
	calls  int
}

func (f *fakeHasher) BlockHashes(req *scheduling.Request) ([]uint64, uint32, bool) {
	f.calls++
	h, ok := f.hashes[string(req.Prompt)]
	return h, kvevents.LoRAKey(req.LoRAAdapter, 0, false), ok
}

func newScorer(t *testing.T, p preciseprefix.Parameters) *preciseprefix.Scorer {
	t.Helper()
	s, err := preciseprefix.New("precise", p)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func candidates(addrs ...string) []scheduling.Candidate {
	out := make([]scheduling.Candidate, len(addrs))
	for i, a := range addrs {
		out[i] = scheduling.Candidate{Endpoint: datastore.NewEndpoint(a, a, "default/pool", datastore.EngineVLLM, nil), Metrics: &datastore.Metrics{}}
	}
	return out
}

func stored(hashes ...uint64) []kvevents.Event {
	return []kvevents.Event{{Kind: kvevents.KindBlockStored, BlockHashes: hashes, BlockSize: 16}}
}

func TestScorer_ScoresByWhatEndpointsReportHolding(t *testing.T) {
	ix := kvevents.NewIndex(0)
	ix.Apply("a:8000", stored(1, 2, 3, 4))
	ix.Apply("b:8000", stored(1))
	ix.Apply("c:8000", stored(2, 3, 4)) // not a prefix: block 1 missing
	h := &fakeHasher{hashes: map[string][]uint64{"p": {1, 2, 3, 4}}}
	s := newScorer(t, preciseprefix.Parameters{})
	s.Attach(ix, h)
	req := &scheduling.Request{Prompt: []byte("p")}
	cands := candidates("a:8000", "b:8000", "c:8000", "d:8000")
	scores := make([]float64, len(cands))
	s.Score(context.Background(), req, cands, scores)
	want := []float64{1, 0.25, 0, 0}
	for i := range want {
		if scores[i] != want[i] {
			t.Errorf("%s scored %v, want %v", cands[i].Endpoint.Address, scores[i], want[i])
		}
	}
	// A second plugin call in the same cycle reuses the hashes.
	s.Score(context.Background(), req, cands, scores)
	if h.calls != 1 {
		t.Errorf("prompt hashed %d times, want once per request", h.calls)
	}
	// The engine evicts block 2 on a: its score follows at once.
	ix.Apply("a:8000", []kvevents.Event{{Kind: kvevents.KindBlockRemoved, BlockHashes: []uint64{2}}})
	s.Score(context.Background(), &scheduling.Request{Prompt: []byte("p")}, cands, scores)
	if scores[0] != 0.25 {
		t.Errorf("after eviction a scored %v, want 0.25", scores[0])
	}
}

func TestScorer_ApproximateWithoutIndexOrHasher(t *testing.T) {
	s := newScorer(t, preciseprefix.Parameters{})
	cands := candidates("a:8000", "b:8000")
	scores := []float64{0.7, 0.7}
	prompt := []byte(strings.Repeat("a long shared system prompt. ", 20))
	req := &scheduling.Request{Prompt: prompt}
	s.Score(context.Background(), req, cands, scores)
	if scores[0] != 0 || scores[1] != 0 {
		t.Errorf("unattached scorer scored %v before anything was routed", scores)
	}
	// Approximate matching: it remembers where it sent the prompt.
	s.PreRequest(context.Background(), req, nil, cands[1].Endpoint)
	s.Score(context.Background(), &scheduling.Request{Prompt: prompt}, cands, scores)
	if scores[0] != 0 || scores[1] != 1 {
		t.Errorf("approximate fallback scored %v, want [0 1]", scores)
	}
	ix := kvevents.NewIndex(0)
	ix.Apply("a:8000", stored(1))
	s.Attach(ix, &fakeHasher{hashes: map[string][]uint64{}})
	scores[0] = 0.7
	s.Score(context.Background(), &scheduling.Request{Prompt: []byte("unknown model")}, cands[:1], scores[:1])
	if scores[0] != 0 {
		t.Errorf("unhashable prompt scored %v", scores[0])
	}
}

func TestScorer_LoRAAndMaxBlocks(t *testing.T) {
	ix := kvevents.NewIndex(0)
	ev := stored(1, 2, 3, 4)
	ev[0].LoRAName = "sql"
	ix.Apply("a:8000", ev)
	ix.Apply("b:8000", stored(1)) // b holds the base model's first block
	s := newScorer(t, preciseprefix.Parameters{MaxBlocksToMatch: 2})
	s.Attach(ix, &fakeHasher{hashes: map[string][]uint64{"p": {1, 2, 3, 4}}})
	cands := candidates("a:8000", "b:8000")
	scores := make([]float64, 2)
	s.Score(context.Background(), &scheduling.Request{Prompt: []byte("p")}, cands, scores)
	if scores[0] != 0 {
		t.Errorf("base-model request scored %v on adapter blocks", scores[0])
	}
	s.Score(context.Background(), &scheduling.Request{Prompt: []byte("p"), LoRAAdapter: "sql"}, cands, scores)
	if scores[0] != 1 {
		t.Errorf("sql request scored %v, want 1 (2 of at most 2 blocks)", scores[0])
	}
}

func TestFactory_FromEndpointPickerConfig(t *testing.T) {
	yaml := `apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: precise-prefix-cache-scorer
  parameters:
    maxBlocksToMatch: 64
- type: max-score-picker
schedulingProfiles:
- name: default
  plugins:
  - pluginRef: precise-prefix-cache-scorer
    weight: 3
  - pluginRef: max-score-picker
`
	sched, err := plugins.NewSchedulerFromYAML([]byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	var s *preciseprefix.Scorer
	for _, p := range sched.Plugins() {
		if ps, ok := p.(*preciseprefix.Scorer); ok {
			s = ps
		}
	}
	if s == nil {
		t.Fatal("no precise-prefix-cache-scorer in the scheduler")
	}
	// The endpoint holds the first 64 of 128 blocks: with maxBlocksToMatch
	// 64 that is the whole prompt as matched.
	prompt := make([]uint64, 128)
	for i := range prompt {
		prompt[i] = uint64(i + 1)
	}
	ix := kvevents.NewIndex(0)
	ix.Apply("a:8000", stored(prompt[:64]...))
	s.Attach(ix, &fakeHasher{hashes: map[string][]uint64{"p": prompt}})
	scores := make([]float64, 1)
	s.Score(context.Background(), &scheduling.Request{Prompt: []byte("p")}, candidates("a:8000"), scores)
	if scores[0] != 1 {
		t.Errorf("scored %v, want 1 with maxBlocksToMatch 64", scores[0])
	}
	for bad, field := range map[string]string{`{"maxBlocksToMatch": -1}`: "maxBlocksToMatch", `{"maxBlocks": 3}`: "maxBlocks",
		`{"blockSize": -4}`: "blockSize", `{"speculativeTTL": "soon"}`: "speculativeTTL", `{"speculativeTTL": "-1s"}`: "speculativeTTL",
		`{"tokenizer": "/nonexistent/dir"}`: "/nonexistent/dir", `{"modelTokenizers": {"m": "/nope"}}`: "modelTokenizers.m",
		`{"maxPromptBytes": -1}`: "maxPromptBytes"} {
		if _, err := preciseprefix.Factory("x", []byte(bad)); err == nil || !strings.Contains(err.Error(), field) {
			t.Errorf("%s: %v", bad, err)
		}
	}
}
