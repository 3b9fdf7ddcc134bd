package flowcontrol

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// permits is a headroom the test controls: each true answer consumes one.
type permits struct {
	n           atomic.Int64
	noEndpoints atomic.Bool
}

func (p *permits) headroom(*Request) (bool, bool) {
	if p.noEndpoints.Load() {
		return false, false
	}
	for {
		n := p.n.Load()
		if n <= 0 {
			return false, true
		}
		if p.n.CompareAndSwap(n, n-1) {
			return true, true
		}
	}
}

type result struct {
	name string
	err  error
}

func newController(t *testing.T, mutate func(*Config)) (*Controller, *permits) {
	t.Helper()
	cfg := DefaultConfig()
	if mutate != nil {
		mutate(&cfg)
	}
	p := &permits{}
	c, err := NewController(cfg, p.headroom, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c, p
}

// admitAsync starts Admit and reports on done.
func admitAsync(ctx context.Context, c *Controller, name string, r Request, done chan<- result) {
	go func() {
		err := c.Admit(ctx, r)
		if err == nil {
			c.Started() // the caller's side of the contract: now in flight
		}
		done <- result{name, err}
	}()
}

func waitQueued(t *testing.T, c *Controller, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for c.Queued() != n {
		if time.Now().After(deadline) {
			t.Fatalf("queued %d, want %d", c.Queued(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// releaseOne grants one permit and returns the request it dispatched.
func releaseOne(t *testing.T, c *Controller, p *permits, done <-chan result) result {
	t.Helper()
	p.n.Add(1)
	c.Kick()
	select {
	case r := <-done:
		return r
	case <-time.After(5 * time.Second):
		t.Fatal("nothing dispatched")
		return result{}
	}
}

func TestController_PassesStraightThroughWithHeadroom(t *testing.T) {
	c, p := newController(t, nil)
	p.n.Store(1)
	if err := c.Admit(context.Background(), Request{Priority: -5}); err != nil {
		t.Fatalf("admit with headroom: %v", err)
	}
}

func TestController_ShedsSheddableWhenSaturated(t *testing.T) {
	c, _ := newController(t, nil)
	err := c.Admit(context.Background(), Request{Priority: -1})
	var rej *Rejection
	if !errors.As(err, &rej) || rej.Reason != ReasonSaturated || !errors.Is(err, ErrRejected) {
		t.Fatalf("got %v, want a saturated rejection", err)
	}
	if c.Queued() != 0 {
		t.Fatal("a shed request was queued")
	}
}

func TestController_HigherBandsFirstFCFSWithinAFlow(t *testing.T) {
	c, p := newController(t, nil)
	done := make(chan result, 8)
	ctx := context.Background()
	order := []struct {
		name string
		prio int32
	}{{"low-1", 0}, {"high-1", 10}, {"low-2", 0}, {"high-2", 10}, {"mid-1", 5}}
	for i, r := range order {
		admitAsync(ctx, c, r.name, Request{Priority: r.prio}, done)
		waitQueued(t, c, i+1)
	}
	var got []string
	for range order {
		r := releaseOne(t, c, p, done)
		if r.err != nil {
			t.Fatal(r.err)
		}
		got = append(got, r.name)
	}
	want := []string{"high-1", "high-2", "mid-1", "low-1", "low-2"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("dispatch order %v, want %v", got, want)
	}
}

func TestController_RoundRobinAcrossFlowsInABand(t *testing.T) {
	c, p := newController(t, nil)
	done := make(chan result, 64)
	ctx := context.Background()
	// Tenant a floods (10:1); both stay backlogged.
	n := 0
	for i := range 40 {
		admitAsync(ctx, c, "a", Request{FairnessID: "a"}, done)
		n++
		if i%10 == 0 {
			admitAsync(ctx, c, "b", Request{FairnessID: "b"}, done)
			n++
		}
		waitQueued(t, c, n)
	}
	counts := map[string]int{}
	for range 8 { // b has 4 queued; while both are backlogged they alternate
		counts[releaseOne(t, c, p, done).name]++
	}
	if counts["a"] != 4 || counts["b"] != 4 {
		t.Fatalf("dispatches while both backlogged: %v, want 4 and 4", counts)
	}
	for c.Queued() > 0 { // drain
		releaseOne(t, c, p, done)
	}
}

func TestController_TTLExpires(t *testing.T) {
	c, _ := newController(t, func(cfg *Config) { cfg.TTL = 30 * time.Millisecond })
	var rej *Rejection
	if err := c.Admit(context.Background(), Request{}); !errors.As(err, &rej) || rej.Reason != ReasonTTLExpired || rej.NoEndpoints {
		t.Fatalf("got %v, want ttl expiry (429)", err)
	}
	if c.Queued() != 0 {
		t.Fatal("expired requests still queued")
	}
}

func TestController_NoEndpointsRefusedAtOnce(t *testing.T) {
	c, p := newController(t, nil) // 60 s TTL: waiting would time the test out
	p.noEndpoints.Store(true)
	var rej *Rejection
	for _, prio := range []int32{-1, 0, 10} {
		if err := c.Admit(context.Background(), Request{Priority: prio}); !errors.As(err, &rej) || rej.Reason != ReasonNoEndpoints || !rej.NoEndpoints {
			t.Fatalf("priority %d: got %v, want an immediate no-endpoints rejection", prio, err)
		}
	}
	if c.Queued() != 0 {
		t.Fatal("requests queued for a pool without endpoints")
	}
}

func TestController_CanceledRequestLeavesQueueAtOnce(t *testing.T) {
	c, p := newController(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan result, 2)
	admitAsync(ctx, c, "leaver", Request{}, done)
	waitQueued(t, c, 1)
	admitAsync(context.Background(), c, "stayer", Request{}, done)
	waitQueued(t, c, 2)
	cancel()
	if r := <-done; r.name != "leaver" || !errors.Is(r.err, context.Canceled) {
		t.Fatalf("got %+v", r)
	}
	waitQueued(t, c, 1)
	if r := releaseOne(t, c, p, done); r.name != "stayer" || r.err != nil {
		t.Fatalf("got %+v", r)
	}
}

func TestController_BoundsEachBand(t *testing.T) {
	c, p := newController(t, func(cfg *Config) { cfg.MaxRequestsPerBand = 2; cfg.MaxBytesPerBand = 100 })
	done := make(chan result, 4)
	ctx := context.Background()
	admitAsync(ctx, c, "1", Request{Bytes: 10}, done)
	waitQueued(t, c, 1)
	var rej *Rejection
	if err := c.Admit(ctx, Request{Bytes: 95}); !errors.As(err, &rej) || rej.Reason != ReasonQueueFull {
		t.Fatalf("over the byte bound: %v", err)
	}
	admitAsync(ctx, c, "2", Request{Bytes: 10}, done)
	waitQueued(t, c, 2)
	if err := c.Admit(ctx, Request{Bytes: 1}); !errors.As(err, &rej) || rej.Reason != ReasonQueueFull {
		t.Fatalf("over the request bound: %v", err)
	}
	// Another band has its own bound.
	admitAsync(ctx, c, "other-band", Request{Priority: 3, Bytes: 10}, done)
	waitQueued(t, c, 3)
	for range 3 {
		releaseOne(t, c, p, done)
	}
}

func TestController_ConcurrentLoadAllDispatched(t *testing.T) {
	c, p := newController(t, nil)
	var wg sync.WaitGroup
	var failures atomic.Int64
	stop := make(chan struct{})
	go func() { // headroom trickles in
		for {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Microsecond):
				p.n.Add(1)
				c.Kick()
			}
		}
	}()
	for i := range 400 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := c.Admit(context.Background(), Request{FairnessID: fmt.Sprint(i % 7), Priority: int32(i % 3)}); err != nil {
				failures.Add(1)
				return
			}
			c.Started()
		}()
	}
	wg.Wait()
	close(stop)
	if failures.Load() != 0 || c.Queued() != 0 {
		t.Fatalf("%d failures, %d still queued", failures.Load(), c.Queued())
	}
}

func BenchmarkController_AdmitWithHeadroom(b *testing.B) {
	c, err := NewController(DefaultConfig(), func(*Request) (bool, bool) { return true, true }, nil)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if err := c.Admit(ctx, Request{Priority: 1}); err != nil {
			b.Fatal(err)
		}
		c.Started()
	}
}

// TestController_OneFreedSlotReleasesOneRequest: the pool's load shows a
// released request only once it is in flight, so the dispatcher must not
// judge headroom again before the request reports Started — otherwise one
// freed slot releases the whole queue.
func TestController_OneFreedSlotReleasesOneRequest(t *testing.T) {
	var inFlight atomic.Int64
	inFlight.Store(1) // the only slot is busy
	cfg := DefaultConfig()
	cfg.StartTimeout = time.Minute // the test reports every start itself
	c, err := NewController(cfg, func(*Request) (bool, bool) { return inFlight.Load() < 1, true }, nil)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan result, 10)
	for i := range 5 {
		go func() { done <- result{fmt.Sprint(i), c.Admit(context.Background(), Request{})} }() // Started is reported below
		waitQueued(t, c, i+1)
	}
	for i := range 5 {
		inFlight.Store(0) // the slot frees
		c.Kick()
		select {
		case r := <-done:
			if r.err != nil || r.name != fmt.Sprint(i) {
				t.Fatalf("released %+v, want request %d", r, i)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("request %d was not released", i)
		}
		// Until it reports Started, nothing else may leave the queue.
		time.Sleep(20 * time.Millisecond)
		if got := c.Queued(); got != 5-i-1 {
			t.Fatalf("queue %d after one freed slot, want %d", got, 5-i-1)
		}
		inFlight.Store(1) // it is in flight now
		c.Started()
	}
}

// Within a flow, the deadline orderings serve the earliest latency
// deadline first; requests without one keep their arrival order behind
// those with one. slo-deadline (the default) puts a request whose
// deadline has passed behind the ones that can still meet theirs; edf
// does not; fcfs ignores deadlines. (Without an objective a request's
// deadline is its arrival plus the TTL.)
func TestController_DeadlineOrderings(t *testing.T) {
	for _, tc := range []struct {
		ordering string
		want     []string
	}{
		{"", []string{"soon", "later", "none-1", "none-2", "late"}},
		{OrderingSLODeadline, []string{"soon", "later", "none-1", "none-2", "late"}},
		{OrderingEDF, []string{"late", "soon", "later", "none-1", "none-2"}},
		{OrderingFCFS, []string{"none-1", "late", "later", "soon", "none-2"}},
	} {
		t.Run(tc.ordering, func(t *testing.T) {
			c, p := newController(t, func(cfg *Config) { cfg.Ordering = tc.ordering })
			done := make(chan result, 8)
			ctx := context.Background()
			now := time.Now()
			arrivals := []struct {
				name     string
				deadline time.Time
			}{
				{"none-1", time.Time{}},
				{"late", now.Add(20 * time.Millisecond)}, // passes while queued
				{"later", now.Add(5 * time.Second)},
				{"soon", now.Add(2 * time.Second)},
				{"none-2", time.Time{}},
			}
			for i, a := range arrivals {
				admitAsync(ctx, c, a.name, Request{Deadline: a.deadline}, done)
				waitQueued(t, c, i+1)
			}
			time.Sleep(40 * time.Millisecond) // "late" misses its deadline in the queue
			var got []string
			for range arrivals {
				r := releaseOne(t, c, p, done)
				if r.err != nil {
					t.Fatal(r.err)
				}
				got = append(got, r.name)
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Fatalf("dispatch order %v, want %v", got, tc.want)
			}
		})
	}
}

// Deadlines order requests within a flow only: across tenants the band
// stays round-robin, so one tenant's tight objectives cannot take the
// other's share.
func TestController_DeadlinesDoNotBreakFairness(t *testing.T) {
	c, p := newController(t, nil)
	done := make(chan result, 16)
	ctx := context.Background()
	soon := time.Now().Add(time.Minute)
	n := 0
	for range 4 {
		admitAsync(ctx, c, "a", Request{FairnessID: "a", Deadline: soon}, done)
		n++
		waitQueued(t, c, n)
	}
	for range 4 {
		admitAsync(ctx, c, "b", Request{FairnessID: "b"}, done)
		n++
		waitQueued(t, c, n)
	}
	var got []string
	for range 4 {
		got = append(got, releaseOne(t, c, p, done).name)
	}
	if fmt.Sprint(got) != "[a b a b]" {
		t.Fatalf("dispatch order %v, want tenants alternating", got)
	}
	for c.Queued() > 0 {
		releaseOne(t, c, p, done)
	}
}

func TestConfig_RejectsUnknownOrdering(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Ordering = "lifo"
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "ordering") {
		t.Fatalf("error %v, want one naming ordering", err)
	}
}
