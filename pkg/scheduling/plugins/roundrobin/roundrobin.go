package roundrobin

import (
	"context"
	"encoding/json"
	"sync"

	"github.com/igw-dev/igw/pkg/scheduling"
)

// Type is the plugin's type name in EndpointPickerConfig.
const Type = "round-robin-picker"

var _ scheduling.Picker = (*Picker)(nil)

// Picker cycles over candidates by address.
type Picker struct {
	name string

	mu   sync.Mutex
	last string // address of the previous primary pick
}

// New returns a round-robin picker named name.
func New(name string) *Picker { return &Picker{name: name} }

// Factory builds a round-robin-picker; it takes no parameters.
func Factory(name string, raw json.RawMessage) (scheduling.Plugin, error) {
	if err := scheduling.DecodeParameters(raw, &struct{}{}); err != nil {
		return nil, err
	}
	return New(name), nil
}

// Register adds the round-robin-picker type to r.
func Register(r *scheduling.Registry) error { return r.Register(Type, Factory) }

// TypedName identifies the instance.
func (p *Picker) TypedName() scheduling.TypedName {
	return scheduling.TypedName{Type: Type, Name: p.name}
}

// Pick implements scheduling.Picker.
func (p *Picker) Pick(_ context.Context, _ *scheduling.Request, cands []scheduling.Candidate, _ []float64, n int, dst []int) []int {
	if n > len(cands) {
		n = len(cands)
	}
	p.mu.Lock()
	prev := p.last
	for k := 0; k < n; k++ {
		i := next(cands, prev)
		dst = append(dst, i)
		prev = cands[i].Endpoint.Address
		if k == 0 {
			p.last = prev
		}
	}
	p.mu.Unlock()
	return dst
}

// next returns the index of the candidate with the smallest address
// greater than prev, or of the smallest address when none is greater.
// Candidates with equal addresses are not expected (the caller passes
// distinct endpoints); if present, the first is used.
func next(cands []scheduling.Candidate, prev string) int {
	after, lowest := -1, 0
	for i := range cands {
		a := cands[i].Endpoint.Address
		if a < cands[lowest].Endpoint.Address {
			lowest = i
		}
		if a > prev && (after < 0 || a < cands[after].Endpoint.Address) {
			after = i
		}
	}
	if after >= 0 {
		return after
	}
	return lowest
}
