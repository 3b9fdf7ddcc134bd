package weightedrandom

import (
	"context"
	"math"
	"testing"

	"github.com/igw-dev/igw/pkg/scheduling/schedtest"
)

func TestWeightedRandomPicker_ProbabilityProportionalToScore(t *testing.T) {
	tests := []struct {
		name   string
		scores []float64
		want   []float64 // expected primary share
	}{
		{"proportional", []float64{1, 3, 0}, []float64{0.25, 0.75, 0}},
		{"all zero is uniform", []float64{0, 0}, []float64{0.5, 0.5}},
	}
	const draws = 20000
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := schedtest.Candidates(schedtest.Fleet(len(tt.scores), 1)...)
			p := New(Type)
			counts := make([]int, len(tt.scores))
			for range draws {
				got := p.Pick(context.Background(), nil, c, tt.scores, len(tt.scores), nil)
				if len(got) != len(tt.scores) {
					t.Fatalf("picked %v, want all %d", got, len(tt.scores))
				}
				counts[got[0]]++
			}
			for i, w := range tt.want {
				if share := float64(counts[i]) / draws; math.Abs(share-w) > 0.02 {
					t.Fatalf("candidate %d share %.3f, want %.2f (%v)", i, share, w, counts)
				}
			}
		})
	}
}
