package flowcontrol

import (
	"container/heap"
	"container/list"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Outcome reasons, used as x-gateway-request-dropped-reason values and
// metric labels.
const (
	ReasonDispatched  = "dispatched"
	ReasonSaturated   = "rejected-saturated"
	ReasonNoEndpoints = "rejected-no-endpoints"
	ReasonTTLExpired  = "rejected-ttl-expired"
	ReasonQueueFull   = "rejected-queue-full"
	ReasonCanceled    = "canceled"
)

// ErrRejected is wrapped by every *Rejection.
var ErrRejected = errors.New("request not admitted")

// Rejection says why a request was not dispatched; Sheddable and TTL
// rejections are answered 429 (503 when the pool has no endpoints at all).
type Rejection struct {
	Reason string
	// NoEndpoints is true when the pool had no endpoint at all (503).
	NoEndpoints bool
	Waited      time.Duration
}

func (r *Rejection) Error() string { return r.Reason }

// Unwrap makes every Rejection an ErrRejected.
func (r *Rejection) Unwrap() error { return ErrRejected }

// Headroom reports whether the pool can take r now (nil: any request), and
// whether it has any endpoint at all. It is called often; it must be
// cheap. The request lets a pool keep room for some requests (those with
// a latency objective or a high priority) that others may not take.
type Headroom func(r *Request) (ok, hasEndpoints bool)

// Config bounds the queues.
type Config struct {
	// MaxRequestsPerBand and MaxBytesPerBand bound each priority band's
	// queue (request bodies' bytes); a request that does not fit is
	// rejected at once rather than waiting for nothing.
	MaxRequestsPerBand int           `json:"maxRequestsPerBand"`
	MaxBytesPerBand    int64         `json:"maxBytesPerBand"`
	TTL                time.Duration `json:"ttl"`
	// PollInterval is how often a non-empty queue re-checks for headroom
	// when nothing else wakes it (completions and new metrics also do).
	PollInterval time.Duration `json:"pollInterval"`
	// StartTimeout bounds how long the dispatcher waits for the requests
	// it let through to report Started before judging headroom again, so
	// a caller that never reports cannot stall the queue.
	StartTimeout time.Duration `json:"startTimeout"`
	// Ordering is how each flow's queue is ordered: OrderingSLODeadline
	// (the default, ""), OrderingEDF or OrderingFCFS.
	Ordering string `json:"ordering,omitempty"`
}

// Queue orderings within a flow. Flows (tenants) of a band are always
// served round-robin, so the ordering never lets one tenant's deadlines
// take another's share.
const (
	// OrderingFCFS serves each flow first come first served, blind to
	// deadlines.
	OrderingFCFS = "fcfs"
	// OrderingEDF serves each flow's earliest deadline first. A request's
	// deadline is its arrival plus its time-to-first-token objective, or
	// plus the TTL when it has none, so requests without objectives keep
	// their arrival order among themselves.
	OrderingEDF = "edf"
	// OrderingSLODeadline, the default, is OrderingEDF except that a
	// request whose deadline has passed goes behind every request that
	// can still meet its own: under overload plain EDF spends the capacity
	// on requests that are late anyway and makes the rest late too.
	// Without objectives it is first come first served.
	OrderingSLODeadline = "slo-deadline"
)

// DefaultConfig: 1,000 requests or 64 MiB per band, 60 s TTL, 5 ms poll,
// 50 ms start timeout.
func DefaultConfig() Config {
	return Config{MaxRequestsPerBand: 1000, MaxBytesPerBand: 64 << 20, TTL: 60 * time.Second,
		PollInterval: 5 * time.Millisecond, StartTimeout: 50 * time.Millisecond}
}

// Validate rejects bounds that would make every request fail.
func (c Config) Validate() error {
	switch {
	case c.MaxRequestsPerBand < 1:
		return fmt.Errorf("maxRequestsPerBand: must be ≥ 1, got %d", c.MaxRequestsPerBand)
	case c.MaxBytesPerBand < 1:
		return fmt.Errorf("maxBytesPerBand: must be ≥ 1, got %d", c.MaxBytesPerBand)
	case c.TTL <= 0:
		return fmt.Errorf("ttl: must be > 0, got %v", c.TTL)
	case c.PollInterval <= 0:
		return fmt.Errorf("pollInterval: must be > 0, got %v", c.PollInterval)
	case c.StartTimeout <= 0:
		return fmt.Errorf("startTimeout: must be > 0, got %v", c.StartTimeout)
	case c.Ordering != "" && c.Ordering != OrderingFCFS && c.Ordering != OrderingEDF && c.Ordering != OrderingSLODeadline:
		return fmt.Errorf("ordering: must be %s, %s or %s, got %q", OrderingFCFS, OrderingEDF, OrderingSLODeadline, c.Ordering)
	}
	return nil
}

// Observer receives the controller's events, for metrics; nil is allowed.
type Observer interface {
	// Outcome is called once per request with its reason and queue wait.
	Outcome(priority int32, reason string, waited time.Duration)
	// QueueChanged reports a band's queue length and bytes after a change.
	QueueChanged(priority int32, requests int, bytes int64)
}

// Request is what admission needs to know about a request.
type Request struct {
	// FairnessID names the flow (tenant) within its band; "" is one
	// default flow.
	FairnessID string
	Priority   int32
	// Bytes is the request's size, counted against the band's byte bound.
	Bytes int64
	// Deadline is when the request should have its first token (its
	// arrival plus its time-to-first-token objective); zero for none. Only
	// the deadline orderings read it.
	Deadline time.Time
}

// Controller admits the requests of one pool: straight through while the
// pool has headroom and nothing is queued, otherwise queued per flow
// (fairness id × priority) and dispatched highest band first, round-robin
// across the band's flows, and within a flow by the configured ordering
// (earliest latency-objective deadline first; first come first served
// among requests without one).
// Sheddable requests (priority < 0) are rejected at once while the pool is
// saturated.
type Controller struct {
	cfg      Config
	headroom Headroom
	observer Observer

	queued atomic.Int64 // requests waiting, for the lock-free fast path
	kick   chan struct{}

	// pending counts admitted requests whose load the pool does not show
	// yet (not yet in flight on an endpoint); released is when the last
	// was admitted. The dispatcher waits for them before judging headroom
	// again, or one freed slot would release the whole queue at once.
	pending  atomic.Int64
	released atomic.Int64 // unix nanoseconds

	mu         sync.Mutex
	bands      map[int32]*band
	order      []int32 // band priorities, highest first
	dispatcher bool    // a dispatch goroutine is running
}

type band struct {
	priority int32
	flows    map[string]*flow
	ring     []*flow // flows with queued requests, in round-robin order
	next     int
	requests int
	bytes    int64
}

type flow struct {
	id    string
	queue list.List // of *item, in arrival order
	// With a deadline ordering, every queued request is also in byDeadline,
	// or — with OrderingSLODeadline, once its deadline passed — in late.
	byDeadline deadlineHeap
	late       list.List // of *item, in the order they became late
}

type item struct {
	req      Request
	flow     *flow
	band     *band
	elem     *list.Element
	ready    chan struct{}
	enqueued time.Time
	state    itemState
	deadline time.Time
	heapIdx  int           // index in band.byDeadline, −1 when not there
	lateElem *list.Element // in band.late, or nil
}

// deadlineHeap is a min-heap of items by deadline (container/heap).
type deadlineHeap []*item

func (h deadlineHeap) Len() int { return len(h) }
func (h deadlineHeap) Less(i, j int) bool {
	if !h[i].deadline.Equal(h[j].deadline) {
		return h[i].deadline.Before(h[j].deadline)
	}
	return h[i].enqueued.Before(h[j].enqueued)
}
func (h deadlineHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].heapIdx, h[j].heapIdx = i, j
}
func (h *deadlineHeap) Push(x any) {
	it := x.(*item)
	it.heapIdx = len(*h)
	*h = append(*h, it)
}
func (h *deadlineHeap) Pop() any {
	old := *h
	it := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	it.heapIdx = -1
	return it
}

