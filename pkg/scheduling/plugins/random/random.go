package random

import (
	"context"
	"encoding/json"
	"math/rand/v2"
	"slices"

	"github.com/igw-dev/igw/pkg/scheduling"
)

// Type is the plugin's type name in EndpointPickerConfig.
const Type = "random-picker"

var _ scheduling.Picker = (*Picker)(nil)

// Picker picks uniformly at random.
type Picker struct{ name string }

// New returns a random picker named name.
func New(name string) *Picker { return &Picker{name: name} }

// Factory builds a random-picker; it takes no parameters.
func Factory(name string, raw json.RawMessage) (scheduling.Plugin, error) {
	if err := scheduling.DecodeParameters(raw, &struct{}{}); err != nil {
		return nil, err
	}
	return New(name), nil
}

// Register adds the random-picker type to r.
func Register(r *scheduling.Registry) error { return r.Register(Type, Factory) }

// TypedName identifies the instance.
func (p *Picker) TypedName() scheduling.TypedName {
	return scheduling.TypedName{Type: Type, Name: p.name}
}

// Pick implements scheduling.Picker. n is small, so distinct indices are
// drawn by rejection: no scratch memory.
func (p *Picker) Pick(_ context.Context, _ *scheduling.Request, cands []scheduling.Candidate, _ []float64, n int, dst []int) []int {
	start := len(dst)
	if n > len(cands) {
		n = len(cands)
	}
	for len(dst)-start < n {
		i := rand.IntN(len(cands))
		if !slices.Contains(dst[start:], i) {
			dst = append(dst, i)
		}
	}
	return dst
}
