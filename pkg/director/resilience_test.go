package director

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"

	"github.com/igw-dev/igw/pkg/datastore"
	"github.com/igw-dev/igw/pkg/director/outlier"
)

// begin starts an exchange for one chat request to testPool (as igw epp
// does: the pool is given), restricted to subset when not nil.
func begin(t *testing.T, f *fixture, subset []string) *Exchange {
	t.Helper()
	body := []byte(`{"model":"llama","messages":[{"role":"user","content":"hi"}],"max_tokens":8}`)
	x, reply := f.dir.Begin(context.Background(), &Inbound{Method: http.MethodPost, Path: "/v1/chat/completions",
		Body: body, Pool: testPool, Subset: subset})
	if reply != nil {
		t.Fatalf("refused: %d %s", reply.Status, reply.Body)
	}
	return x
}

func TestDirector_FailingEndpointLeavesTheCandidates(t *testing.T) {
	addrs := []string{"10.0.0.1:8000", "10.0.0.2:8000", "10.0.0.3:8000", "10.0.0.4:8000"}
	f := newFixture(t, addrs...)
	bad := addrs[2]
	ctx := context.Background()
	// Five 500s in a row from bad, seen as the response's status.
	for range outlier.DefaultConsecutiveFailures {
		x := begin(t, f, []string{bad})
		x.Try(ctx, bad)
		x.ResponseHeaders(http.StatusInternalServerError, "application/json")
		x.Finish(ctx, nil)
	}
	if got := f.dir.poolState(testPool).det.Ejected(); got != 1 {
		t.Fatalf("%d endpoints ejected after five 500s; want 1", got)
	}
	for i := range 50 {
		dec, err := f.dir.Decide(ctx, chat(t, "llama", fmt.Sprintf("prompt %d", i)))
		if err != nil {
			t.Fatal(err)
		}
		for _, ep := range dec.Endpoints {
			if ep.Address == bad {
				t.Fatalf("decision %d lists the ejected endpoint %s: %v", i, bad, addrsOf(dec.Endpoints))
			}
		}
	}
	// With only the ejected endpoint left (a subset hint), it stays a
	// candidate: a request to a failing server may succeed, one with no
	// candidate cannot.
	x := begin(t, f, []string{bad})
	if got := x.Endpoints(); len(got) != 1 || got[0] != bad {
		t.Fatalf("subset of the ejected endpoint only: %v", got)
	}
	x.Finish(ctx, nil)
	// When the endpoint leaves the pool, its state goes with it.
	f.store.SetPool(testPool, []datastore.EndpointSpec{{Name: addrs[0], Address: addrs[0]}, {Name: addrs[1], Address: addrs[1]}})
	f.dir.EndpointsChanged(f.store.AllEndpoints())
	if got := f.dir.poolState(testPool).det.Ejected(); got != 0 {
		t.Fatalf("%d ejected after the ejected endpoint left the pool", got)
	}
}

func TestExchange_ConnectErrorsAndFailoverCount(t *testing.T) {
	addrs := []string{"10.0.0.1:8000", "10.0.0.2:8000"}
	f := newFixture(t, addrs...)
	ctx := context.Background()
	bad, good := addrs[0], addrs[1]
	for i := range outlier.DefaultConsecutiveFailures {
		x := begin(t, f, nil)
		x.Try(ctx, bad)
		switch i % 3 {
		case 0: // igw serve: a refused connection, retried
			x.Retry(ctx, 0, errors.New("connection refused"))
		case 1: // igw epp: Envoy failed over to the other endpoint
		case 2: // igw serve: the last attempt timed out
			x.Fail(ctx, context.DeadlineExceeded)
			continue
		}
		x.Try(ctx, good)
		x.ResponseHeaders(http.StatusOK, "application/json")
		x.Finish(ctx, nil)
	}
	if got := f.dir.poolState(testPool).det.Ejected(); got != 1 {
		t.Fatalf("%d ejected after five failures of %s; want 1", got, bad)
	}
	// A client that leaves says nothing about the server.
	for range 2 * outlier.DefaultConsecutiveFailures {
		x := begin(t, f, []string{good})
		x.Try(ctx, good)
		x.Fail(ctx, context.Canceled)
	}
	if f.dir.poolState(testPool).det.Ejected() != 1 {
		t.Fatal("canceled requests ejected an endpoint")
	}
}