type itemState uint8

const (
	itemQueued itemState = iota
	itemDispatched
	itemRemoved
)

// NewController builds a controller over headroom.
func NewController(cfg Config, headroom Headroom, observer Observer) (*Controller, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("flow control: %w", err)
	}
	if headroom == nil {
		return nil, errors.New("flow control: headroom is required")
	}
	return &Controller{cfg: cfg, headroom: headroom, observer: observer, kick: make(chan struct{}, 1), bands: map[int32]*band{}}, nil
}

// Started tells the controller that a request Admit let through now counts
// in the pool's load (it is in flight on an endpoint), or never will (it
// failed before). Every successful Admit must be followed by one call.
func (c *Controller) Started() {
	if c.pending.Add(-1) < 0 {
		c.pending.Store(0)
	}
	c.Kick()
}

func (c *Controller) admitted() {
	c.pending.Add(1)
	c.released.Store(time.Now().UnixNano())
}

// Kick tells a waiting queue that headroom may have appeared (a request
// completed, metrics were refreshed).
func (c *Controller) Kick() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// Admit returns nil when the request may be dispatched now, after waiting
// in its queue if the pool is saturated; a *Rejection when the pool has no
// endpoint at all, when it is shed (sheddable while saturated), does not
// fit its band's queue, or waited out its TTL; or the context's error if
// the client left first (it leaves the queue at once).
func (c *Controller) Admit(ctx context.Context, r Request) error {
	ok, hasEndpoints := c.headroom(&r)
	switch {
	case !hasEndpoints:
		// Nothing to wait for: a pool without a usable endpoint is refused
		// at once rather than after the TTL.
		c.outcome(r.Priority, ReasonNoEndpoints, 0)
		return &Rejection{Reason: ReasonNoEndpoints, NoEndpoints: true}
	case ok && c.queued.Load() == 0:
		c.admitted()
		c.outcome(r.Priority, ReasonDispatched, 0)
		return nil
	case !ok && r.Priority < 0:
		c.outcome(r.Priority, ReasonSaturated, 0)
		return &Rejection{Reason: ReasonSaturated}
	}
	it, rej := c.enqueue(r)
	if rej != nil {
		c.outcome(r.Priority, rej.Reason, 0)
		return rej
	}
	ttl := time.NewTimer(c.cfg.TTL)
	defer ttl.Stop()
	select {
	case <-it.ready:
		waited := time.Since(it.enqueued)
		c.outcome(r.Priority, ReasonDispatched, waited)
		return nil
	case <-ctx.Done():
		if c.remove(it) {
			c.outcome(r.Priority, ReasonCanceled, time.Since(it.enqueued))
			return ctx.Err()
		}
		<-it.ready // dispatched at the same moment, but the client is gone
		c.Started()
		c.outcome(r.Priority, ReasonCanceled, time.Since(it.enqueued))
		return ctx.Err()
	case <-ttl.C:
		if c.remove(it) {
			waited := time.Since(it.enqueued)
			_, hasEndpoints := c.headroom(nil)
			c.outcome(r.Priority, ReasonTTLExpired, waited)
			return &Rejection{Reason: ReasonTTLExpired, NoEndpoints: !hasEndpoints, Waited: waited}
		}
		<-it.ready
		c.outcome(r.Priority, ReasonDispatched, time.Since(it.enqueued))
		return nil
	}
}

