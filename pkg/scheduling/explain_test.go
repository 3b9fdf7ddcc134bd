package scheduling_test

import (
	"context"
	"testing"

	"github.com/igw-dev/igw/pkg/scheduling"
)

func TestScheduler_ExplainRecordsPerScorerScoresAndPicks(t *testing.T) {
	s := build(t, nil, `
plugins:
- {type: keep-filter, parameters: {a: true, b: true, c: true}}
- {type: fixed-scorer, name: likes-a, parameters: {a: 1, b: 0.2, c: 3}}
- {type: fixed-scorer, name: likes-b, parameters: {a: 0, b: 1, c: 0.1}}
- {type: fixed-scorer, name: off, parameters: {a: 1}}
schedulingProfiles:
- name: default
  plugins:
  - {pluginRef: keep-filter}
  - {pluginRef: likes-a, weight: 1}
  - {pluginRef: likes-b, weight: 3}
  - {pluginRef: off, weight: 0}
`, scheduling.WithFallbacks(1))
	req := &scheduling.Request{Explain: &scheduling.Explanation{}}
	if _, err := s.Schedule(context.Background(), req, endpoints("a", "b", "c", "d")); err != nil {
		t.Fatal(err)
	}
	e := req.Explain
	if e.Primary != "default" || len(e.Profiles) != 1 {
		t.Fatalf("explanation %+v", e)
	}
	p := e.Profiles[0]
	if len(p.Scorers) != 2 || p.Scorers[0] != (scheduling.ScorerWeight{Scorer: "likes-a (fixed-scorer)", Weight: 1}) ||
		p.Scorers[1] != (scheduling.ScorerWeight{Scorer: "likes-b (fixed-scorer)", Weight: 3}) {
		t.Fatalf("scorers %+v (the zero-weight scorer does not run)", p.Scorers)
	}
	if len(p.Picked) != 2 || p.Picked[0] != "b" || p.Picked[1] != "c" {
		t.Fatalf("picked %v, want [b c]", p.Picked)
	}
	want := map[string][]float64{"a": {1, 0}, "b": {0.2, 1}, "c": {1, 0.1}} // c's 3 is clamped; d was filtered out
	if len(p.Candidates) != len(want) {
		t.Fatalf("candidates %+v", p.Candidates)
	}
	for _, c := range p.Candidates {
		w := want[c.Endpoint]
		if len(c.Scores) != 2 || c.Scores[0] != w[0] || c.Scores[1] != w[1] || c.Total != w[0]+3*w[1] {
			t.Errorf("candidate %+v, want scores %v", c, w)
		}
	}
	e.Top(1)
	if len(e.Profiles[0].Candidates) != 1 || e.Profiles[0].Candidates[0].Endpoint != "b" {
		t.Fatalf("top 1 %+v, want the winner", e.Profiles[0].Candidates)
	}
}

func TestScheduler_NoExplanationByDefault(t *testing.T) {
	s := build(t, nil, `
plugins:
- {type: fixed-scorer, parameters: {a: 1}}
schedulingProfiles:
- name: default
  plugins: [{pluginRef: fixed-scorer}]
`)
	req := &scheduling.Request{}
	if _, err := s.Schedule(context.Background(), req, endpoints("a", "b")); err != nil {
		t.Fatal(err)
	}
	if req.Explain != nil {
		t.Fatal("an explanation was recorded without being asked for")
	}
}
