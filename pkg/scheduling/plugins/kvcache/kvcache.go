package kvcache

import (
	"context"
	"encoding/json"

	"github.com/igw-dev/igw/pkg/scheduling"
)

// Type is the plugin's type name in EndpointPickerConfig.
const Type = "kv-cache-utilization-scorer"

var _ scheduling.Scorer = (*Scorer)(nil)

// Scorer scores candidates by free KV-cache fraction.
type Scorer struct{ name string }

// New returns a KV-cache utilization scorer named name.
func New(name string) *Scorer { return &Scorer{name: name} }

// Factory builds a kv-cache-utilization-scorer; it takes no parameters.
func Factory(name string, raw json.RawMessage) (scheduling.Plugin, error) {
	if err := scheduling.DecodeParameters(raw, &struct{}{}); err != nil {
		return nil, err
	}
	return New(name), nil
}

// Register adds the kv-cache-utilization-scorer type to r.
func Register(r *scheduling.Registry) error { return r.Register(Type, Factory) }

// TypedName identifies the instance.
func (s *Scorer) TypedName() scheduling.TypedName {
	return scheduling.TypedName{Type: Type, Name: s.name}
}

// Score implements scheduling.Scorer.
func (s *Scorer) Score(_ context.Context, _ *scheduling.Request, cands []scheduling.Candidate, scores []float64) {
	for i := range cands {
		u := cands[i].Metrics.KVCacheUsage
		switch {
		case !(u > 0): // also NaN
			u = 0
		case u > 1:
			u = 1
		}
		scores[i] = 1 - u
	}
}
