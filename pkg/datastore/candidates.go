package datastore

import "time"

// DefaultMaxAge is how old a snapshot may be and still be trusted
// (REFERENCE §4): four scrape intervals, so one or two slow scrapes do not
// drop an endpoint, while a dead one leaves the candidate set well within a
// second.
const DefaultMaxAge = 200 * time.Millisecond

// Candidates appends to dst the endpoints of eps that may be scheduled at
// now: ready, and with a metrics snapshot at most maxAge old (DefaultMaxAge
// when maxAge <= 0). Routing on a stale snapshot would send requests to a
// server that may be dead or overloaded, so such endpoints are left out.
//
// It keeps the order of eps and allocates nothing when dst has room, so the
// scheduler can call it every cycle with a reused slice:
//
//	buf = datastore.Candidates(buf[:0], pool, time.Now(), 0)
func Candidates(dst, eps []*Endpoint, now time.Time, maxAge time.Duration) []*Endpoint {
	for _, ep := range eps {
		if IsCandidate(ep, now, maxAge) {
			dst = append(dst, ep)
		}
	}
	return dst
}

// IsCandidate is the per-endpoint test of Candidates, for callers that
// filter in their own loop (for example a scheduling Filter plugin).
// maxAge <= 0 means DefaultMaxAge.
func IsCandidate(ep *Endpoint, now time.Time, maxAge time.Duration) bool {
	if maxAge <= 0 {
		maxAge = DefaultMaxAge
	}
	return ep != nil && ep.Ready() && ep.Metrics().Fresh(now, maxAge)
}
