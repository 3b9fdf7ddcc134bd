package quota

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/igw-dev/igw/internal/testredis"
)

// countingConn counts the writes a client makes: go-redis sends a command
// (or a whole pipeline) in one write and then reads the reply, so writes
// are round trips.
type countingConn struct {
	net.Conn
	writes *atomic.Int64
}

func (c countingConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}

func countingDialer(writes *atomic.Int64) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return countingConn{Conn: c, writes: writes}, nil
	}
}

func calls(t *testing.T, srv *testredis.Server, cmd string) int64 {
	t.Helper()
	n, err := srv.CommandCalls(cmd)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// An admission against every counter of a request (here six limits in two
// policies) is exactly one round trip: one EVALSHA. After SCRIPT FLUSH the
// first one costs two (NOSCRIPT, then EVAL), and then one again.
func TestRedisStore_OneRoundTripPerAdmission(t *testing.T) {
	srv := testredis.Start(t)
	var writes atomic.Int64
	store, err := NewRedisStore(RedisOptions{Addr: srv.Addr, Timeout: 2 * time.Second, PoolSize: 1, Dialer: countingDialer(&writes)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	clock := newFakeClock()
	l := newLimiter(t, store, clock)
	p1 := tokenPolicy(1_000_000, 1_000_000)
	p2 := &Policy{Name: "p2", Limits: []*Limit{
		{Name: "p2/1h/input", Scope: PerKey, Metric: InputTokens, Window: Hour, Max: 1 << 40},
		{Name: "p2/1h/output", Scope: PerKey, Metric: OutputTokens, Window: Hour, Max: 1 << 40},
		{Name: "p2/24h/total", Scope: PerKey | PerModel, Metric: TotalTokens, Window: Day, Max: 1 << 40},
		{Name: "p2/24h/requests", Scope: PerTenant, Metric: Requests, Window: Day, Max: 1 << 40},
	}}
	pols := []*Policy{p1, p2}
	ctx := context.Background()
	var d Decision
	id := Identity{Key: "k", Tenant: "t", Model: "m"}
	admit := func() *Reservation {
		t.Helper()
		r, err := l.Admit(ctx, id, pols, Estimate{InputTokens: 10, MaxOutputTokens: 10}, &d)
		if err != nil || r == nil {
			t.Fatalf("admission failed: %v %s", err, d.Message())
		}
		clock.Advance(100 * time.Millisecond)
		return r
	}
	admit() // dials and loads the script
	const n = 50
	w0, sha0, eval0 := writes.Load(), calls(t, srv, "evalsha"), calls(t, srv, "eval")
	for range n {
		admit()
	}
	if got := writes.Load() - w0; got != n {
		t.Errorf("%d admissions took %d round trips, want %d", n, got, n)
	}
	if sha, ev := calls(t, srv, "evalsha")-sha0, calls(t, srv, "eval")-eval0; sha != n || ev != 0 {
		t.Errorf("redis ran %d EVALSHA and %d EVAL for %d admissions, want %d and 0", sha, ev, n, n)
	}
	if _, err := srv.Do("SCRIPT", "FLUSH"); err != nil {
		t.Fatal(err)
	}
	w0 = writes.Load()
	admit()
	admit()
	if got := writes.Load() - w0; got != 3 {
		t.Errorf("after SCRIPT FLUSH two admissions took %d round trips, want 3 (NOSCRIPT, EVAL, EVALSHA)", got)
	}
	// Settlements travel in the background, batched: many settlements,
	// fewer round trips than settlements.
	var rs []*Reservation
	for range 20 {
		rs = append(rs, admit())
	}
	w0 = writes.Load()
	for _, r := range rs {
		if err := r.Settle(ctx, 5, 5); err != nil {
			t.Fatal(err)
		}
	}
	store.Flush()
	if got := writes.Load() - w0; got < 1 || got > 20 {
		t.Errorf("20 settlements took %d round trips", got)
	}
}

// The Redis keys expire: a counter left alone does not stay in Redis.
func TestRedisStore_KeysExpire(t *testing.T) {
	srv := testredis.Start(t)
	store := newTestRedisStore(t, srv.Addr)
	l := newLimiter(t, store, newFakeClock())
	var d Decision
	p := &Policy{Name: "p", Limits: []*Limit{{Name: "p/2s/requests", Scope: PerKey, Metric: Requests, Window: WindowOf(2 * time.Second), Max: 5}}}
	if r, err := l.Admit(context.Background(), Identity{Key: "k"}, []*Policy{p}, Estimate{}, &d); r == nil || err != nil {
		t.Fatal("refused", err)
	}
	ttl, err := srv.Do("PTTL", "igw:quota:p/2s/requests:1:k:0::0:")
	if err != nil || ttl == "-2" || ttl == "-1" {
		t.Fatalf("PTTL = %q (%v): the counter must exist and expire", ttl, err)
	}
}

func TestFailover_OpenFallsBackToLocalLimitsAndRecovers(t *testing.T) {
	srv := testredis.Start(t)
	rs := newTestRedisStore(t, srv.Addr)
	f, err := NewFailover(rs, FailoverOptions{Mode: FailOpen, MinBackoff: 20 * time.Millisecond, MaxBackoff: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.Close() })
	clock := newFakeClock()
	l := newLimiter(t, f, clock)
	p := &Policy{Name: "p", Limits: []*Limit{{Name: "p/1m/requests", Scope: PerTenant, Metric: Requests, Window: Minute, Max: 3}}}
	ctx := context.Background()
	var d Decision
	admit := func() bool {
		r, err := l.Admit(ctx, Identity{Tenant: "t"}, []*Policy{p}, Estimate{}, &d)
		if err != nil {
			t.Fatalf("open mode returned an error: %v", err)
		}
		return r != nil
	}
	for i := range 2 {
		if !admit() {
			t.Fatalf("admission %d refused while Redis is up", i)
		}
	}
	// The first admission loads the script: NOSCRIPT, then EVAL.
	if n := calls(t, srv, "evalsha") + calls(t, srv, "eval"); n != 3 {
		t.Fatalf("redis ran %d scripts for 2 admissions, want 3", n)
	}
	srv.Stop()
	// Local counters start empty: 3 more fit, the 4th does not.
	for i := range 3 {
		if !admit() {
			t.Fatalf("local admission %d refused", i)
		}
	}
	if admit() {
		t.Fatal("the local fallback does not enforce the limit")
	}
	if !f.Down() {
		t.Fatal("not marked down")
	}
	srv.Restart()
	waitFor(t, func() bool { return !f.Down() })
	if !admit() {
		t.Fatal("refused after recovery (Redis restarted empty)")
	}
	if n := calls(t, srv, "evalsha") + calls(t, srv, "eval"); n != 2 {
		t.Fatalf("after recovery one admission ran %d scripts in the restarted Redis, want 2 (NOSCRIPT, EVAL)", n)
	}
}

func TestFailover_ClosedRefusesUntilRedisAnswers(t *testing.T) {
	srv := testredis.Start(t)
	rs := newTestRedisStore(t, srv.Addr)
	f, err := NewFailover(rs, FailoverOptions{Mode: FailClosed, MinBackoff: 20 * time.Millisecond, MaxBackoff: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.Close() })
	l := newLimiter(t, f, newFakeClock())
	p := &Policy{Name: "p", Limits: []*Limit{{Name: "p/1m/requests", Scope: PerTenant, Metric: Requests, Window: Minute, Max: 100}}}
	ctx := context.Background()
	var d Decision
	if r, err := l.Admit(ctx, Identity{Tenant: "t"}, []*Policy{p}, Estimate{}, &d); r == nil || err != nil {
		t.Fatalf("refused while Redis is up: %v", err)
	}
	srv.Stop()
	for range 3 {
		if _, err := l.Admit(ctx, Identity{Tenant: "t"}, []*Policy{p}, Estimate{}, &d); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("closed mode with Redis down: err %v, want ErrUnavailable", err)
		}
	}
	srv.Restart()
	waitFor(t, func() bool { return !f.Down() })
	if r, err := l.Admit(ctx, Identity{Tenant: "t"}, []*Policy{p}, Estimate{}, &d); r == nil || err != nil {
		t.Fatalf("not recovered: %v", err)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestRedisStore_KeysCannotCollide(t *testing.T) {
	s := &RedisStore{prefix: "p:"}
	l := &Limit{Name: "n"}
	a := s.key(&charge{limit: l, sub: subject{key: "a:1", tenant: "b"}})
	b := s.key(&charge{limit: l, sub: subject{key: "a", tenant: "1:b"}})
	if a == b || !strings.HasPrefix(a, "p:n:") {
		t.Fatalf("keys %q and %q", a, b)
	}
}

// The Lua scripts must do exactly what the in-memory counters do: the same
// random sequence of admissions, settlements and clock moves, run against
// both stores, gets the same decisions, usage, reset and retry times.
func TestRedisStore_AgreesWithMemoryStore(t *testing.T) {
	srv := testredis.Start(t)
	clock := newFakeClock()
	mem := newLimiter(t, NewMemoryStore(), clock)
	red := newLimiter(t, newTestRedisStore(t, srv.Addr), clock)
	pols := []*Policy{{Name: "p", DefaultOutputTokens: 30, Limits: []*Limit{
		{Name: "p/10s/total", Scope: PerTenant, Metric: TotalTokens, Window: WindowOf(10 * time.Second), Max: 900},
		{Name: "p/1m/requests", Scope: PerTenant | PerModel, Metric: Requests, Window: Minute, Max: 40},
		{Name: "p/1h/output", Scope: PerKey, Metric: OutputTokens, Window: Hour, Max: 2000},
	}}}
	ctx := context.Background()
	type held struct{ m, r *Reservation }
	var open []held
	seed := uint64(7)
	next := func(n uint64) uint64 {
		seed = seed*6364136223846793005 + 1442695040888963407
		return (seed >> 33) % n
	}
	var dm, dr Decision
	admitted, refused, extended := 0, 0, 0
	for step := range 1500 {
		switch op := next(10); {
		case op < 5:
			id := Identity{Key: []string{"k1", "k2"}[next(2)], Tenant: []string{"t1", "t2"}[next(2)], Model: []string{"a", "b"}[next(2)]}
			est := Estimate{InputTokens: int64(next(60)), MaxOutputTokens: int64(next(50))}
			rm, err1 := mem.Admit(ctx, id, pols, est, &dm)
			rr, err2 := red.Admit(ctx, id, pols, est, &dr)
			if err1 != nil || err2 != nil {
				t.Fatal(err1, err2)
			}
			if (rm == nil) != (rr == nil) || dm.RetryAfter != dr.RetryAfter || dm.Refused != dr.Refused {
				t.Fatalf("step %d: memory admitted %v (retry %v, refused %v), redis %v (retry %v, refused %v)",
					step, rm != nil, dm.RetryAfter, dm.Refused, rr != nil, dr.RetryAfter, dr.Refused)
			}
			for i, u := range dm.Usage() {
				v := dr.Usage()[i]
				if u.Used != v.Used || u.ResetIn != v.ResetIn || u.Exhausted != v.Exhausted {
					t.Fatalf("step %d, limit %s: memory %+v, redis %+v", step, u.Limit.Name, u, v)
				}
			}
			if rm != nil {
				open = append(open, held{rm, rr})
				admitted++
			} else {
				refused++
			}
		case op == 5 && len(open) > 0:
			h := open[next(uint64(len(open)))]
			need := int64(next(40))
			okm, err1 := h.m.Extend(ctx, need)
			okr, err2 := h.r.Extend(ctx, need)
			if err1 != nil || err2 != nil || okm != okr || h.m.ReservedOutput() != h.r.ReservedOutput() {
				t.Fatalf("step %d: extend by %d: memory %v (%d), redis %v (%d)", step, need, okm, h.m.ReservedOutput(), okr, h.r.ReservedOutput())
			}
			if okm {
				extended++
			}
		case op < 8 && len(open) > 0:
			i := int(next(uint64(len(open))))
			h := open[i]
			open = append(open[:i], open[i+1:]...)
			in, out := int64(next(80)), int64(next(60))
			if err := h.m.Settle(ctx, in, out); err != nil {
				t.Fatal(err)
			}
			if err := h.r.Settle(ctx, in, out); err != nil {
				t.Fatal(err)
			}
			red.Store().(*RedisStore).Flush()
		default:
			clock.Advance(time.Duration(next(4000)) * time.Millisecond)
		}
	}
	t.Logf("%d admitted, %d refused, %d top-ups", admitted, refused, extended)
	if admitted < 100 || refused < 100 || extended < 10 {
		t.Fatal("the sequence does not exercise both admission and refusal")
	}
}
