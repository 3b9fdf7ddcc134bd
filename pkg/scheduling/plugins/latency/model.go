package latency

import "math"

// dims is the largest feature vector a regression takes.
const dims = 4

// vec is a feature or weight vector; unused trailing entries are 0.
type vec [dims]float64

func dot(a, b *vec) float64 { return a[0]*b[0] + a[1]*b[1] + a[2]*b[2] + a[3]*b[3] }

// Recursive least squares constants. initialCovariance is P's diagonal
// at the start and after a reset: large enough that the first few
// observations move the weights, small enough not to overshoot on noise.
// maxCovariance bounds P's diagonal: with forgetting, a feature that
// stops varying (an endpoint never queueing) makes its variance grow
// without bound ("wind-up"), and the next observation would throw its
// weight anywhere; P is reset instead. maxStep bounds how far one
// observation's error (seconds) can pull the weights, so one outlier (a
// stalled connection) does not undo what hundreds taught.
const (
	initialCovariance = 1.0
	maxCovariance     = 1e4
	maxStep           = 2.0
)

// rls is a recursive least-squares regression of a scalar on n ≤ dims
// features with exponential forgetting. It is not safe for concurrent
// use; the endpoint model guards it.
type rls struct {
	n int
	w vec
	p [dims][dims]float64
}

func newRLS(n int, w vec) rls {
	r := rls{n: n, w: w}
	r.resetCovariance()
	return r
}

func (r *rls) resetCovariance() {
	r.p = [dims][dims]float64{}
	for i := 0; i < r.n; i++ {
		r.p[i][i] = initialCovariance
	}
}

// update moves the weights towards y observed at features x, forgetting
// the past by lambda (0 < lambda ≤ 1).
func (r *rls) update(x *vec, y, lambda float64) {
	if math.IsNaN(y) || math.IsInf(y, 0) {
		return
	}
	var px vec
	for i := 0; i < r.n; i++ {
		for j := 0; j < r.n; j++ {
			px[i] += r.p[i][j] * x[j]
		}
	}
	den := lambda + dot(x, &px)
	if !(den > 0) || math.IsInf(den, 0) {
		r.resetCovariance()
		return
	}
	e := y - dot(&r.w, x)
	e = max(-maxStep, min(maxStep, e))
	for i := 0; i < r.n; i++ {
		r.w[i] += px[i] / den * e
	}
	// P = (P − k·(Px)ᵀ)/λ with k = Px/den; P stays symmetric.
	reset := false
	for i := 0; i < r.n; i++ {
		for j := 0; j < r.n; j++ {
			r.p[i][j] = (r.p[i][j] - px[i]*px[j]/den) / lambda
		}
		if !(r.p[i][i] > 0) || r.p[i][i] > maxCovariance {
			reset = true
		}
	}
	if reset {
		r.resetCovariance()
	}
}
