package random

import (
	"context"
	"testing"

	"github.com/igw-dev/igw/pkg/scheduling/schedtest"
)

func TestRandomPicker_PicksDistinctUniformly(t *testing.T) {
	c := schedtest.Candidates(schedtest.Fleet(4, 1)...)
	p := New(Type)
	counts := make([]int, 4)
	for range 4000 {
		got := p.Pick(context.Background(), nil, c, make([]float64, 4), 3, nil)
		if len(got) != 3 || got[0] == got[1] || got[1] == got[2] || got[0] == got[2] {
			t.Fatalf("picked %v, want 3 distinct", got)
		}
		counts[got[0]]++
	}
	for i, n := range counts {
		if n < 800 {
			t.Fatalf("candidate %d primary %d times of 4000: %v", i, n, counts)
		}
	}
}

func TestRandomPicker_CapsAtCandidateCount(t *testing.T) {
	c := schedtest.Candidates(schedtest.Fleet(2, 1)...)
	if got := New(Type).Pick(context.Background(), nil, c, make([]float64, 2), 3, nil); len(got) != 2 {
		t.Fatalf("picked %v, want 2", got)
	}
}
