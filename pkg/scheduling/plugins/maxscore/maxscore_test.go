package maxscore

import (
	"context"
	"fmt"
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
