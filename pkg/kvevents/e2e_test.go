package kvevents_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/igw-dev/igw/pkg/datastore"
	"github.com/igw-dev/igw/pkg/kvevents"
	"github.com/igw-dev/igw/pkg/sim"
)

// These tests run real simulated vLLM replicas publishing over real
// ZeroMQ TCP on 127.0.0.1 and a real Subscriber consuming them. They wait
// for conditions (bounded by a deadline), never for durations.

const deadline = 30 * time.Second

func startSim(t *testing.T, replicas, httpPort, kvPort int) *sim.Fleet {
	t.Helper()
	cfg := sim.DefaultConfig()
	cfg.Port = httpPort
	cfg.Replicas = replicas
	cfg.Model = "m"
	cfg.KVCacheBlocks = 24 // 96 tokens: a few prompts fill it
	cfg.BlockSize = 4
	cfg.MaxNumSeqs = 4
	cfg.TimeScale = 1000
	cfg.KVEvents = &sim.KVEventsConfig{EnableKVCacheEvents: true, Endpoint: "tcp://127.0.0.1:" + strconv.Itoa(kvPort)}
	f, err := sim.StartFleet(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func closeSim(t *testing.T, f *sim.Fleet) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := f.Close(ctx); err != nil {
		t.Log(err)
	}
}

// harness runs a Subscriber over the fleet's replicas; addrs maps an
// endpoint's HTTP address to its KV-events address.
type harness struct {
	t      *testing.T
	ix     *kvevents.Index
	sub    *kvevents.Subscriber
	mu     sync.Mutex
	addrs  map[string]string
	cancel context.CancelFunc
	done   chan struct{}
}

func newHarness(t *testing.T) *harness {
	h := &harness{t: t, ix: kvevents.NewIndex(0), addrs: map[string]string{}, done: make(chan struct{})}
	sub, err := kvevents.NewSubscriber(kvevents.Options{
		Index: h.ix,
		Address: func(ep *datastore.Endpoint) (string, bool) {
			h.mu.Lock()
			defer h.mu.Unlock()
			a, ok := h.addrs[ep.Address]
			return a, ok
		},
		Retry: 20 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	h.sub = sub
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	go func() { defer close(h.done); _ = sub.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-h.done })
	return h
}

func (h *harness) use(f *sim.Fleet) []*datastore.Endpoint {
	var eps []*datastore.Endpoint
	h.mu.Lock()
	for i, srv := range f.Servers() {
		addr := f.Addrs()[i]
		h.addrs[addr] = srv.KVEventsAddr()
		eps = append(eps, datastore.NewEndpoint(addr, addr, "default/pool", datastore.EngineVLLM, nil))
	}
	h.mu.Unlock()
	h.sub.SetEndpoints(eps)
	return eps
}

// eventually polls cond until it holds or the deadline passes.
func (h *harness) eventually(what string, cond func() bool) {
	h.t.Helper()
	end := time.Now().Add(deadline)
	for !cond() {
		if time.Now().After(end) {
			h.t.Fatalf("not within %v: %s", deadline, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func complete(t *testing.T, addr, prompt string) {
	t.Helper()
	if err := tryComplete(addr, prompt); err != nil {
		t.Fatal(err)
	}
}

func tryComplete(addr, prompt string) error {
	body := fmt.Sprintf(`{"model":"m","prompt":%q,"max_tokens":2,"ignore_eos":true}`, prompt)
	resp, err := http.Post("http://"+addr+"/v1/completions", "application/json", strings.NewReader(body))
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("completion: %d", resp.StatusCode)
	}
	return nil
}

func resetCache(t *testing.T, addr string) {
	t.Helper()
	resp, err := http.Post("http://"+addr+"/reset_prefix_cache", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("reset_prefix_cache: %d", resp.StatusCode)
	}
}

// sync makes the index and the replica agree from a known point: once the
// subscription delivers (ZeroMQ subscriptions join asynchronously), the
// replica's cache is reset and the index sees AllBlocksCleared.
func (h *harness) sync(addr string) {
	h.t.Helper()
	start := h.sub.Stats(addr).Batches
	i := 0
	h.eventually("first batch from "+addr, func() bool {
		i++
		complete(h.t, addr, "warm up "+strconv.Itoa(i)+" a b c d e f g h")
		return h.sub.Stats(addr).Batches > start
	})
	resetCache(h.t, addr)
	h.eventually("index of "+addr+" cleared", func() bool { return h.ix.Stats(addr).Blocks == 0 })
}

// workload sends prompts that share prefixes and overflow the 24-block
// cache many times, so blocks are stored and evicted throughout.
func workload(t *testing.T, addr string, salt string, n int) {
	t.Helper()
	if err := tryWorkload(addr, salt, n); err != nil {
		t.Fatal(err)
	}
}

func tryWorkload(addr string, salt string, n int) error {
	for i := range n {
		group := i % 3
		if err := tryComplete(addr, fmt.Sprintf("system prompt %d for group %s one two three four five six seven eight question %d of %s nine ten", group, salt, i, salt)); err != nil {
			return err
		}
	}
	return nil
}

func (h *harness) agrees(f *sim.Fleet, i int) func() bool {
	addr := f.Addrs()[i]
	return func() bool {
		return slices.Equal(h.ix.Hashes(addr), f.Servers()[i].Engine().CachedBlockHashes())
	}
}

// TestSubscriber_IndexMatchesReplicaCachesUnderEvictions is the end-to-end
// check of issue 15 parts 1 and 2: after a workload that evicts, igw's index
// holds exactly the blocks each replica's cache holds.
func TestSubscriber_IndexMatchesReplicaCachesUnderEvictions(t *testing.T) {
	f := startSim(t, 2, 0, 0)
	defer closeSim(t, f)
	h := newHarness(t)
	h.use(f)
	for _, a := range f.Addrs() {
		h.sync(a)
	}
	var wg sync.WaitGroup
	for i, a := range f.Addrs() {
		wg.Go(func() {
			if err := tryWorkload(a, "r"+strconv.Itoa(i), 30); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	for i, a := range f.Addrs() {
		h.eventually("index agrees with replica "+a, h.agrees(f, i))
		st := h.sub.Stats(a)
		if st.Gaps != 0 || st.Malformed != 0 || st.Restarts != 0 || st.Evicted == 0 {
			t.Errorf("%s: %+v", a, st)
		}
		if n := len(f.Servers()[i].Engine().CachedBlockHashes()); n != 24 {
			t.Errorf("%s caches %d blocks", a, n)
		}
		t.Logf("%s: %d blocks cached and indexed, %+v", a, h.ix.Stats(a).Blocks, st)
	}
}

// TestSubscriber_GapMarksUncertainUntilResync drops a batch on the
// replica's side (its sequence number spent, as a full queue or a slow
// subscriber does): the index stops trusting the endpoint's entries until
// the replica's cache is reset, after which it agrees again.
func TestSubscriber_GapMarksUncertainUntilResync(t *testing.T) {
	f := startSim(t, 1, 0, 0)
	defer closeSim(t, f)
	h := newHarness(t)
	h.use(f)
	a := f.Addrs()[0]
	h.sync(a)
	workload(t, a, "before", 6)
	h.eventually("index agrees before the gap", h.agrees(f, 0))

	f.Servers()[0].DropKVEventBatches(1)
	workload(t, a, "during", 6)
	h.eventually("gap seen", func() bool { return h.sub.Stats(a).Gaps == 1 })
	if st := h.ix.Stats(a); st.Uncertain == 0 {
		t.Errorf("after a gap no entry is uncertain: %+v", st)
	}
	resetCache(t, a)
	h.eventually("resynchronised by AllBlocksCleared", func() bool {
		st := h.ix.Stats(a)
		return st.Blocks == 0 && st.Uncertain == 0
	})
	workload(t, a, "after", 6)
	h.eventually("index agrees after resync", h.agrees(f, 0))
}

// TestSubscriber_RestartAndRemoval restarts a replica on the same ports
// (its sequence starts again at 0, its cache empty): the index drops the
// old entries. Then the endpoint leaves the pool and its entries go.
func TestSubscriber_RestartAndRemoval(t *testing.T) {
	f := startSim(t, 1, 0, 0)
	h := newHarness(t)
	eps := h.use(f)
	a := f.Addrs()[0]
	h.sync(a)
	workload(t, a, "old", 8)
	h.eventually("index agrees before restart", h.agrees(f, 0))
	httpPort := portOf(t, a)
	kvPort := portOf(t, strings.TrimPrefix(f.Servers()[0].KVEventsAddr(), "tcp://"))
	closeSim(t, f)

	f = startSim(t, 1, httpPort, kvPort)
	defer closeSim(t, f)
	if f.Addrs()[0] != a {
		t.Fatalf("restarted on %s, want %s", f.Addrs()[0], a)
	}
	i := 0
	h.eventually("restart seen", func() bool {
		i++
		complete(t, a, "after restart "+strconv.Itoa(i)+" p q r s t u v w")
		return h.sub.Stats(a).Restarts >= 1
	})
	// Any entry of the old process is gone: what is indexed now is a
	// subset of what the new process caches.
	cached := f.Servers()[0].Engine().CachedBlockHashes()
	for _, hsh := range h.ix.Hashes(a) {
		if _, ok := slices.BinarySearch(cached, hsh); !ok {
			t.Errorf("block %x of the old process still indexed", hsh)
		}
	}
	resetCache(t, a)
	workload(t, a, "new", 8)
	h.eventually("index agrees after restart", h.agrees(f, 0))

	h.sub.SetEndpoints(nil)
	h.eventually("endpoint forgotten", func() bool { return len(h.ix.Endpoints()) == 0 })
	if st := h.sub.Stats(a); st != (kvevents.Stats{}) {
		t.Errorf("stats of a removed endpoint: %+v", st)
	}
	if len(eps) != 1 {
		t.Errorf("%d endpoints", len(eps))
	}
}

func portOf(t *testing.T, hostport string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(hostport)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
