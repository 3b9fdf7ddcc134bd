package queue

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/igw-dev/igw/pkg/datastore"
	"github.com/igw-dev/igw/pkg/scheduling/schedtest"
)

type load struct{ waiting, running, inFlight int }

func eps(loads ...load) []*datastore.Endpoint {
	out := make([]*datastore.Endpoint, len(loads))
	for i, l := range loads {
		out[i] = schedtest.Endpoint(string(rune('a'+i)), &datastore.Metrics{WaitingQueueSize: l.waiting, RunningRequests: l.running}, int64(l.inFlight))
	}
	return out
}

func TestQueueScorer_Scores(t *testing.T) {
	tests := []struct {
		name   string
		params Parameters
		loads  []load
		want   []float64
	}{
		{"shortest queue scores 1, longest 0", DefaultParameters(), []load{{0, 0, 0}, {5, 0, 5}, {10, 0, 10}}, []float64{1, 0.5, 0}},
		{"equal queues all score 1", DefaultParameters(), []load{{3, 1, 4}, {3, 1, 4}}, []float64{1, 1}},
		{"single candidate scores 1", DefaultParameters(), []load{{7, 2, 0}}, []float64{1}},
		{"unreported in-flight requests count as queued", DefaultParameters(), []load{{0, 0, 5}, {2, 3, 5}}, []float64{0, 1}},
		{"in-flight correction disabled scores the scrape only", Parameters{UseInFlight: false}, []load{{0, 0, 5}, {2, 3, 5}}, []float64{1, 0}},
		{"other gateways' load is not double counted", DefaultParameters(), []load{{4, 10, 1}, {2, 10, 1}}, []float64{0, 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := schedtest.Score(New(Type, tt.params), nil, eps(tt.loads...)...)
			for i := range tt.want {
				if got[i] != tt.want[i] {
					t.Fatalf("scores = %v, want %v", got, tt.want)
				}
			}
		})
	}
}

func TestQueueScorer_Parameters(t *testing.T) {
	tests := []struct {
		raw     string
		wantErr string
		want    bool
	}{
		{"", "", true},
		{`{"useInFlight": false}`, "", false},
		{`{"useInflight": false}`, `unknown parameter "useInflight"`, false},
		{`{"useInFlight": "yes"}`, `parameter "useInFlight"`, false},
	}
	for _, tt := range tests {
		t.Run(tt.raw, func(t *testing.T) {
			p, err := Factory("q", json.RawMessage(tt.raw))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := p.(*Scorer).params.UseInFlight; got != tt.want {
				t.Fatalf("useInFlight = %v, want %v", got, tt.want)
			}
		})
	}
}

func BenchmarkQueueScorer_100(b *testing.B) {
	cands := schedtest.Candidates(schedtest.Fleet(100, 1)...)
	scores := make([]float64, len(cands))
	s := New(Type, DefaultParameters())
	b.ReportAllocs()
	for b.Loop() {
		s.Score(b.Context(), nil, cands, scores)
	}
}
