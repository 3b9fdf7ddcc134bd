package quota

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/igw-dev/igw/internal/testredis"
	"github.com/igw-dev/igw/pkg/director"
)

// fakeClock is a clock tests move by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	// On a minute boundary, so sub-bucket arithmetic in the tests is easy
	// to follow.
	return &fakeClock{t: time.Date(2026, 1, 2, 3, 4, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

func (c *fakeClock) Advance(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// storeCase builds a fresh store of one kind for a test.
type storeCase struct {
	name string
	new  func(t *testing.T) Store
}

// storeCases are the stores every limiter behaviour is checked against:
// the in-memory one and Redis (a real redis-server), with the same
// injected clock, so both run the same arithmetic.
func storeCases() []storeCase {
	return []storeCase{
		{"memory", func(*testing.T) Store { return NewMemoryStore() }},
		{"redis", func(t *testing.T) Store { return newTestRedisStore(t, testredis.Start(t).Addr) }},
	}
}

func newTestRedisStore(t *testing.T, addr string) *RedisStore {
	t.Helper()
	s, err := NewRedisStore(RedisOptions{Addr: addr, Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// flush waits for a RedisStore's background settlements.
func flush(s Store) {
	if r, ok := s.(*RedisStore); ok {
		r.Flush()
	}
}

func tokenPolicy(maxTotal, maxRequests int64) *Policy {
	return &Policy{Name: "default/team", Limits: []*Limit{
		{Name: "default/team/1m/total_tokens", Scope: PerTenant, Metric: TotalTokens, Window: Minute, Max: maxTotal},
		{Name: "default/team/1m/requests", Scope: PerTenant, Metric: Requests, Window: Minute, Max: maxRequests},
	}}
}

func newLimiter(t *testing.T, s Store, c *fakeClock) *Limiter {
	t.Helper()
	l, err := NewLimiter(Options{Store: s, Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestLimiter_ReservesEstimateAndRefusesWhatDoesNotFit(t *testing.T) {
	for _, sc := range storeCases() {
		t.Run(sc.name, func(t *testing.T) {
			clock := newFakeClock()
			l := newLimiter(t, sc.new(t), clock)
			pol := []*Policy{tokenPolicy(1000, 100)}
			id := Identity{Key: "k1", Tenant: "acme", Model: "m"}
			ctx := context.Background()
			var d Decision
			est := Estimate{InputTokens: 100, MaxOutputTokens: 300} // reserves 400
			for i := range 2 {
				r, err := l.Admit(ctx, id, pol, est, &d)
				if err != nil || r == nil || !d.Admitted {
					t.Fatalf("admission %d: reservation %v, admitted %v, err %v", i, r, d.Admitted, err)
				}
				clock.Advance(10 * time.Second)
			}
			h := http.Header{}
			d.SetHeaders(h)
			if h.Get(HeaderLimitTokens) != "1000" || h.Get(HeaderRemainingTokens) != "200" ||
				h.Get(HeaderLimitRequests) != "100" || h.Get(HeaderRemainingRequests) != "98" {
				t.Errorf("headers after two admissions: %v", h)
			}
			// The second admission was at +10s, at the start of its
			// sub-bucket; everything is forgotten when that sub-bucket
			// leaves the window, one window and one width later.
			if got := h.Get(HeaderResetTokens); got != "1m1s" {
				t.Errorf("%s = %q, want 1m1s", HeaderResetTokens, got)
			}
			// At +20s: 800 counted, 400 more do not fit in 1000.
			r, err := l.Admit(ctx, Identity{Key: "k2", Tenant: "acme", Model: "m"}, pol, est, &d)
			if err != nil || r != nil || d.Admitted {
				t.Fatalf("third admission: reservation %v, admitted %v, err %v", r, d.Admitted, err)
			}
			if d.Refused == nil || d.Refused.Metric != TotalTokens || d.Requested != 400 {
				t.Fatalf("refused by %+v requesting %d", d.Refused, d.Requested)
			}
			// The first 400 leave at +61s: 41s from now.
			if d.RetryAfter != 41*time.Second {
				t.Errorf("RetryAfter = %v, want 41s", d.RetryAfter)
			}
			h = http.Header{}
			d.SetHeaders(h)
			if h.Get("Retry-After") != "41" || h.Get(HeaderRemainingTokens) != "200" {
				t.Errorf("rejection headers: %v", h)
			}
			if msg := d.Message(); !strings.Contains(msg, "default/team/1m/total_tokens") || !strings.Contains(msg, "try again in 41s") {
				t.Errorf("message %q", msg)
			}
			// Another tenant has its own counters.
			if r, _ := l.Admit(ctx, Identity{Tenant: "other", Model: "m"}, pol, est, &d); r == nil {
				t.Fatal("another tenant was refused")
			}
			clock.Advance(41 * time.Second)
			if r, _ := l.Admit(ctx, id, pol, est, &d); r == nil {
				t.Fatalf("refused after the retry time: %s", d.Message())
			}
		})
	}
}

func TestLimiter_SettleReplacesReservationWithUsage(t *testing.T) {
	for _, sc := range storeCases() {
		t.Run(sc.name, func(t *testing.T) {
			clock := newFakeClock()
			store := sc.new(t)
			l := newLimiter(t, store, clock)
			pol := []*Policy{tokenPolicy(1000, 100)}
			id := Identity{Tenant: "acme", Model: "m"}
			ctx := context.Background()
			var d Decision
			est := Estimate{InputTokens: 100, MaxOutputTokens: 300}
			r1, _ := l.Admit(ctx, id, pol, est, &d)
			r2, _ := l.Admit(ctx, id, pol, est, &d)
			if r1 == nil || r2 == nil {
				t.Fatal("refused")
			}
			// The first used 120 in, 30 out; the second failed before any
			// output: its output reservation goes back, its input stays.
			if err := r1.Settle(ctx, 120, 30); err != nil {
				t.Fatal(err)
			}
			if err := r2.Settle(ctx, 100, 0); err != nil {
				t.Fatal(err)
			}
			flush(store)
			clock.Advance(time.Second)
			// 250 counted: 750 remain. 700 fit, then nothing of 100 more.
			r3, _ := l.Admit(ctx, id, pol, Estimate{InputTokens: 400, MaxOutputTokens: 300}, &d)
			if r3 == nil {
				t.Fatalf("700 did not fit after settlement: %s", d.Message())
			}
			h := http.Header{}
			d.SetHeaders(h)
			if got := h.Get(HeaderRemainingTokens); got != "50" {
				t.Errorf("remaining after settlement and a 700 reservation = %s, want 50", got)
			}
			if r, _ := l.Admit(ctx, id, pol, Estimate{InputTokens: 40, MaxOutputTokens: 60}, &d); r != nil {
				t.Fatal("100 fitted in 50")
			}
		})
	}
}

func TestLimiter_RequestLargerThanLimitNeverFits(t *testing.T) {
	clock := newFakeClock()
	l := newLimiter(t, NewMemoryStore(), clock)
	var d Decision
	r, err := l.Admit(context.Background(), Identity{Tenant: "a"}, []*Policy{tokenPolicy(1000, 10)}, Estimate{InputTokens: 900, MaxOutputTokens: 200}, &d)
	if err != nil || r != nil {
		t.Fatalf("admitted %v err %v", r, err)
	}
	if d.RetryAfter != 0 || !strings.Contains(d.Message(), "Request too large") {
		t.Errorf("RetryAfter %v, message %q", d.RetryAfter, d.Message())
	}
	h := http.Header{}
	d.SetHeaders(h)
	if h.Get("Retry-After") != "" {
		t.Errorf("Retry-After %q for a request that can never fit", h.Get("Retry-After"))
	}
}

func TestLimiter_DefaultOutputAndModelFilters(t *testing.T) {
	clock := newFakeClock()
	l := newLimiter(t, NewMemoryStore(), clock)
	p := tokenPolicy(10000, 10)
	p.DefaultOutputTokens = 500
	p.Models = []string{"llama-*"}
	var d Decision
	ctx := context.Background()
	r, _ := l.Admit(ctx, Identity{Tenant: "a", Model: "llama-3"}, []*Policy{p}, Estimate{InputTokens: 10}, &d)
	if r == nil || r.ReservedOutput() != 500 {
		t.Fatalf("reservation %+v", r)
	}
	if u := d.Usage()[0]; u.Used != 510 {
		t.Errorf("total tokens counted %d, want 510", u.Used)
	}
	r.Settle(ctx, 10, 0)
	r, _ = l.Admit(ctx, Identity{Tenant: "a", Model: "mistral"}, []*Policy{p}, Estimate{InputTokens: 10}, &d)
	if r != nil || !d.Admitted || len(d.Usage()) != 0 {
		t.Fatalf("a model outside the policy was counted: %+v %+v", r, d)
	}
}

// PerModel scopes give each model its own counter; PerKey each key.
func TestLimiter_ScopesSeparateCounters(t *testing.T) {
	clock := newFakeClock()
	l := newLimiter(t, NewMemoryStore(), clock)
	p := &Policy{Name: "p", Limits: []*Limit{{Name: "p/1m/requests", Scope: PerKey | PerModel, Metric: Requests, Window: Minute, Max: 1}}}
	var d Decision
	ctx := context.Background()
	for _, id := range []Identity{{Key: "a", Model: "x"}, {Key: "a", Model: "y"}, {Key: "b", Model: "x"}} {
		if r, _ := l.Admit(ctx, id, []*Policy{p}, Estimate{}, &d); r == nil {
			t.Fatalf("%+v refused: separate counters expected", id)
		}
	}
	if r, _ := l.Admit(ctx, Identity{Key: "a", Model: "x", Tenant: "t"}, []*Policy{p}, Estimate{}, &d); r != nil {
		t.Fatal("second request of key a on model x admitted")
	}
}

func TestReservation_ExtendTopsUpUntilTheBudgetIsGone(t *testing.T) {
	for _, sc := range storeCases() {
		t.Run(sc.name, func(t *testing.T) {
			clock := newFakeClock()
			l := newLimiter(t, sc.new(t), clock)
			p := tokenPolicy(1000, 100)
			p.DefaultOutputTokens = 100
			p.Stream = StreamCut
			var d Decision
			ctx := context.Background()
			r, _ := l.Admit(ctx, Identity{Tenant: "a"}, []*Policy{p}, Estimate{InputTokens: 50}, &d)
			if r == nil || r.Stream() != StreamCut {
				t.Fatal("refused")
			}
			// 150 held; top-ups of 100 fit until 950; then 50 of the last
			// step, then nothing.
			for want := int64(200); want <= 900; want += 100 {
				ok, err := r.Extend(ctx, 1)
				if err != nil || !ok || r.ReservedOutput() != want {
					t.Fatalf("extend to %d: ok %v err %v reserved %d", want, ok, err, r.ReservedOutput())
				}
			}
			if ok, _ := r.Extend(ctx, 50); !ok || r.ReservedOutput() != 950 {
				t.Fatalf("the last 50: ok %v reserved %d", ok, r.ReservedOutput())
			}
			if ok, _ := r.Extend(ctx, 1); ok {
				t.Fatal("extended past the limit")
			}
			if err := r.Settle(ctx, 50, 950); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// Under many concurrent admissions the counted total never passes the
// limit: admission is atomic across all of a request's counters.
func TestMemoryStore_ConcurrentAdmissionsNeverExceedTheLimit(t *testing.T) {
	l := newLimiter(t, NewMemoryStore(), newFakeClock())
	pol := []*Policy{tokenPolicy(10_000, 1_000_000)}
	var mu sync.Mutex
	admitted := int64(0)
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var d Decision
			for i := range 200 {
				est := Estimate{InputTokens: int64(10 + (g*7+i)%50), MaxOutputTokens: 20}
				if r, _ := l.Admit(context.Background(), Identity{Tenant: "t", Key: "k"}, pol, est, &d); r != nil {
					mu.Lock()
					admitted += est.InputTokens + est.MaxOutputTokens
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	if admitted > 10_000 || admitted < 10_000-80 {
		t.Fatalf("admitted %d tokens against a limit of 10000 (and a largest request of 79)", admitted)
	}
}

func TestFormatReset_OpenAIStyle(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0: "0s", 20 * time.Millisecond: "20ms", 1500 * time.Millisecond: "1.5s", time.Second: "1s",
		6 * time.Minute: "6m0s", 59*time.Second + 400*time.Microsecond: "59s", 61*time.Second + 300*time.Millisecond: "1m1s",
	} {
		if got := FormatReset(d); got != want {
			t.Errorf("FormatReset(%v) = %q, want %q", d, got, want)
		}
	}
	if director.RetryAfterValue(1100*time.Millisecond) != "2" || director.RetryAfterValue(time.Millisecond) != "1" {
		t.Error("Retry-After must round up to whole seconds, at least 1")
	}
}

// A credential may name many policies: nothing bounds the limits of one
// request (here 3 policies of 8 windows and 4 metrics: 96 counters).
func TestLimiter_ManyLimitsOnOneRequest(t *testing.T) {
	for _, sc := range storeCases() {
		t.Run(sc.name, func(t *testing.T) {
			l := newLimiter(t, sc.new(t), newFakeClock())
			var pols []*Policy
			for p := range 3 {
				pol := &Policy{Name: fmt.Sprintf("p%d", p)}
				for w := range 8 {
					for m := Requests; m < numMetrics; m++ {
						pol.Limits = append(pol.Limits, &Limit{Name: fmt.Sprintf("p%d/%d/%s", p, w, m), Scope: PerTenant, Metric: m,
							Window: WindowOf(time.Duration(w+1) * time.Minute), Max: 1000})
					}
				}
				pols = append(pols, pol)
			}
			var d Decision
			ctx := context.Background()
			r, err := l.Admit(ctx, Identity{Tenant: "t"}, pols, Estimate{InputTokens: 400, MaxOutputTokens: 100}, &d)
			if err != nil || r == nil || len(d.Usage()) != 96 {
				t.Fatalf("admission: %v %v, %d usages", r, err, len(d.Usage()))
			}
			if err := r.Settle(ctx, 400, 50); err != nil {
				t.Fatal(err)
			}
			flush(l.Store())
			// 450 counted in every token window; 600 more does not fit.
			if r, _ := l.Admit(ctx, Identity{Tenant: "t"}, pols, Estimate{InputTokens: 500, MaxOutputTokens: 100}, &d); r != nil {
				t.Fatal("admitted past the limits")
			}
			if !strings.HasPrefix(d.Refused.Name, "p0/0/") || d.RetryAfter <= 0 {
				t.Errorf("refused by %s, retry %v", d.Refused.Name, d.RetryAfter)
			}
		})
	}
}
