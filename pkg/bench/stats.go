package bench

import (
	"math"
	"slices"
	"time"
)

// Dist summarizes one latency distribution, in seconds, so the report can
// print and chart it without knowing how samples were taken. Percentiles
// use the nearest-rank method (see Percentile): every reported value is a
// latency some request actually had. A Dist with Count 0 has all values 0
// (JSON cannot carry NaN).
type Dist struct {
	Count int     `json:"count"`
	Mean  float64 `json:"mean"`
	Min   float64 `json:"min"`
	P50   float64 `json:"p50"`
	P90   float64 `json:"p90"`
	P99   float64 `json:"p99"`
	Max   float64 `json:"max"`
}

// NewDist summarizes samples (in seconds). It sorts samples in place, which
// is why it takes ownership of the slice.
func NewDist(samples []float64) Dist {
	if len(samples) == 0 {
		return Dist{}
	}
	slices.Sort(samples)
	sum := 0.0
	for _, v := range samples {
		sum += v
	}
	return Dist{
		Count: len(samples),
		Mean:  sum / float64(len(samples)),
		Min:   samples[0],
		P50:   Percentile(samples, 50),
		P90:   Percentile(samples, 90),
		P99:   Percentile(samples, 99),
		Max:   samples[len(samples)-1],
	}
}

// Percentile returns the p-th percentile (0..100) of sorted samples by the
// nearest-rank method: the smallest sample such that at least p% of the
// samples are less than or equal to it, i.e. sorted[ceil(p/100·n)−1]
// (p ≤ 0 gives the minimum). Nearest rank is exact, needs no
// interpolation between requests that did not happen, and agrees with
// what a reader counts by hand: p90 of 1..100 is 90. It returns 0 for no
// samples.
func Percentile(sorted []float64, p float64) float64 {
	n := len(sorted)
	if n == 0 {
		return 0
	}
	// p·n/100 rather than p/100·n keeps whole ranks exact in floating
	// point; the epsilon absorbs representation error of p itself.
	rank := int(math.Ceil(p*float64(n)/100 - 1e-9))
	rank = min(max(rank, 1), n)
	return sorted[rank-1]
}

// seconds converts durations to the seconds NewDist takes.
func seconds(d time.Duration) float64 { return d.Seconds() }