func (c *Controller) outcome(p int32, reason string, waited time.Duration) {
	if c.observer != nil {
		c.observer.Outcome(p, reason, waited)
	}
}

func (c *Controller) enqueue(r Request) (*item, *Rejection) {
	c.mu.Lock()
	defer c.mu.Unlock()
	b := c.bands[r.Priority]
	if b == nil {
		b = &band{priority: r.Priority, flows: map[string]*flow{}}
		c.bands[r.Priority] = b
		c.order = append(c.order, r.Priority)
		slices.SortFunc(c.order, func(x, y int32) int { return int(y) - int(x) })
	}
	if b.requests+1 > c.cfg.MaxRequestsPerBand || b.bytes+r.Bytes > c.cfg.MaxBytesPerBand {
		return nil, &Rejection{Reason: ReasonQueueFull}
	}
	f := b.flows[r.FairnessID]
	if f == nil {
		f = &flow{id: r.FairnessID}
		b.flows[r.FairnessID] = f
	}
	if f.queue.Len() == 0 {
		b.ring = append(b.ring, f)
	}
	it := &item{req: r, flow: f, band: b, ready: make(chan struct{}), enqueued: time.Now(), heapIdx: -1}
	it.elem = f.queue.PushBack(it)
	if c.byDeadline() {
		it.deadline = r.Deadline
		if it.deadline.IsZero() {
			it.deadline = it.enqueued.Add(c.cfg.TTL)
		}
		heap.Push(&f.byDeadline, it)
	}
	b.requests++
	b.bytes += r.Bytes
	c.queued.Add(1)
	c.changed(b)
	if !c.dispatcher {
		c.dispatcher = true
		go c.dispatch()
	}
	c.Kick()
	return it, nil
}

