package leastrequest

import (
	"testing"

	"github.com/igw-dev/igw/pkg/datastore"
	"github.com/igw-dev/igw/pkg/scheduling/schedtest"
)

func TestLeastRequestScorer_PrefersFewestInFlight(t *testing.T) {
	tests := []struct {
		name     string
		inFlight []int64
		want     []float64
	}{
		{"fewest in flight scores 1", []int64{0, 2, 4}, []float64{1, 0.5, 0}},
		{"equal counts all score 1", []int64{3, 3, 3}, []float64{1, 1, 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var eps []*datastore.Endpoint
			for i, n := range tt.inFlight {
				// Metrics deliberately disagree: the scorer must ignore them.
				eps = append(eps, schedtest.Endpoint(string(rune('a'+i)), &datastore.Metrics{WaitingQueueSize: 10 - i}, n))
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
