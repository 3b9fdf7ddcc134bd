package kvcache

import (
	"encoding/json"
	"math"
	"strings"
	"testing"

	"github.com/igw-dev/igw/pkg/datastore"
	"github.com/igw-dev/igw/pkg/scheduling/schedtest"
)

func TestKVCacheScorer_PrefersFreeCache(t *testing.T) {
	tests := []struct {
		name  string
		usage []float64
		want  []float64
	}{
		{"one minus utilization", []float64{0, 0.25, 1}, []float64{1, 0.75, 0}},
		{"out-of-range usage is clamped", []float64{-0.5, 1.5, math.NaN()}, []float64{1, 0, 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var eps []*datastore.Endpoint
			for i, u := range tt.usage {
				eps = append(eps, schedtest.Endpoint(string(rune('a'+i)), &datastore.Metrics{KVCacheUsage: u}, 0))
			}
			got := schedtest.Score(New(Type), nil, eps...)
			for i := range tt.want {
				if got[i] != tt.want[i] {
					t.Fatalf("scores = %v, want %v", got, tt.want)
				}
			}
		})
	}
}

func TestKVCacheScorer_NeverScrapedLooksEmpty(t *testing.T) {
	got := schedtest.Score(New(Type), nil, schedtest.Endpoint("a", nil, 0))
	if got[0] != 1 {
		t.Fatalf("score = %v, want 1", got[0])
	}
}

func TestKVCacheScorer_RejectsParameters(t *testing.T) {
	_, err := Factory(Type, json.RawMessage(`{"threshold": 0.8}`))
	if err == nil || !strings.Contains(err.Error(), `"threshold"`) {
		t.Fatalf("err = %v, want unknown parameter threshold", err)
	}
}

func BenchmarkKVCacheScorer_100(b *testing.B) {
	cands := schedtest.Candidates(schedtest.Fleet(100, 1)...)
	scores := make([]float64, len(cands))
	s := New(Type)
	b.ReportAllocs()
	for b.Loop() {
		s.Score(b.Context(), nil, cands, scores)
	}
}
