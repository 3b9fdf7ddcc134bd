// Package outlier is passive health checking for one pool of model
// servers, in the manner of Envoy's outlier detection: the Director reports
// the outcome of every attempt it sends to an endpoint, and an endpoint
// that fails several times in a row is ejected from the pool's candidates
// for a while, then let back one request at a time.
//
// Why: active health checks (the metrics scrape, readiness) see a server
// that is up and idle, while every request it takes fails. A replica that
// answers each request with a fast 500 looks like the least loaded one and
// keeps winning the scheduler's choice; only the outcomes of real requests
// show it is broken.
//
// The state of one endpoint:
//
//   - healthy: a candidate. Failure counts consecutive failures (a 5xx
//     status, a connection error, a timeout); any success resets the count.
//     At Config.ConsecutiveFailures the endpoint is ejected, unless that
//     would take more than Config.MaxEjectionPercent of the pool out.
//   - ejected: not a candidate for the ejection time: BaseEjectionTime,
//     doubled for each ejection in a row, at most MaxEjectionTime. Each
//     BaseEjectionTime spent healthy afterwards forgets one past ejection.
//   - half-open: the ejection time is over; the endpoint is a candidate for
//     one request at a time (the probe). A success restores it, a failure
//     ejects it again for twice as long.
//
// Outcomes that say nothing about the server (the client went away, the
// request was served elsewhere) are Abandoned: they release a probe and
// change nothing else. A Detector knows only the endpoints SetEndpoints
// gave it, so its memory is bounded by the pool's size and an endpoint that
// leaves the pool is forgotten.
package outlier

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults of Config, chosen so that one broken replica of a busy pool is
// out within a handful of requests, a replica that recovers is back within
// seconds, and one that keeps failing costs at most one request every five
// minutes.
const (
	// DefaultConsecutiveFailures is how many failures in a row eject an
	// endpoint: enough that a single bad request or a restart does not.
	DefaultConsecutiveFailures = 5
	// DefaultBaseEjectionTime is the first ejection's length.
	DefaultBaseEjectionTime = 10 * time.Second
	// DefaultMaxEjectionTime caps the doubling.
	DefaultMaxEjectionTime = 5 * time.Minute
	// DefaultMaxEjectionPercent is the share of a pool that may be out at
	// once: when every replica fails (the model, the network, a bad
	// rollout) ejecting them all would turn errors into "no endpoints".
	DefaultMaxEjectionPercent = 50
	// ProbeTimeout is how long a half-open endpoint's probe may stay
	// unreported before another request may probe it, so a lost report
	// cannot keep an endpoint out for ever.
	ProbeTimeout = time.Minute
)

// Config is one pool's outlier detection.
type Config struct {
	// ConsecutiveFailures ejects an endpoint after this many failed
	// attempts in a row; 0 turns detection off.
	ConsecutiveFailures int
	// BaseEjectionTime is the first ejection's length, doubled for each
	// further ejection in a row up to MaxEjectionTime.
	BaseEjectionTime, MaxEjectionTime time.Duration
	// MaxEjectionPercent bounds the ejected share of the pool (0..100):
	// at most floor(size × percent / 100) endpoints are out at once.
	MaxEjectionPercent int
}

// DefaultConfig is detection with the Default* values.
func DefaultConfig() Config {
	return Config{
		ConsecutiveFailures: DefaultConsecutiveFailures,
		BaseEjectionTime:    DefaultBaseEjectionTime,
		MaxEjectionTime:     DefaultMaxEjectionTime,
		MaxEjectionPercent:  DefaultMaxEjectionPercent,
	}
}

// Validate rejects a configuration that cannot work, naming the field.
func (c Config) Validate() error {
	var errs []error
	if c.ConsecutiveFailures < 0 {
		errs = append(errs, fmt.Errorf("consecutive failures must be >= 0, not %d", c.ConsecutiveFailures))
	}
	if c.ConsecutiveFailures > 0 {
		if c.BaseEjectionTime <= 0 {
			errs = append(errs, fmt.Errorf("base ejection time must be positive, not %v", c.BaseEjectionTime))
		}
		if c.MaxEjectionTime < c.BaseEjectionTime {
			errs = append(errs, fmt.Errorf("max ejection time %v is below the base ejection time %v", c.MaxEjectionTime, c.BaseEjectionTime))
		}
	}
	if c.MaxEjectionPercent < 0 || c.MaxEjectionPercent > 100 {
		errs = append(errs, fmt.Errorf("max ejection percent must be 0..100, not %d", c.MaxEjectionPercent))
	}
	return errors.Join(errs...)
}

