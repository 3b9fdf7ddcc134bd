package quota

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Metric is what a limit counts. Tokens are counted as model servers count
// them in `usage`; at admission they are estimates (see Estimate).
type Metric uint8

// The metrics a limit can count (Envoy AI Gateway's InputToken, OutputToken
// and TotalToken, plus requests).
const (
	Requests Metric = iota
	InputTokens
	OutputTokens
	TotalTokens
	numMetrics
)

// String is the metric's name in configuration, metric labels and messages.
func (m Metric) String() string {
	switch m {
	case Requests:
		return "requests"
	case InputTokens:
		return "input_tokens"
	case OutputTokens:
		return "output_tokens"
	case TotalTokens:
		return "total_tokens"
	}
	return fmt.Sprintf("metric(%d)", uint8(m))
}

// isTokens says whether the metric is reported in the x-ratelimit-*-tokens
// headers (as opposed to -requests).
func (m Metric) isTokens() bool { return m != Requests }

// Window is a sliding window of Length, counted in Buckets sub-buckets of
// Width each (Length/Buckets rounded up to a whole millisecond). Usage is
// charged to the sub-bucket of the moment it was admitted and stops
// counting when that sub-bucket leaves the window: between Length and
// Length+Width after it was admitted. So a window never forgets usage
// early (no over-admission in any interval of Length), and gives capacity
// back at most one Width late: 1/60 of the window up to a day, 1/96 (a
// quarter hour) for a day.
type Window struct {
	Length  time.Duration
	Buckets int
}

// WindowOf is the window of a configured length: 60 sub-buckets, or 96
// from a day on (so a day's resolution is a quarter hour, not 24 minutes
// for no reason). Each window costs Buckets+1 counters in memory and at
// most that many hash fields in Redis.
func WindowOf(d time.Duration) Window {
	if d >= 24*time.Hour {
		return Window{Length: d, Buckets: 96}
	}
	return Window{Length: d, Buckets: 60}
}

// The usual windows: a sliding minute (to the second), hour (to the
// minute) and day (to the quarter hour).
var (
	Minute = WindowOf(time.Minute)
	Hour   = WindowOf(time.Hour)
	Day    = WindowOf(24 * time.Hour)
)

// Width is the length of one sub-bucket.
func (w Window) Width() time.Duration {
	ms := (w.Length.Milliseconds() + int64(w.Buckets) - 1) / int64(w.Buckets)
	return time.Duration(max(1, ms)) * time.Millisecond
}

// String names the window as configured: "1m", "1h", "24h", "90s".
func (w Window) String() string {
	d := w.Length
	switch {
	case d >= time.Hour && d%time.Hour == 0:
		return fmt.Sprintf("%dh", d/time.Hour)
	case d >= time.Minute && d%time.Minute == 0:
		return fmt.Sprintf("%dm", d/time.Minute)
	case d >= time.Second && d%time.Second == 0:
		return fmt.Sprintf("%ds", d/time.Second)
	}
	return d.String()
}

func (w Window) validate() error {
	if w.Buckets < 1 || w.Length < time.Millisecond {
		return fmt.Errorf("window %s in %d sub-buckets: both must be positive", w.Length, w.Buckets)
	}
	return nil
}

// Scope says which parts of a request's identity a limit is counted per: a
// limit scoped to the tenant has one counter per tenant, one scoped to
// tenant and model has one per (tenant, model) pair. The zero Scope is one
// counter for everyone.
type Scope uint8

// Scope parts; combine them with |.
const (
	PerKey Scope = 1 << iota
	PerTenant
	PerModel
)

// String lists the scope's parts, "key+tenant+model", or "global".
func (s Scope) String() string {
	out := ""
	for _, p := range []struct {
		bit  Scope
		name string
	}{{PerKey, "key"}, {PerTenant, "tenant"}, {PerModel, "model"}} {
		if s&p.bit != 0 {
			if out != "" {
				out += "+"
			}
			out += p.name
		}
	}
	if out == "" {
		return "global"
	}
	return out
}

// Limit is one ceiling: at most Max of Metric within any Window, counted per
// Scope. Limits are built once from configuration and shared by every
// request; they must not change after New.
type Limit struct {
	// Name identifies the limit in rejections, metrics (the reason label)
	// and counter keys: it must be unique, and stable across replicas and
	// reloads (counters survive a reload by name), e.g.
	// "<namespace>/<policy>/<window>/<metric>".
	Name string
	// Scope is whose requests share a counter.
	Scope Scope
	// Metric is what is counted; Max how much of it Window may hold.
	Metric Metric
	Window Window
	Max    int64
}

// Identity is who a request is counted for. Empty parts are fine: a limit
// scoped to a part the request lacks counts it under the empty value.
type Identity struct {
	Key    string // the API key's id (never the secret)
	Tenant string
	Model  string
}

// subject is the part of an identity a scope selects; its fields are the
// request's own strings, so building one does not allocate.
type subject struct {
	key, tenant, model string
}

func (s Scope) subject(id Identity) subject {
	var sub subject
	if s&PerKey != 0 {
		sub.key = id.Key
	}
	if s&PerTenant != 0 {
		sub.tenant = id.Tenant
	}
	if s&PerModel != 0 {
		sub.model = id.Model
	}
	return sub
}

// Cost is an amount charged against limits: one value per metric.
type Cost [numMetrics]int64

// charge is one limit applied to one subject with an amount.
type charge struct {
	limit *Limit
	sub   subject
	n     int64
	shard uint8 // a MemoryStore's shard of the counter, set when it locks it
}

// Usage is what a limit looked like after an admission: the numbers the
// OpenAI-style headers report.
type Usage struct {
	Limit     *Limit
	Max       int64         // the limit's ceiling in the store that answered (a local fallback may scale it)
	Used      int64         // counted in the window: this request included if admitted, excluded if refused
	ResetIn   time.Duration // until the window has forgotten all it counts now
	RetryIn   time.Duration // on rejection: until the request would fit (0: never)
	Exhausted bool          // on rejection: this limit is the one that refused
}

// Remaining is what is left of the limit, never below zero.
func (u Usage) Remaining() int64 { return max(0, u.Max-u.Used) }

// Ticket is what a Store needs to settle an admission: the charges and the
// moment they were admitted, which names the sub-bucket of every window
// that received them.
type Ticket struct {
	store   Store
	charges []charge
	atMs    int64 // admission time, Unix milliseconds
}

// Store keeps the counters: MemoryStore (one replica), RedisStore (shared
// by replicas) or Failover (Redis with a local fallback). It is sealed: its
// methods are unexported, so only this package's stores exist, and a
// Limiter can rely on their atomicity.
type Store interface {
	// admit checks every charge and, only if all fit, adds them all,
	// atomically. It fills out (len(charges)) with the usage after the
	// admission (or, if refused, what it would have been, the refusing
	// charges marked Exhausted) and on success returns the Ticket that
	// settles it.
	admit(ctx context.Context, now time.Time, charges []charge, out []Usage) (Ticket, bool, error)
	// settle adds delta[i] to the sub-bucket t charged for its i-th charge,
	// clamping at zero. A sub-bucket that has left its window is not
	// touched: what it held is no longer counted anyway.
	settle(ctx context.Context, now time.Time, t *Ticket, delta []int64) error
}

// ErrUnavailable is the error of a closed-mode Failover while Redis is
// unreachable: the request is refused with 503 rather than admitted without
// shared limits.
var ErrUnavailable = errors.New("quota: the shared quota store is unavailable")
