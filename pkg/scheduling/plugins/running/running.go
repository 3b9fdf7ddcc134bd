package running

import (
	"context"
	"encoding/json"

	"github.com/igw-dev/igw/pkg/scheduling"
)

// Type is the plugin's type name in EndpointPickerConfig.
const Type = "running-requests-size-scorer"

var _ scheduling.Scorer = (*Scorer)(nil)

// Scorer scores candidates by running batch size.
type Scorer struct{ name string }

// New returns a running-requests scorer named name.
func New(name string) *Scorer { return &Scorer{name: name} }

// Factory builds a running-requests-size-scorer; it takes no parameters.
func Factory(name string, raw json.RawMessage) (scheduling.Plugin, error) {
	if err := scheduling.DecodeParameters(raw, &struct{}{}); err != nil {
		return nil, err
	}
	return New(name), nil
}

// Register adds the running-requests-size-scorer type to r.
func Register(r *scheduling.Registry) error { return r.Register(Type, Factory) }

// TypedName identifies the instance.
func (s *Scorer) TypedName() scheduling.TypedName {
	return scheduling.TypedName{Type: Type, Name: s.name}
}

// Score implements scheduling.Scorer.
func (s *Scorer) Score(_ context.Context, _ *scheduling.Request, cands []scheduling.Candidate, scores []float64) {
	for i := range cands {
		scores[i] = float64(cands[i].Metrics.RunningRequests)
	}
	scheduling.InverseMinMax(scores)
}
