package maxscore

import (
	"context"
	"encoding/json"
	"math/rand/v2"
	"slices"

	"github.com/igw-dev/igw/pkg/scheduling"
)

// Type is the plugin's type name in EndpointPickerConfig.
const Type = "max-score-picker"

var _ scheduling.Picker = (*Picker)(nil)

// Picker picks the highest score, ties at random.
type Picker struct{ name string }

// New returns a max-score picker named name.
func New(name string) *Picker { return &Picker{name: name} }

// Factory builds a max-score-picker; it takes no parameters.
func Factory(name string, raw json.RawMessage) (scheduling.Plugin, error) {
	if err := scheduling.DecodeParameters(raw, &struct{}{}); err != nil {
		return nil, err
	}
	return New(name), nil
}

// Register adds the max-score-picker type to r.
func Register(r *scheduling.Registry) error { return r.Register(Type, Factory) }

// TypedName identifies the instance.
func (p *Picker) TypedName() scheduling.TypedName {
	return scheduling.TypedName{Type: Type, Name: p.name}
}

// Pick implements scheduling.Picker. It makes one pass per chosen endpoint
// (n is small), choosing uniformly among equal scores by reservoir
// sampling, so it needs no scratch memory.
func (p *Picker) Pick(_ context.Context, _ *scheduling.Request, _ []scheduling.Candidate, scores []float64, n int, dst []int) []int {
	start := len(dst)
	for len(dst)-start < n {
		best, ties := -1, 0
		for i, s := range scores {
			if slices.Contains(dst[start:], i) {
				continue
			}
			switch {
			case best < 0 || s > scores[best]:
				best, ties = i, 1
			case s == scores[best]:
				ties++
				if rand.IntN(ties) == 0 {
					best = i
				}
			}
		}
		if best < 0 {
			break
		}
		dst = append(dst, best)
	}
	return dst
}
