package lora

import (
	"testing"

	"github.com/igw-dev/igw/pkg/datastore"
	"github.com/igw-dev/igw/pkg/scheduling"
	"github.com/igw-dev/igw/pkg/scheduling/schedtest"
)

func set(names ...string) map[string]struct{} {
	m := map[string]struct{}{}
	for _, n := range names {
		m[n] = struct{}{}
	}
	return m
}

func TestLoRAScorer_Affinity(t *testing.T) {
	tests := []struct {
		name    string
		adapter string
		metrics datastore.Metrics
		want    float64
	}{
		{"active adapter scores 1", "a", datastore.Metrics{ActiveAdapters: set("a", "b"), MaxActiveAdapters: 2}, ScoreActive},
		{"free slot scores 0.8", "a", datastore.Metrics{ActiveAdapters: set("b"), MaxActiveAdapters: 2}, ScoreFreeSlot},
		{"free slot beats waiting", "a", datastore.Metrics{WaitingAdapters: set("a"), MaxActiveAdapters: 4}, ScoreFreeSlot},
		{"waiting adapter without free slot scores 0.6", "a", datastore.Metrics{ActiveAdapters: set("b"), WaitingAdapters: set("a"), MaxActiveAdapters: 2}, ScoreWaiting},
		{"full server without the adapter scores 0", "a", datastore.Metrics{ActiveAdapters: set("b", "c"), MaxActiveAdapters: 2}, 0},
		{"server without LoRA information scores 0", "a", datastore.Metrics{}, 0},
		{"base-model request is neutral", "", datastore.Metrics{ActiveAdapters: set("b", "c"), MaxActiveAdapters: 2}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := tt.metrics
			got := schedtest.Score(New(Type), &scheduling.Request{LoRAAdapter: tt.adapter}, schedtest.Endpoint("x", &m, 0))
			if got[0] != tt.want {
				t.Fatalf("score = %v, want %v", got[0], tt.want)
			}
		})
	}
}

func BenchmarkLoRAScorer_100(b *testing.B) {
	cands := schedtest.Candidates(schedtest.Fleet(100, 1)...)
	scores := make([]float64, len(cands))
	s := New(Type)
	req := &scheduling.Request{LoRAAdapter: "lora-3"}
	b.ReportAllocs()
	for b.Loop() {
		s.Score(b.Context(), req, cands, scores)
	}
}
