package queue

import (
	"context"
	"encoding/json"

	"github.com/igw-dev/igw/pkg/scheduling"
)

// Type is the plugin's type name in EndpointPickerConfig.
const Type = "queue-scorer"

var _ scheduling.Scorer = (*Scorer)(nil)

// Parameters are the queue-scorer's configuration; see the package doc.
type Parameters struct {
	// UseInFlight adds igw's in-flight correction to the scraped queue.
	UseInFlight bool `json:"useInFlight"`
}

// DefaultParameters are the values used for parameters not configured.
func DefaultParameters() Parameters { return Parameters{UseInFlight: true} }

// Scorer scores candidates by (corrected) waiting queue length.
type Scorer struct {
	name   string
	params Parameters
}

// New returns a queue scorer named name.
func New(name string, p Parameters) *Scorer { return &Scorer{name: name, params: p} }

// Factory builds a queue-scorer from configuration.
func Factory(name string, raw json.RawMessage) (scheduling.Plugin, error) {
	p := DefaultParameters()
	if err := scheduling.DecodeParameters(raw, &p); err != nil {
		return nil, err
	}
	return New(name, p), nil
}

// Register adds the queue-scorer type to r.
func Register(r *scheduling.Registry) error { return r.Register(Type, Factory) }

// TypedName identifies the instance.
func (s *Scorer) TypedName() scheduling.TypedName {
	return scheduling.TypedName{Type: Type, Name: s.name}
}

// Score implements scheduling.Scorer.
func (s *Scorer) Score(_ context.Context, _ *scheduling.Request, cands []scheduling.Candidate, scores []float64) {
	for i := range cands {
		m := cands[i].Metrics
		q := m.WaitingQueueSize
		if s.params.UseInFlight {
			q = m.EstimatedQueue(cands[i].InFlight)
		}
		scores[i] = float64(q)
	}
	scheduling.InverseMinMax(scores)
}
