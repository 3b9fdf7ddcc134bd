package quota

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/igw-dev/igw/pkg/policy/auth"
)

// typicalCharges is how many limits a request is usually counted against
// (a few policies of a few windows): the recycled bookkeeping starts with
// room for that many and grows, once per recycled value, for more.
const typicalCharges = 16

// StreamPolicy is what happens to a streamed response whose output outgrows
// its reservation when the budget has no room for more.
type StreamPolicy uint8

const (
	// StreamFinish lets it finish and charges all of it (the window may
	// then go over by what the stream produced past its reservation).
	StreamFinish StreamPolicy = iota
	// StreamCut ends the stream with an SSE error event and `data: [DONE]`
	// at the first event that does not fit.
	StreamCut
)

// DefaultOutputTokens is the output reserved for a request without
// max_tokens when its policy leaves it unset.
const DefaultOutputTokens = 256

// Policy is a set of limits charged together (a QuotaPolicy): the limits,
// the models it applies to, the output it reserves for a request without
// max_tokens, and what happens to a stream that outgrows its reservation.
// Policies are built once per configuration and shared by every request.
type Policy struct {
	Name string
	// Models are the model patterns (auth.ModelAllowed) the policy
	// counts; empty counts every model.
	Models []string
	Limits []*Limit
	// DefaultOutputTokens is reserved when a request names no max_tokens
	// (DefaultOutputTokens when 0), and is the step a stream's reservation
	// is topped up by.
	DefaultOutputTokens int64
	Stream              StreamPolicy
}

// Options configure a Limiter.
type Options struct {
	// Store keeps the counters (required).
	Store Store
	// Now is the clock (default time.Now); tests inject one.
	Now func() time.Time
	// Metrics, if set, records rejections, store errors and reservation
	// accuracy.
	Metrics *Metrics
}

// Limiter reserves the estimated cost of a request against every limit of
// the policies that apply to it, and settles the reservation with the real
// usage when the response is done. It is safe for concurrent use; its hot
// path (an in-memory admission and settlement) allocates nothing once the
// counters exist.
type Limiter struct {
	store        Store
	now          func() time.Time
	metrics      *Metrics
	reservations sync.Pool
}

