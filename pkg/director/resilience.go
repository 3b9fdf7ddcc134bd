package director

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/igw-dev/igw/pkg/datastore"
	"github.com/igw-dev/igw/pkg/director/outlier"
)

// Resilience is how the Director treats a pool whose endpoints fail:
// which endpoints it stops choosing (outlier detection) and how many
// failed requests may be retried at once (the retry budget). A replica
// that fails fast looks idle and would otherwise win most decisions; a
// retry without a budget doubles the load on a pool that is already
// failing.
type Resilience struct {
	Outlier     outlier.Config
	RetryBudget RetryBudget
}

// DefaultResilience is outlier detection and the retry budget with their
// defaults; pools not configured otherwise get it.
func DefaultResilience() Resilience {
	return Resilience{Outlier: outlier.DefaultConfig(), RetryBudget: DefaultRetryBudget()}
}

// Validate rejects a configuration that cannot work.
func (r Resilience) Validate() error {
	return errors.Join(r.Outlier.Validate(), r.RetryBudget.Validate())
}

// Defaults of RetryBudget, Envoy's retry budget defaults.
const (
	DefaultRetryBudgetPercent    = 20
	DefaultRetryBudgetMinRetries = 3
)

// RetryBudget bounds the requests of a pool that are being retried at
// once to a share of its active requests, as Envoy's retry budgets do:
// when most requests fail (an outage), retrying each of them would
// multiply the load on what is left, so beyond the budget a failure goes
// to the client as it is.
type RetryBudget struct {
	// Percent of the pool's active requests that may be retrying at once.
	Percent int
	// MinRetries may be retrying at once whatever the traffic, so a
	// quiet pool can still retry.
	MinRetries int
}

// DefaultRetryBudget is 20% of active requests, at least 3.
func DefaultRetryBudget() RetryBudget {
	return RetryBudget{Percent: DefaultRetryBudgetPercent, MinRetries: DefaultRetryBudgetMinRetries}
}

// Validate rejects a budget that cannot work.
func (b RetryBudget) Validate() error {
	var errs []error
	if b.Percent < 0 || b.Percent > 100 {
		errs = append(errs, fmt.Errorf("retry budget percent must be 0..100, not %d", b.Percent))
	}
	if b.MinRetries < 0 {
		errs = append(errs, fmt.Errorf("retry budget minimum must be >= 0, not %d", b.MinRetries))
	}
	return errors.Join(errs...)
}

// limit is how many requests may be retrying with active requests active.
func (b RetryBudget) limit(active int64) int64 {
	return max(int64(b.MinRetries), active*int64(b.Percent)/100)
}

// resilience is the Resilience of pool under p (the default when p does
// not name it).
func (p *Policy) resilience(pool string) Resilience {
	if r, ok := p.Resilience[pool]; ok {
		return r
	}
	return DefaultResilience()
}

// poolState is what the Director tracks per pool (or URL backend host)
// across requests: the outlier detector and the retry budget's counts.
// There is one per configured pool or backend, never per request or
// client value.
type poolState struct {
	det      *outlier.Detector
	active   atomic.Int64 // requests on their way to an endpoint
	retrying atomic.Int64 // of those, requests granted a retry
	urgentAt atomic.Int64 // unix nanoseconds of the last urgent request (see urgent)
}

