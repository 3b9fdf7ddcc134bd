package lora

import (
	"context"
	"encoding/json"

	"github.com/igw-dev/igw/pkg/scheduling"
)

// Type is the plugin's type name in EndpointPickerConfig.
const Type = "lora-affinity-scorer"

// Scores given by the affinity rules, best first; see the package doc.
const (
	ScoreActive   = 1.0
	ScoreFreeSlot = 0.8
	ScoreWaiting  = 0.6
)

var _ scheduling.Scorer = (*Scorer)(nil)

// Scorer scores candidates by LoRA adapter affinity.
type Scorer struct{ name string }

// New returns a LoRA affinity scorer named name.
func New(name string) *Scorer { return &Scorer{name: name} }

// Factory builds a lora-affinity-scorer; it takes no parameters.
func Factory(name string, raw json.RawMessage) (scheduling.Plugin, error) {
	if err := scheduling.DecodeParameters(raw, &struct{}{}); err != nil {
		return nil, err
	}
	return New(name), nil
}

// Register adds the lora-affinity-scorer type to r.
func Register(r *scheduling.Registry) error { return r.Register(Type, Factory) }

// TypedName identifies the instance.
func (s *Scorer) TypedName() scheduling.TypedName {
	return scheduling.TypedName{Type: Type, Name: s.name}
}

// Score implements scheduling.Scorer.
func (s *Scorer) Score(_ context.Context, req *scheduling.Request, cands []scheduling.Candidate, scores []float64) {
	adapter := req.LoRAAdapter
	if adapter == "" {
		for i := range scores {
			scores[i] = 1
		}
		return
	}
	for i := range cands {
		m := cands[i].Metrics
		_, active := m.ActiveAdapters[adapter]
		_, waiting := m.WaitingAdapters[adapter]
		switch {
		case active:
			scores[i] = ScoreActive
		case m.MaxActiveAdapters > 0 && len(m.ActiveAdapters)+len(m.WaitingAdapters) < m.MaxActiveAdapters:
			scores[i] = ScoreFreeSlot
		case waiting:
			scores[i] = ScoreWaiting
		default:
			scores[i] = 0
		}
	}
}