// NewLimiter checks the options.
func NewLimiter(o Options) (*Limiter, error) {
	if o.Store == nil {
		return nil, fmt.Errorf("quota: a store is required")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	l := &Limiter{store: o.Store, now: o.Now, metrics: o.Metrics}
	l.reservations.New = func() any {
		return &Reservation{l: l, charges: make([]charge, 0, typicalCharges), deltas: make([]int64, 0, typicalCharges)}
	}
	return l, nil
}

// Store is the limiter's store.
func (l *Limiter) Store() Store { return l.store }

// Validate checks a policy's limits: names set and unique, maxima
// positive, windows that split into whole milliseconds. Call it once per
// configuration.
func (p *Policy) Validate() error {
	seen := map[string]bool{}
	for i, lim := range p.Limits {
		if lim.Name == "" {
			return fmt.Errorf("quota: policy %q: limit %d has no name", p.Name, i)
		}
		if seen[lim.Name] {
			return fmt.Errorf("quota: policy %q: limit %q is defined twice", p.Name, lim.Name)
		}
		seen[lim.Name] = true
		if lim.Max < 1 {
			return fmt.Errorf("quota: limit %q: max must be at least 1", lim.Name)
		}
		if lim.Metric >= numMetrics {
			return fmt.Errorf("quota: limit %q: unknown metric", lim.Name)
		}
		if err := lim.Window.validate(); err != nil {
			return fmt.Errorf("quota: limit %q: %w", lim.Name, err)
		}
	}
	if p.DefaultOutputTokens < 0 {
		return fmt.Errorf("quota: policy %q: defaultOutputTokens must not be negative", p.Name)
	}
	return nil
}

func (p *Policy) appliesTo(model string) bool {
	return len(p.Models) == 0 || auth.ModelAllowed(p.Models, model)
}

func (p *Policy) defaultOutput() int64 {
	if p.DefaultOutputTokens > 0 {
		return p.DefaultOutputTokens
	}
	return DefaultOutputTokens
}

// Estimate is a request's cost as known at admission.
type Estimate struct {
	// InputTokens is the prompt's size in tokens (openai.CountTokens of
	// the parsed prompt).
	InputTokens int64
	// MaxOutputTokens is the request's max_tokens (or
	// max_completion_tokens), 0 when it has none.
	MaxOutputTokens int64
}

// Decision is the outcome of an admission: whether it was admitted, the
// usage of every limit (for the x-ratelimit-* headers) and, on rejection,
// which limit refused and when to retry.
type Decision struct {
	// Admitted says the request fits (or no policy applies to it).
	Admitted bool
	// Refused is the first limit that refused; nil when admitted.
	Refused *Limit
	// RetryAfter is when the request would fit (0 when it never will: it
	// costs more than the limit allows in a whole window).
	RetryAfter time.Duration
	// Requested is what the request asked of Refused.
	Requested int64

	usage []Usage // kept across reuses of the Decision
}

// Usage is the usage of every limit the request was counted against.
func (d *Decision) Usage() []Usage { return d.usage }

// reset clears d for a new admission, keeping the usage slice's memory.
func (d *Decision) reset(n int) {
	u := d.usage[:0]
	*d = Decision{}
	d.usage = slices.Grow(u, n)[:n]
	clear(d.usage)
}

// Reservation is an admitted request's hold on its limits. Settle it
// exactly once, when the response is over; it must not be used after.
type Reservation struct {
	l        *Limiter
	ticket   Ticket
	charges  []charge
	reserved Cost // per metric, topped-up output included
	input    int64
	step     int64 // top-up step: the largest default output of the policies
	stream   StreamPolicy
	// Scratch space of Settle and Extend, kept across reuses.
	deltas   []int64
	topUps   []charge
	topUsage []Usage
}

// Admit reserves est (one request, its input tokens, its output limit or
// the policies' default, and their total) against the limits of every
// policy that applies to id.Model, counted for id. It returns a nil
// Reservation when no policy applies (d.Admitted is true, with no usage)
// or when the request is refused (d says why); err is set only when the
// store failed (ErrUnavailable in closed mode).
func (l *Limiter) Admit(ctx context.Context, id Identity, policies []*Policy, est Estimate, d *Decision) (*Reservation, error) {
	var step int64
	stream := StreamFinish
	n := 0
	for _, p := range policies {
		if !p.appliesTo(id.Model) {
			continue
		}
		n += len(p.Limits)
		step = max(step, p.defaultOutput())
		if p.Stream == StreamCut {
			stream = StreamCut
		}
	}
	d.reset(n)
	if n == 0 {
		d.Admitted = true
		return nil, nil
	}
	out := est.MaxOutputTokens
	if out <= 0 {
		out = step
	}
	cost := Cost{Requests: 1, InputTokens: est.InputTokens, OutputTokens: out, TotalTokens: est.InputTokens + out}
	r := l.reservations.Get().(*Reservation)
	r.charges = r.charges[:0]
	for _, p := range policies {
		if !p.appliesTo(id.Model) {
			continue
		}
		for _, lim := range p.Limits {
			r.charges = append(r.charges, charge{limit: lim, sub: lim.Scope.subject(id), n: cost[lim.Metric]})
		}
	}
	ticket, ok, err := l.store.admit(ctx, l.now(), r.charges, d.usage)
	if err != nil {
		d.usage = d.usage[:0]
		l.release(r)
		l.metrics.storeError("admit", err)
		return nil, err
	}
	if !ok {
		d.reject(r.charges)
		l.metrics.rejected(d.Refused)
		l.release(r)
		return nil, nil
	}
	d.Admitted = true
	r.ticket = ticket
	r.reserved = cost
	r.input = est.InputTokens
	r.step, r.stream = step, stream
	l.metrics.reserved(cost)
	return r, nil
}

// Stream is the policy for this request's stream: cut if any policy that
// applies says so.
func (r *Reservation) Stream() StreamPolicy { return r.stream }

// reject fills in the refusing limit and the retry time: the longest wait
// among the refusing limits, or 0 if any of them can never fit.
func (d *Decision) reject(charges []charge) {
	never := false
	for i, u := range d.usage {
		if !u.Exhausted {
			continue
		}
		if d.Refused == nil {
			d.Refused, d.Requested = u.Limit, charges[i].n
		}
		if u.RetryIn == 0 {
			never = true
		}
		d.RetryAfter = max(d.RetryAfter, u.RetryIn)
	}
	if never {
		d.RetryAfter = 0
	}
}

func (l *Limiter) release(r *Reservation) {
	r.ticket = Ticket{}
	clear(r.charges) // drop references to limits of old configurations
	r.charges = r.charges[:0]
	l.reservations.Put(r)
}

// ReservedOutput is the output tokens held so far (max_tokens or the
// default, plus any top-ups).
func (r *Reservation) ReservedOutput() int64 { return r.reserved[OutputTokens] }

// Extend tries to hold extra more output tokens for a stream that has
// produced more than its reservation: it tries a step of the default
// output size first, then exactly need. It reports whether the output
// reservation is now at least its previous value plus need.
func (r *Reservation) Extend(ctx context.Context, need int64) (bool, error) {
	if need <= 0 {
		return true, nil
	}
	for _, step := range [2]int64{max(need, r.step), need} {
		ok, err := r.topUp(ctx, step)
		if err != nil || ok {
			return ok, err
		}
		if step == need {
			break
		}
	}
	return false, nil
}

// topUp admits step more output (and total) tokens against the same
// limits; request and input limits are charged nothing.
func (r *Reservation) topUp(ctx context.Context, step int64) (bool, error) {
	var c Cost
	c[OutputTokens], c[TotalTokens] = step, step
	r.topUps = r.topUps[:0]
	for _, ch := range r.charges {
		if c[ch.limit.Metric] == 0 {
			continue
		}
		ch.n = c[ch.limit.Metric]
		r.topUps = append(r.topUps, ch)
	}
	if len(r.topUps) == 0 {
		r.reserved[OutputTokens] += step
		r.reserved[TotalTokens] += step
		return true, nil
	}
	// The top-up stays where it is charged; the final settlement corrects
	// the whole reservation in the admission's sub-bucket.
	r.topUsage = slices.Grow(r.topUsage[:0], len(r.topUps))[:len(r.topUps)]
	_, ok, err := r.ticket.store.admit(ctx, r.l.now(), r.topUps, r.topUsage)
	if err != nil {
		r.l.metrics.storeError("extend", err)
		return false, err
	}
	if ok {
		r.reserved[OutputTokens] += step
		r.reserved[TotalTokens] += step
		r.l.metrics.reserved(c)
	}
	return ok, nil
}

// Settle replaces the reservation with what the request really used: the
// server's usage when it reported one, otherwise the estimated input and
// the output counted on the way (0 for a request that failed before any
// output, which gives the output reservation back). The Reservation must
// not be used afterwards.
func (r *Reservation) Settle(ctx context.Context, input, output int64) error {
	actual := Cost{Requests: 1, InputTokens: input, OutputTokens: output, TotalTokens: input + output}
	changed := false
	r.deltas = r.deltas[:0]
	for _, ch := range r.charges {
		m := ch.limit.Metric
		r.deltas = append(r.deltas, actual[m]-r.reserved[m])
		changed = changed || actual[m] != r.reserved[m]
	}
	var err error
	if changed {
		err = r.ticket.store.settle(ctx, r.l.now(), &r.ticket, r.deltas)
		if err != nil {
			r.l.metrics.storeError("settle", err)
		}
	}
	r.l.metrics.settled(r.reserved, actual)
	r.l.release(r)
	return err
}

// InputEstimate is the input tokens reserved at admission.
func (r *Reservation) InputEstimate() int64 { return r.input }
