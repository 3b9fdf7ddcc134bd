package quota

import "time"

// counter is one sliding window in memory: a ring of Buckets+1 sub-buckets
// and their running total. Sub-bucket b (absolute index: Unix milliseconds
// divided by the width) covers [b·width, (b+1)·width); at time t, in
// sub-bucket i, the window counts sub-buckets i-Buckets … i. Those span at
// least Length before t (so nothing admitted within the last Length is
// forgotten) and at most Length+width (so capacity comes back at most one
// width late). Expired sub-buckets are subtracted from the total as time
// moves on, so reading the total is O(1) and moving on is O(sub-buckets
// passed), amortised O(1) per request.
//
// The same arithmetic runs in Redis (scripts.go); the two must agree.
type counter struct {
	vals    []int64 // ring, len Buckets+1, slot b % len
	newest  int64   // absolute index of the newest sub-bucket seen
	total   int64   // sum of vals
	widthMs int64   // sub-bucket width
}

func newCounter(w Window) *counter {
	return &counter{vals: make([]int64, w.Buckets+1), widthMs: w.Width().Milliseconds()}
}

// bucketOf is the absolute sub-bucket index of a time in milliseconds.
func bucketOf(ms int64, widthMs int64) int64 { return floorDiv(ms, widthMs) }

func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}

// advance moves the window to sub-bucket idx, dropping what left it. A
// clock that went back leaves the window where it is.
func (c *counter) advance(idx int64) {
	n := int64(len(c.vals))
	if idx <= c.newest {
		return
	}
	if idx-c.newest >= n {
		clear(c.vals)
		c.total = 0
	} else {
		for b := c.newest + 1; b <= idx; b++ {
			s := floorMod(b, n)
			c.total -= c.vals[s]
			c.vals[s] = 0
		}
	}
	c.newest = idx
}

// add adds delta to sub-bucket idx if it is still in the window, clamping
// the sub-bucket at zero (a correction never gives back more than was
// charged there). idx beyond the newest moves the window first.
func (c *counter) add(idx, delta int64) {
	c.advance(idx)
	n := int64(len(c.vals))
	if idx < c.newest-(n-1) {
		return // already forgotten
	}
	s := floorMod(idx, n)
	v := max(0, c.vals[s]+delta)
	c.total += v - c.vals[s]
	c.vals[s] = v
}

// charge adds an admitted amount to sub-bucket idx, or to the oldest one
// still counted if the clock is more than a window behind the newest.
func (c *counter) charge(idx, n int64) {
	c.advance(idx)
	c.add(max(idx, c.newest-int64(len(c.vals)-1)), n)
}

func floorMod(a, n int64) int64 {
	m := a % n
	if m < 0 {
		m += n
	}
	return m
}

// retryIn is how long from nowMs until need units have left the window, or
// 0 if they never will (the window holds less than need).
func (c *counter) retryIn(nowMs, widthMs, need int64) time.Duration {
	if need <= 0 {
		return 0
	}
	n := int64(len(c.vals))
	freed := int64(0)
	for b := c.newest - (n - 1); b <= c.newest; b++ {
		freed += c.vals[floorMod(b, n)]
		if freed >= need {
			// Sub-bucket b stops counting once the window reaches b+n.
			return time.Duration((b+n)*widthMs-nowMs) * time.Millisecond
		}
	}
	return 0
}

// resetIn is how long from nowMs until everything counted now has left the
// window (0 when it is empty).
func (c *counter) resetIn(nowMs, widthMs int64) time.Duration {
	if c.total == 0 {
		return 0
	}
	n := int64(len(c.vals))
	for b := c.newest; b > c.newest-n; b-- {
		if c.vals[floorMod(b, n)] != 0 {
			return time.Duration((b+n)*widthMs-nowMs) * time.Millisecond
		}
	}
	return 0
}