// remove takes a waiting item out of its queue; false if it was already
// dispatched.
func (c *Controller) remove(it *item) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if it.state != itemQueued {
		return false
	}
	c.unlink(it)
	it.state = itemRemoved
	return true
}

// byDeadline reports whether the bands are ordered by deadline.
func (c *Controller) byDeadline() bool { return c.cfg.Ordering != OrderingFCFS }

func (c *Controller) unlink(it *item) {
	f, b := it.flow, it.band
	f.queue.Remove(it.elem)
	if it.heapIdx >= 0 {
		heap.Remove(&f.byDeadline, it.heapIdx)
	}
	if it.lateElem != nil {
		f.late.Remove(it.lateElem)
		it.lateElem = nil
	}
	if f.queue.Len() == 0 {
		i := slices.Index(b.ring, f)
		b.ring = slices.Delete(b.ring, i, i+1)
		if b.next > i {
			b.next--
		}
		if len(b.ring) == 0 || b.next >= len(b.ring) {
			b.next = 0
		}
		delete(b.flows, f.id)
	}
	b.requests--
	b.bytes -= it.req.Bytes
	c.queued.Add(-1)
	c.changed(b)
}

func (c *Controller) changed(b *band) {
	if c.observer != nil {
		c.observer.QueueChanged(b.priority, b.requests, b.bytes)
	}
}

// dispatch runs while requests are queued: whenever the pool has
// headroom for the next request — highest band first, round-robin across
// the band's flows, by the ordering within a flow — it releases it, and
// otherwise waits for a kick or the poll interval.
func (c *Controller) dispatch() {
	poll := time.NewTicker(c.cfg.PollInterval)
	defer poll.Stop()
	for {
		for {
			if c.pending.Load() > 0 && time.Since(time.Unix(0, c.released.Load())) < c.cfg.StartTimeout {
				break // the last admissions are not counted in the pool's load yet
			}
			it := c.next()
			if it == nil {
				return // queue empty; the goroutine ends
			}
			if ok, _ := c.headroom(&it.req); !ok {
				break
			}
			c.release(it) // false: it left the queue meanwhile; look again
		}
		c.mu.Lock()
		if c.queued.Load() == 0 {
			c.dispatcher = false
			c.mu.Unlock()
			return
		}
		c.mu.Unlock()
		select {
		case <-c.kick:
		case <-poll.C:
		}
	}
}

// next is the request to release next, or nil when nothing is queued
// (and then marks the dispatcher stopped, under the lock).
func (c *Controller) next() *item {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range c.order {
		b := c.bands[p]
		if len(b.ring) == 0 {
			continue
		}
		f := b.ring[b.next]
		if c.byDeadline() {
			return c.earliest(f)
		}
		return f.queue.Front().Value.(*item)
	}
	c.dispatcher = false
	return nil
}

// release dispatches it, if it is still queued, and moves its band's
// round-robin past its flow.
func (c *Controller) release(it *item) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if it.state != itemQueued {
		return false
	}
	b := it.band
	b.next = slices.Index(b.ring, it.flow) + 1
	c.unlink(it) // may shrink the ring and fix next
	if b.next >= len(b.ring) {
		b.next = 0
	}
	it.state = itemDispatched
	c.admitted()
	close(it.ready)
	return true
}

// earliest is the flow's next request by deadline: the earliest, or
// with OrderingSLODeadline the earliest not yet late (those that are
// move to the late queue), else the first to have become late.
func (c *Controller) earliest(f *flow) *item {
	if c.cfg.Ordering != OrderingEDF {
		now := time.Now()
		for len(f.byDeadline) > 0 && f.byDeadline[0].deadline.Before(now) {
			it := heap.Pop(&f.byDeadline).(*item)
			it.lateElem = f.late.PushBack(it)
		}
		if len(f.byDeadline) == 0 {
			return f.late.Front().Value.(*item)
		}
	}
	return f.byDeadline[0]
}

// Queued is the number of requests waiting.
func (c *Controller) Queued() int { return int(c.queued.Load()) }