// Outcome is what one attempt on an endpoint showed.
type Outcome int

// Outcomes of an attempt.
const (
	// Success: the server answered with a status below 500.
	Success Outcome = iota + 1
	// Failure: a 5xx status, a connection error or a timeout.
	Failure
	// Abandoned: the attempt ended without saying anything about the
	// server (the client left, the request moved on for another reason).
	Abandoned
)

// Observer receives what a Detector does, for metrics.
type Observer interface {
	// Ejected counts one ejection of endpoint (also a re-ejection after a
	// failed probe).
	Ejected(pool, endpoint string)
	// EjectedEndpoints is how many endpoints of the pool are out
	// (ejected or half-open), after every change.
	EjectedEndpoints(pool string, n int)
}

// Options builds a Detector.
type Options struct {
	// Pool names the pool in logs and metrics.
	Pool   string
	Config Config
	// Now is the clock (nil: time.Now); tests pass a fake one.
	Now      func() time.Time
	Observer Observer     // may be nil
	Logger   *slog.Logger // nil: no logs
}

// Detector is the outlier detection of one pool. It is safe for
// concurrent use; Allowed takes no lock while no endpoint is ejected.
type Detector struct {
	pool string
	now  func() time.Time
	obs  Observer
	log  *slog.Logger

	out atomic.Int64 // endpoints ejected or half-open; read without mu

	mu  sync.Mutex
	cfg Config
	eps map[string]*state // the pool's endpoints, by address
}

// state is one endpoint's record.
type state struct {
	failures   int       // consecutive failures while healthy
	ejections  int       // ejections in a row, the back-off's exponent
	until      time.Time // zero: healthy; else ejected until, half-open after
	probeSince time.Time // a half-open probe in flight since (zero: none)
	restoredAt time.Time // last return to healthy
}

