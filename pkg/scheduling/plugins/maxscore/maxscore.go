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

// maxSinglePass is the most endpoints Pick chooses in one pass over the
// scores (a primary and its fallbacks, usually 3).
const maxSinglePass = 8

// Pick implements scheduling.Picker: the n best scores, best first, with
// equal scores ordered at random. Up to maxSinglePass it makes one pass:
// the best n so far sit in a small array, and a candidate that ties the
// worst of them draws a random key, so every tied candidate is equally
// likely to be kept. Larger n make one pass per chosen endpoint.
func (p *Picker) Pick(_ context.Context, _ *scheduling.Request, _ []scheduling.Candidate, scores []float64, n int, dst []int) []int {
	n = min(n, len(scores))
	if n <= 0 {
		return dst
	}
	if n > maxSinglePass {
		return pickByPasses(scores, n, dst)
	}
	type kept struct {
		i     int
		score float64
		key   uint64 // tie-break, drawn only when a tie needs it
		drawn bool
	}
	var top [maxSinglePass]kept
	size := 0
	// less reports whether a ranks after b, drawing tie keys as needed.
	less := func(a, b *kept) bool {
		if a.score != b.score {
			return a.score < b.score
		}
		if !a.drawn {
			a.key, a.drawn = rand.Uint64(), true
		}
		if !b.drawn {
			b.key, b.drawn = rand.Uint64(), true
		}
		return a.key < b.key
	}
	for i, sc := range scores {
		if size == n && sc < top[n-1].score {
			continue // the common case: not among the best n
		}
		c := kept{i: i, score: sc}
		if size == n {
			if !less(&top[n-1], &c) {
				continue
			}
			size--
		}
		// Insert c in order (n is small).
		j := size
		for j > 0 && less(&top[j-1], &c) {
			top[j] = top[j-1]
			j--
		}
		top[j] = c
		size++
	}
	for _, k := range top[:size] {
		dst = append(dst, k.i)
	}
	return dst
}

// pickByPasses chooses n endpoints with one pass each, choosing uniformly
// among equal scores by reservoir sampling.
func pickByPasses(scores []float64, n int, dst []int) []int {
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
