package weightedrandom

import (
	"context"
	"encoding/json"
	"math/rand/v2"
	"slices"

	"github.com/igw-dev/igw/pkg/scheduling"
)

// Type is the plugin's type name in EndpointPickerConfig.
const Type = "weighted-random-picker"

var _ scheduling.Picker = (*Picker)(nil)

// Picker picks with probability proportional to score.
type Picker struct{ name string }

// New returns a weighted random picker named name.
func New(name string) *Picker { return &Picker{name: name} }

// Factory builds a weighted-random-picker; it takes no parameters.
func Factory(name string, raw json.RawMessage) (scheduling.Plugin, error) {
	if err := scheduling.DecodeParameters(raw, &struct{}{}); err != nil {
		return nil, err
	}
	return New(name), nil
}

// Register adds the weighted-random-picker type to r.
func Register(r *scheduling.Registry) error { return r.Register(Type, Factory) }

// TypedName identifies the instance.
func (p *Picker) TypedName() scheduling.TypedName {
	return scheduling.TypedName{Type: Type, Name: p.name}
}

// Pick implements scheduling.Picker: one pass per chosen endpoint, sampling
// without replacement.
func (p *Picker) Pick(_ context.Context, _ *scheduling.Request, cands []scheduling.Candidate, scores []float64, n int, dst []int) []int {
	start := len(dst)
	if n > len(cands) {
		n = len(cands)
	}
	for len(dst)-start < n {
		sum, left := 0.0, 0
		for i, s := range scores {
			if !slices.Contains(dst[start:], i) {
				sum += s
				left++
			}
		}
		if left == 0 {
			break
		}
		chosen := -1
		if sum > 0 {
			r := rand.Float64() * sum
			for i, s := range scores {
				if s <= 0 || slices.Contains(dst[start:], i) {
					continue
				}
				chosen = i
				if r < s {
					break
				}
				r -= s
			}
		} else {
			k := rand.IntN(left)
			for i := range scores {
				if slices.Contains(dst[start:], i) {
					continue
				}
				if k == 0 {
					chosen = i
					break
				}
				k--
			}
		}
		dst = append(dst, chosen)
	}
	return dst
}