// New builds a Detector with no endpoints; SetEndpoints gives it the pool.
func New(o Options) (*Detector, error) {
	if err := o.Config.Validate(); err != nil {
		return nil, fmt.Errorf("outlier detection of pool %s: %w", o.Pool, err)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return &Detector{pool: o.Pool, now: o.Now, obs: o.Observer, log: o.Logger, cfg: o.Config, eps: map[string]*state{}}, nil
}

// SetConfig applies a new configuration (a reload). Turning detection off
// returns every ejected endpoint at once.
func (d *Detector) SetConfig(c Config) error {
	if err := c.Validate(); err != nil {
		return fmt.Errorf("outlier detection of pool %s: %w", d.pool, err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.cfg = c
	if c.ConsecutiveFailures == 0 {
		for addr, s := range d.eps {
			if !s.until.IsZero() {
				d.restore(addr, s, d.now(), "outlier detection turned off")
			}
			s.failures, s.ejections = 0, 0
		}
	}
	return nil
}

// SetEndpoints makes addrs the pool's endpoints (the whole set): new ones
// start healthy, those no longer listed are forgotten.
func (d *Detector) SetEndpoints(addrs []string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	keep := make(map[string]bool, len(addrs))
	for _, a := range addrs {
		keep[a] = true
		if d.eps[a] == nil {
			d.eps[a] = &state{}
		}
	}
	changed := false
	for a, s := range d.eps {
		if keep[a] {
			continue
		}
		if !s.until.IsZero() {
			d.out.Add(-1)
			changed = true
		}
		delete(d.eps, a)
	}
	if changed && d.obs != nil {
		d.obs.EjectedEndpoints(d.pool, int(d.out.Load()))
	}
}

// Ejecting reports whether some endpoint is out, so a caller can skip
// filtering its candidates when none is (the common case) without a lock.
func (d *Detector) Ejecting() bool { return d.out.Load() > 0 }

// Ejected is how many endpoints are out (ejected or half-open).
func (d *Detector) Ejected() int { return int(d.out.Load()) }

// Allowed reports whether addr may be a candidate now: it is healthy, or
// half-open with no probe in flight.
func (d *Detector) Allowed(addr string) bool {
	if d.out.Load() == 0 {
		return true
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	s := d.eps[addr]
	if s == nil || s.until.IsZero() {
		return true
	}
	now := d.now()
	return !now.Before(s.until) && s.probeFree(now)
}

func (s *state) probeFree(now time.Time) bool {
	return s.probeSince.IsZero() || now.Sub(s.probeSince) >= ProbeTimeout
}

// Start tells the detector an attempt on addr begins. It reports whether
// the attempt is the half-open endpoint's probe, which the caller passes
// back to Done.
func (d *Detector) Start(addr string) (probe bool) {
	if d.out.Load() == 0 {
		return false
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	s := d.eps[addr]
	if s == nil || s.until.IsZero() {
		return false
	}
	now := d.now()
	if now.Before(s.until) || !s.probeFree(now) {
		return false
	}
	s.probeSince = now
	return true
}

// Done reports the outcome of an attempt on addr; probe is what Start
// returned for it. Outcomes for endpoints not in the pool are ignored.
func (d *Detector) Done(addr string, o Outcome, probe bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := d.eps[addr]
	if s == nil || d.cfg.ConsecutiveFailures == 0 {
		return
	}
	now := d.now()
	if probe {
		s.probeSince = time.Time{}
	}
	switch {
	case o == Abandoned:
	case s.until.IsZero() && o == Success:
		s.failures = 0
	case s.until.IsZero(): // a failure of a healthy endpoint
		s.failures++
		if s.failures >= d.cfg.ConsecutiveFailures && d.mayEject() {
			// Each base ejection time spent healthy since the last
			// return forgets one past ejection.
			if !s.restoredAt.IsZero() && s.ejections > 0 {
				s.ejections = max(0, s.ejections-int(now.Sub(s.restoredAt)/d.cfg.BaseEjectionTime))
			}
			d.eject(addr, s, now)
		}
	case now.Before(s.until):
		// An attempt started before the ejection: it changes nothing.
	case o == Success: // half-open, and the server answered
		d.restore(addr, s, now, "a probe succeeded")
	default: // half-open, and it failed again
		d.eject(addr, s, now)
	}
}

// mayEject: one more ejection keeps the pool within MaxEjectionPercent.
func (d *Detector) mayEject() bool {
	return int(d.out.Load())+1 <= len(d.eps)*d.cfg.MaxEjectionPercent/100
}

// eject takes s out (or keeps it out, from half-open) for its back-off.
func (d *Detector) eject(addr string, s *state, now time.Time) {
	again := !s.until.IsZero()
	s.ejections++
	s.failures = 0
	s.probeSince = time.Time{}
	s.until = now.Add(d.backoff(s.ejections))
	if !again {
		d.out.Add(1)
	}
	n := int(d.out.Load())
	d.log.Info("endpoint ejected", "pool", d.pool, "endpoint", addr, "for", s.until.Sub(now),
		"ejections", s.ejections, "reprobe", again, "ejected", n)
	if d.obs != nil {
		d.obs.Ejected(d.pool, addr)
		d.obs.EjectedEndpoints(d.pool, n)
	}
}

// restore returns s to the candidates.
func (d *Detector) restore(addr string, s *state, now time.Time, why string) {
	s.until, s.probeSince, s.failures, s.restoredAt = time.Time{}, time.Time{}, 0, now
	d.out.Add(-1)
	n := int(d.out.Load())
	d.log.Info("endpoint returned", "pool", d.pool, "endpoint", addr, "reason", why, "ejected", n)
	if d.obs != nil {
		d.obs.EjectedEndpoints(d.pool, n)
	}
}

// backoff is the length of the n-th ejection in a row (n >= 1).
func (d *Detector) backoff(n int) time.Duration {
	t := d.cfg.BaseEjectionTime
	for i := 1; i < n && t < d.cfg.MaxEjectionTime; i++ {
		t *= 2
	}
	return min(t, d.cfg.MaxEjectionTime)
}
