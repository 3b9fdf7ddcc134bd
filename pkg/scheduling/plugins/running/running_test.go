package running

import (
	"testing"

	"github.com/igw-dev/igw/pkg/datastore"
	"github.com/igw-dev/igw/pkg/scheduling/schedtest"
)

func TestRunningScorer_PrefersSmallerBatch(t *testing.T) {
	tests := []struct {
		name    string
		running []int
		want    []float64
	}{
		{"fewest running scores 1", []int{10, 20, 30}, []float64{1, 0.5, 0}},
		{"equal batches all score 1", []int{8, 8}, []float64{1, 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var eps []*datastore.Endpoint
			for i, r := range tt.running {
				eps = append(eps, schedtest.Endpoint(string(rune('a'+i)), &datastore.Metrics{RunningRequests: r}, 0))
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