func TestExchange_RetryBudgetBoundsConcurrentRetries(t *testing.T) {
	var addrs []string // enough that 30 requests in flight saturate none
	for i := range 16 {
		addrs = append(addrs, fmt.Sprintf("10.0.0.%d:8000", i+1))
	}
	f := newFixture(t, addrs...)
	ctx := context.Background()
	var xs []*Exchange
	active := func(n int) {
		for len(xs) < n {
			x := begin(t, f, nil)
			x.Try(ctx, x.Endpoints()[0])
			xs = append(xs, x)
		}
	}
	active(10) // 20% of 10 is 2: the minimum of 3 applies
	granted := 0
	for _, x := range xs {
		if x.MayRetry() {
			granted++
		}
	}
	if granted != DefaultRetryBudgetMinRetries {
		t.Fatalf("%d of 10 active requests may retry; want the minimum %d", granted, DefaultRetryBudgetMinRetries)
	}
	if !xs[0].MayRetry() {
		t.Fatal("a request holding a retry may not retry again")
	}
	active(30) // 20% of 30 is 6
	granted = 0
	for _, x := range xs {
		if x.retrying || x.MayRetry() {
			granted++
		}
	}
	if granted != 6 {
		t.Fatalf("%d of 30 active requests retrying; want 6", granted)
	}
	// Finished requests give their places back.
	for _, x := range xs {
		x.Finish(ctx, nil)
	}
	ps := f.dir.poolState(testPool)
	if ps.active.Load() != 0 || ps.retrying.Load() != 0 {
		t.Fatalf("after every request finished: %d active, %d retrying", ps.active.Load(), ps.retrying.Load())
	}
	x := begin(t, f, nil)
	x.Try(ctx, x.Endpoints()[0])
	if !x.MayRetry() {
		t.Fatal("a lone request may not retry")
	}
	x.Finish(ctx, nil)
}

func TestRetryBudget_Limit(t *testing.T) {
	for _, tc := range []struct {
		b      RetryBudget
		active int64
		want   int64
	}{
		{DefaultRetryBudget(), 0, 3},
		{DefaultRetryBudget(), 15, 3},
		{DefaultRetryBudget(), 100, 20},
		{RetryBudget{Percent: 50}, 9, 4},
		{RetryBudget{}, 100, 0},
	} {
		if got := tc.b.limit(tc.active); got != tc.want {
			t.Errorf("%+v with %d active: %d; want %d", tc.b, tc.active, got, tc.want)
		}
	}
}

func TestDistinct_NeverListsAnEndpointTwice(t *testing.T) {
	a := datastore.NewEndpoint("a", "10.0.0.1:8000", testPool, datastore.EngineVLLM, nil)
	b := datastore.NewEndpoint("b", "10.0.0.2:8000", testPool, datastore.EngineVLLM, nil)
	c := datastore.NewEndpoint("c", "10.0.0.3:8000", testPool, datastore.EngineVLLM, nil)
	in := []*datastore.Endpoint{a, b, c}
	if out := distinct(in); &out[0] != &in[0] || len(out) != 3 {
		t.Fatal("a list without repeats was copied or changed")
	}
	if got := addrsOf(distinct([]*datastore.Endpoint{a, b, a, c, b})); fmt.Sprint(got) != "[10.0.0.1:8000 10.0.0.2:8000 10.0.0.3:8000]" {
		t.Fatalf("got %v", got)
	}
}

func TestOutcomeOf(t *testing.T) {
	for _, tc := range []struct {
		status int
		err    error
		want   outlier.Outcome
	}{
		{200, nil, outlier.Success},
		{429, nil, outlier.Success},
		{500, nil, outlier.Failure},
		{503, nil, outlier.Failure},
		{0, errors.New("dial tcp: connection refused"), outlier.Failure},
		{0, fmt.Errorf("read: %w", context.DeadlineExceeded), outlier.Failure},
		{0, fmt.Errorf("read: %w", context.Canceled), outlier.Abandoned},
		{0, errNotServed, outlier.Abandoned},
		{0, nil, outlier.Abandoned},
	} {
		if got := outcomeOf(tc.status, tc.err); got != tc.want {
			t.Errorf("outcomeOf(%d, %v) = %v; want %v", tc.status, tc.err, got, tc.want)
		}
	}
}