// acquireRetry takes a place in the retry budget, if one is free.
func (ps *poolState) acquireRetry(b RetryBudget) bool {
	limit := b.limit(ps.active.Load())
	for {
		n := ps.retrying.Load()
		if n >= limit {
			return false
		}
		if ps.retrying.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// poolState returns pool's state, made on first use with the pool's
// endpoints as the store has them now and the outlier configuration of
// the policy in force.
func (d *Director) poolState(pool string) *poolState {
	d.poolsMu.Lock()
	defer d.poolsMu.Unlock()
	if ps := d.pools[pool]; ps != nil {
		return ps
	}
	cfg := d.policy.Load().resilience(pool).Outlier
	det, err := outlier.New(outlier.Options{Pool: pool, Config: cfg, Observer: d.obs, Logger: d.log, Now: d.now})
	if err != nil { // a configuration the engine did not validate: detection off
		d.log.Error("outlier detection is off", "pool", pool, "err", err)
		det, _ = outlier.New(outlier.Options{Pool: pool, Observer: d.obs, Logger: d.log, Now: d.now})
	}
	if p := d.store.Pool(pool); p != nil {
		det.SetEndpoints(addresses(p.Endpoints))
	}
	ps := &poolState{det: det}
	d.pools[pool] = ps
	return ps
}

// resilienceChanged applies a new policy's outlier configuration to the
// pools already tracked.
func (d *Director) resilienceChanged(p *Policy) {
	d.poolsMu.Lock()
	defer d.poolsMu.Unlock()
	for name, ps := range d.pools {
		if err := ps.det.SetConfig(p.resilience(name).Outlier); err != nil {
			d.log.Error("keeping the previous outlier detection", "pool", name, "err", err)
		}
	}
}

// poolsChanged hands every tracked pool its endpoints (all: the store's
// whole set), so detectors forget endpoints that left.
func (d *Director) poolsChanged(all []*datastore.Endpoint) {
	byPool := map[string][]string{}
	for _, e := range all {
		byPool[e.Pool] = append(byPool[e.Pool], e.Address)
	}
	d.poolsMu.Lock()
	defer d.poolsMu.Unlock()
	for name, ps := range d.pools {
		ps.det.SetEndpoints(byPool[name])
	}
}

// healthy drops the endpoints outlier detection has ejected from eps. When
// that would leave none (the rest are not ready), every candidate stays: a
// request to a failing server may still succeed, one with no candidate
// cannot.
func healthy(det *outlier.Detector, eps []*datastore.Endpoint) []*datastore.Endpoint {
	if !det.Ejecting() {
		return eps
	}
	n := 0
	for _, e := range eps {
		if det.Allowed(e.Address) {
			n++
		}
	}
	if n == 0 || n == len(eps) {
		return eps
	}
	out := make([]*datastore.Endpoint, 0, n)
	for _, e := range eps {
		if det.Allowed(e.Address) {
			out = append(out, e)
		}
	}
	return out
}

// addresses lists the endpoints' addresses.
func addresses(eps []*datastore.Endpoint) []string {
	out := make([]string, len(eps))
	for i, e := range eps {
		out[i] = e.Address
	}
	return out
}

// distinct drops repeated endpoints, keeping the first of each, so a
// request is never retried on an endpoint it already tried. It returns
// eps itself when there are none (every picker's case today).
func distinct(eps []*datastore.Endpoint) []*datastore.Endpoint {
	dup := false
	for i := 1; i < len(eps) && !dup; i++ {
		for _, e := range eps[:i] {
			if e == eps[i] || e.Address == eps[i].Address {
				dup = true
				break
			}
		}
	}
	if !dup {
		return eps
	}
	out := make([]*datastore.Endpoint, 0, len(eps))
	for _, e := range eps {
		if !slicesContainsAddr(out, e.Address) {
			out = append(out, e)
		}
	}
	return out
}

func slicesContainsAddr(eps []*datastore.Endpoint, addr string) bool {
	for _, e := range eps {
		if e.Address == addr {
			return true
		}
	}
	return false
}

// outcomeOf is what an attempt's status (0: none) or error says about the
// endpoint: a 5xx, a connection error or a timeout is a failure; a client
// that left, or an attempt the data plane moved away from, says nothing.
func outcomeOf(status int, err error) outlier.Outcome {
	switch {
	case status >= 500:
		return outlier.Failure
	case status > 0:
		return outlier.Success
	case err == nil, errors.Is(err, context.Canceled), errors.Is(err, errNotServed):
		return outlier.Abandoned
	}
	return outlier.Failure
}
