package maxscore

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/igw-dev/igw/pkg/scheduling"
	"github.com/igw-dev/igw/pkg/scheduling/schedtest"
)

func cands(n int) []scheduling.Candidate {
	return schedtest.Candidates(schedtest.Fleet(n, 7)...)
}

func TestMaxScorePicker_OrdersByScore(t *testing.T) {
	tests := []struct {
		name   string
		scores []float64
		n      int
		want   []int
	}{
		{"best first", []float64{0.1, 0.9, 0.5}, 1, []int{1}},
		{"fallbacks by descending score", []float64{0.1, 0.9, 0.5, 0.7}, 3, []int{1, 3, 2}},
		{"n larger than candidates", []float64{0.2, 0.1}, 5, []int{0, 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := New(Type).Pick(context.Background(), nil, cands(len(tt.scores)), tt.scores, tt.n, nil)
			if !slices.Equal(got, tt.want) {
				t.Fatalf("picked %v, want %v", got, tt.want)
			}
		})
	}
}

func TestMaxScorePicker_BreaksTiesAtRandom(t *testing.T) {
	scores := []float64{1, 0.5, 1, 1}
	seen := map[int]int{}
	p := New(Type)
	for range 3000 {
		got := p.Pick(context.Background(), nil, cands(4), scores, 1, nil)
		seen[got[0]]++
	}
	if seen[1] != 0 {
		t.Fatalf("picked a lower score: %v", seen)
	}
	for _, i := range []int{0, 2, 3} {
		if seen[i] < 800 {
			t.Fatalf("tie not broken uniformly: %v", seen)
		}
	}
}

// The fallbacks too: with more tied candidates than places, every one is
// kept equally often, in any position, and the one-pass and per-place
// paths agree on distinct scores.
func TestMaxScorePicker_TiesAmongFallbacksAreUniform(t *testing.T) {
	scores := []float64{0.2, 1, 1, 1, 1, 0.5}
	p := New(Type)
	kept, first := map[int]int{}, map[int]int{}
	for range 4000 {
		got := p.Pick(context.Background(), nil, cands(len(scores)), scores, 3, nil)
		if len(got) != 3 {
			t.Fatalf("picked %v", got)
		}
		for _, i := range got {
			if scores[i] != 1 {
				t.Fatalf("picked %v: a lower score while four tie at the top", got)
			}
			kept[i]++
		}
		first[got[0]]++
	}
	for i := 1; i <= 4; i++ {
		// Each is kept 3/4 of the time (3,000) and first 1/4 (1,000).
		if kept[i] < 2800 || kept[i] > 3200 || first[i] < 850 || first[i] > 1150 {
			t.Fatalf("not uniform: kept %v, first %v", kept, first)
		}
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 200 {
		scores := make([]float64, 1+r.IntN(40))
		for i := range scores {
			scores[i] = r.Float64()
		}
		n := 1 + r.IntN(12)
		got := p.Pick(context.Background(), nil, cands(len(scores)), scores, n, nil)
		want := pickByPasses(scores, min(n, len(scores)), nil)
		if !slices.Equal(got, want) {
			t.Fatalf("scores %v n %d: picked %v, want %v", scores, n, got, want)
		}
	}
}

func BenchmarkMaxScorePicker(b *testing.B) {
	for _, n := range []int{25, 100} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			c := cands(n)
			scores := make([]float64, n)
			for i := range scores {
				scores[i] = float64(i%10) / 10
			}
			dst := make([]int, 0, 3)
			p := New(Type)
			b.ReportAllocs()
			for b.Loop() {
				dst = p.Pick(b.Context(), nil, c, scores, 3, dst[:0])
			}
		})
	}
}
