package peerload_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/igw-dev/igw/internal/testredis"
	"github.com/igw-dev/igw/pkg/datastore"
	"github.com/igw-dev/igw/pkg/peerload"
)

func endpoint(addr string) *datastore.Endpoint {
	return datastore.NewEndpoint(addr, addr, "default/pool", datastore.EngineVLLM, nil)
}

func sharer(t *testing.T, addr, replica string, now *time.Time) *peerload.Sharer {
	t.Helper()
	s, err := peerload.New(peerload.Options{Addr: addr, Replica: replica, Now: func() time.Time { return *now }})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSharer_ReplicasSeeEachOthersInFlight(t *testing.T) {
	srv := testredis.Start(t)
	ctx := context.Background()
	now := time.Now()
	a, b, c := sharer(t, srv.Addr, "a", &now), sharer(t, srv.Addr, "b", &now), sharer(t, srv.Addr, "c", &now)
	// Each replica has its own Endpoint objects for the same servers.
	aX, aY := endpoint("10.0.0.1:8000"), endpoint("10.0.0.2:8000")
	bX, bY := endpoint("10.0.0.1:8000"), endpoint("10.0.0.2:8000")
	cX := endpoint("10.0.0.1:8000")
	a.SetEndpoints([]*datastore.Endpoint{aX, aY})
	b.SetEndpoints([]*datastore.Endpoint{bX, bY})
	c.SetEndpoints([]*datastore.Endpoint{cX})
	aX.AddInFlight(3)
	aY.AddInFlight(1)
	bX.AddInFlight(2)
	cX.AddInFlight(4)
	for _, s := range []*peerload.Sharer{a, b, c, a, b, c} {
		if err := s.Sync(ctx); err != nil {
			t.Fatal(err)
		}
	}
	for name, got := range map[string][2]int64{
		"a sees x": {aX.InFlight(), 3 + 2 + 4}, "a sees y": {aY.InFlight(), 1},
		"b sees x": {bX.InFlight(), 2 + 3 + 4}, "b sees y": {bY.InFlight(), 1},
		"c sees x": {cX.InFlight(), 9},
	} {
		if got[0] != got[1] {
			t.Errorf("%s: in-flight %d, want %d", name, got[0], got[1])
		}
	}
	if aX.OwnInFlight() != 3 {
		t.Errorf("a's own count became %d", aX.OwnInFlight())
	}
	// A completion on b reaches a at its next sync.
	bX.AddInFlight(-2)
	_ = b.Sync(ctx)
	_ = a.Sync(ctx)
	if got := aX.InFlight(); got != 7 {
		t.Errorf("after b's completions a sees %d on x, want 7", got)
	}

	// c stops publishing (died): past the staleness bound a ignores it.
	now = now.Add(peerload.DefaultStaleness + 10*time.Millisecond)
	_ = b.Sync(ctx)
	_ = a.Sync(ctx)
	if got := aX.InFlight(); got != 3 {
		t.Errorf("a still counts the silent replica: %d on x, want 3", got)
	}
	// Its fields are deleted after ten times the bound.
	now = now.Add(10 * peerload.DefaultStaleness)
	_ = a.Sync(ctx)
	if out, err := srv.Do("HKEYS", "igw:peerload:inflight"); err != nil || strings.Contains(out, "c|") {
		t.Errorf("dead replica's fields kept: %q %v", out, err)
	}
}

func TestSharer_RedisDownFallsBackToOwnCounts(t *testing.T) {
	srv := testredis.Start(t)
	now := time.Now()
	a, b := sharer(t, srv.Addr, "a", &now), sharer(t, srv.Addr, "b", &now)
	aX, bX := endpoint("10.0.0.1:8000"), endpoint("10.0.0.1:8000")
	a.SetEndpoints([]*datastore.Endpoint{aX})
	b.SetEndpoints([]*datastore.Endpoint{bX})
	bX.AddInFlight(5)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	_ = b.Sync(context.Background())
	waitFor(t, "a sees b's requests", func() bool { return aX.InFlight() == 5 })
	srv.Stop()
	waitFor(t, "a drops b's count while redis is down", func() bool { return aX.InFlight() == 0 })
	srv.Restart()
	_ = b.Sync(context.Background())
	waitFor(t, "a sees b again", func() bool { return aX.InFlight() == 5 })
	// Stopping a removes its fields at once.
	aX.AddInFlight(1)
	waitFor(t, "b sees a", func() bool { _ = b.Sync(context.Background()); return bX.InFlight() == 6 })
	cancel()
	<-done
	_ = b.Sync(context.Background())
	if got := bX.InFlight(); got != 5 {
		t.Errorf("after a left, b counts %d, want its own 5", got)
	}
}

func TestNew_RejectsBadOptions(t *testing.T) {
	for name, o := range map[string]peerload.Options{
		"no address":      {},
		"bar in replica":  {Addr: "127.0.0.1:1", Replica: "a|b"},
		"staleness short": {Addr: "127.0.0.1:1", Interval: time.Second, Staleness: time.Second},
	} {
		if _, err := peerload.New(o); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within 10s: %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
