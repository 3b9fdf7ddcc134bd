package latency_test

import (
	"context"
	"encoding/json"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/igw-dev/igw/pkg/datastore"
	"github.com/igw-dev/igw/pkg/scheduling"
	"github.com/igw-dev/igw/pkg/scheduling/plugins"
	"github.com/igw-dev/igw/pkg/scheduling/plugins/latency"
	"github.com/igw-dev/igw/pkg/scheduling/schedtest"
)

// server is a synthetic endpoint whose true TTFT is base + perKiB per
// uncached KiB of prompt + perAhead per request waiting before it, and
// whose TPOT is tpot, with ±5% noise.
type server struct {
	ep                     *datastore.Endpoint
	base, perKiB, perAhead float64
	tpot                   float64
}

func (s *server) ttft(promptBytes int, ahead int) float64 {
	return s.base + s.perKiB*float64(promptBytes)/1024 + s.perAhead*float64(ahead)
}

// teach sends n streamed requests of random prompt sizes and queue states
// through the scorer's hooks, answering each as the server would.
func teach(t *testing.T, sc *latency.Scorer, s *server, n int, rng *rand.Rand) {
	t.Helper()
	ctx := context.Background()
	for range n {
		// The server runs up to 8 (its limit, learned from these
		// metrics); only a full one has requests waiting.
		running, waiting := 1+rng.IntN(8), 0
		if running == 8 {
			waiting = rng.IntN(4)
		}
		s.ep.SetMetrics(&datastore.Metrics{RunningRequests: running, WaitingQueueSize: waiting, KVCacheUsage: rng.Float64(), UpdateTime: time.Now()})
		prompt := make([]byte, 256+rng.IntN(16<<10))
		req := &scheduling.Request{Model: "m", Prompt: prompt}
		s.ep.AddInFlight(1)
		sc.PreRequest(ctx, req, nil, s.ep)
		noise := 1 + (rng.Float64()-0.5)/10
		first := s.ttft(len(prompt), waiting) * noise
		out := 50
		resp := &scheduling.Response{StatusCode: 200, Streamed: true, CompletionTokens: out,
			FirstByte: seconds(first), Duration: seconds(first + s.tpot*float64(out-1)*noise)}
		s.ep.AddInFlight(-1)
		sc.ResponseComplete(ctx, req, resp, s.ep)
	}
}

func seconds(v float64) time.Duration { return time.Duration(v * float64(time.Second)) }

func newServer(addr string, base, perKiB, perAhead, tpot float64) *server {
	return &server{ep: schedtest.Endpoint(addr, &datastore.Metrics{UpdateTime: time.Now()}, 0),
		base: base, perKiB: perKiB, perAhead: perAhead, tpot: tpot}
}

// Each endpoint of a mixed pool learns its own speed: after training, the
// predictions are close to each server's true latency, and the scorer
// ranks a short prompt and a long one differently, because one server
// has less overhead and the other prefills faster.
func TestScorer_LearnsEachEndpointOfAMixedPool(t *testing.T) {
	sc := latency.New("latency", latency.DefaultParameters())
	rng := rand.New(rand.NewPCG(1, 2))
	lowOverhead := newServer("10.0.0.1:8000", 0.005, 0.020, 0.100, 0.010) // an older GPU: little overhead, slow prefill
	fastPrefill := newServer("10.0.0.2:8000", 0.060, 0.002, 0.080, 0.006) // a bigger GPU with more overhead
	for range 4 {
		teach(t, sc, lowOverhead, 100, rng)
		teach(t, sc, fastPrefill, 100, rng)
	}
	if n := sc.Observations(lowOverhead.ep.Address); n != 400 {
		t.Fatalf("observations: %d, want 400", n)
	}
	idle := &datastore.Metrics{RunningRequests: 2, UpdateTime: time.Now()}
	for _, s := range []*server{lowOverhead, fastPrefill} {
		s.ep.SetMetrics(idle)
		for _, kib := range []int{1, 8, 15} {
			req := &scheduling.Request{Prompt: make([]byte, kib<<10)}
			p, ok := sc.PredictLatency(req, s.ep)
			if !ok {
				t.Fatalf("%s: no prediction after training", s.ep.Address)
			}
			want := s.ttft(kib<<10, 0)
			if got := p.TTFT.Seconds(); math.Abs(got-want) > 0.15*want+0.003 {
				t.Errorf("%s, %d KiB: predicted TTFT %.4fs, true %.4fs", s.ep.Address, kib, got, want)
			}
			if got := p.TPOT.Seconds(); math.Abs(got-s.tpot) > 0.15*s.tpot {
				t.Errorf("%s: predicted TPOT %.4fs, true %.4fs", s.ep.Address, got, s.tpot)
			}
		}
	}
	short := schedtest.Score(sc, &scheduling.Request{Prompt: make([]byte, 512)}, lowOverhead.ep, fastPrefill.ep)
	long := schedtest.Score(sc, &scheduling.Request{Prompt: make([]byte, 15<<10)}, lowOverhead.ep, fastPrefill.ep)
	if short[0] != 1 || short[1] >= 1 {
		t.Errorf("short prompt scores %v: want the low-overhead server first", short)
	}
	if long[1] != 1 || long[0] >= 1 {
		t.Errorf("long prompt scores %v: want the fast-prefill server first", long)
	}
}

// Queueing counts: of two equal servers, the one with requests waiting
// beyond its slots is predicted slower and scores lower.
func TestScorer_PrefersTheServerWithoutAQueue(t *testing.T) {
	sc := latency.New("latency", latency.DefaultParameters())
	rng := rand.New(rand.NewPCG(3, 4))
	a := newServer("10.0.0.1:8000", 0.02, 0.01, 0.1, 0.01)
	b := newServer("10.0.0.2:8000", 0.02, 0.01, 0.1, 0.01)
	teach(t, sc, a, 200, rng)
	teach(t, sc, b, 200, rng)
	a.ep.SetMetrics(&datastore.Metrics{RunningRequests: 8, WaitingQueueSize: 3, UpdateTime: time.Now()})
	b.ep.SetMetrics(&datastore.Metrics{RunningRequests: 8, UpdateTime: time.Now()})
	got := schedtest.Score(sc, &scheduling.Request{Prompt: make([]byte, 4096)}, a.ep, b.ep)
	if !(got[1] == 1 && got[0] < 0.5) {
		t.Errorf("scores %v: want the server without a queue at 1 and the one with three waiting well below", got)
	}
}

// Only the uncached part of the prompt is charged: with the prefix-cache
// scorer's estimate that one server holds the prompt, that server is
// predicted faster.
func TestScorer_ChargesOnlyTheUncachedPrompt(t *testing.T) {
	sc := latency.New("latency", latency.DefaultParameters())
	rng := rand.New(rand.NewPCG(5, 6))
	a := newServer("10.0.0.1:8000", 0.01, 0.02, 0.1, 0.01)
	b := newServer("10.0.0.2:8000", 0.01, 0.02, 0.1, 0.01)
	teach(t, sc, a, 200, rng)
	teach(t, sc, b, 200, rng)
	idle := &datastore.Metrics{RunningRequests: 1, UpdateTime: time.Now()}
	a.ep.SetMetrics(idle)
	b.ep.SetMetrics(idle)
	req := &scheduling.Request{Prompt: make([]byte, 12<<10)}
	req.State().Write(scheduling.CachedPromptKey, cachedOn{b.ep: 12 << 10})
	pa, _ := sc.PredictLatency(req, a.ep)
	pb, _ := sc.PredictLatency(req, b.ep)
	if !(pb.TTFT < pa.TTFT/3) {
		t.Errorf("predicted TTFT: %v without the prompt cached, %v with it; want the cached one far faster", pa.TTFT, pb.TTFT)
	}
	if got := schedtest.Score(sc, req, a.ep, b.ep); got[1] != 1 || got[0] >= 0.5 {
		t.Errorf("scores %v: want the server holding the prompt first", got)
	}
}

// A TPOT objective halves the score of a server predicted to decode too
// slowly.
func TestScorer_TPOTObjective(t *testing.T) {
	sc := latency.New("latency", latency.DefaultParameters())
	rng := rand.New(rand.NewPCG(7, 8))
	slow := newServer("10.0.0.1:8000", 0.01, 0.01, 0.1, 0.050)
	fast := newServer("10.0.0.2:8000", 0.02, 0.01, 0.1, 0.010)
	teach(t, sc, slow, 200, rng)
	teach(t, sc, fast, 200, rng)
	idle := &datastore.Metrics{RunningRequests: 1, UpdateTime: time.Now()}
	slow.ep.SetMetrics(idle)
	fast.ep.SetMetrics(idle)
	plain := schedtest.Score(sc, &scheduling.Request{Prompt: make([]byte, 256)}, slow.ep, fast.ep)
	withSLO := schedtest.Score(sc, &scheduling.Request{Prompt: make([]byte, 256), TPOTObjective: 20 * time.Millisecond}, slow.ep, fast.ep)
	if !(plain[0] == 1 && plain[1] < 1) {
		t.Fatalf("without an objective %v: want the lower-TTFT server first", plain)
	}
	if !(withSLO[1] > withSLO[0]) {
		t.Errorf("with a 20 ms TPOT objective %v: want the server that meets it first", withSLO)
	}
}

// Before any endpoint has learned, nothing is predicted (the Director
// must not shed on guesses) and scoring still works from the starting
// weights; a new endpoint is predicted from the pool's prior; a forgotten
// endpoint starts over.
func TestScorer_ColdStartPriorAndForget(t *testing.T) {
	sc := latency.New("latency", latency.DefaultParameters())
	a := newServer("10.0.0.1:8000", 0.03, 0.01, 0.1, 0.01)
	fresh := newServer("10.0.0.9:8000", 0, 0, 0, 0)
	req := &scheduling.Request{Prompt: make([]byte, 4096)}
	if _, ok := sc.PredictLatency(req, a.ep); ok {
		t.Error("predicted before learning anything")
	}
	if got := schedtest.Score(sc, req, a.ep, fresh.ep); len(got) != 2 || got[0] <= 0 || got[1] <= 0 {
		t.Errorf("cold scores %v", got)
	}
	teach(t, sc, a, 64, rand.New(rand.NewPCG(9, 10)))
	fresh.ep.SetMetrics(&datastore.Metrics{UpdateTime: time.Now()})
	p, ok := sc.PredictLatency(req, fresh.ep)
	if !ok || p.TTFT <= 0 {
		t.Errorf("new endpoint after the pool learned: %v, %v; want the prior's prediction", p, ok)
	}
	sc.ForgetEndpoint(a.ep.Address)
	if n := sc.Observations(a.ep.Address); n != 0 {
		t.Errorf("forgotten endpoint still has %d observations", n)
	}
}

// Failed, refused and unfinished responses teach nothing; a response
// that is not streamed teaches TTFT from its whole time.
func TestScorer_LearnsOnlyFromSuccess(t *testing.T) {
	sc := latency.New("latency", latency.DefaultParameters())
	ep := schedtest.Endpoint("10.0.0.1:8000", &datastore.Metrics{UpdateTime: time.Now()}, 0)
	ctx := context.Background()
	for _, resp := range []scheduling.Response{
		{StatusCode: 500, Streamed: true, FirstByte: time.Millisecond, Duration: time.Second, CompletionTokens: 10},
		{StatusCode: 200, Err: context.Canceled, Streamed: true, FirstByte: time.Millisecond, Duration: time.Second, CompletionTokens: 10},
		{StatusCode: 200, Streamed: true, Duration: time.Second}, // no token came
	} {
		req := &scheduling.Request{Prompt: []byte("hi")}
		sc.PreRequest(ctx, req, nil, ep)
		sc.ResponseComplete(ctx, req, &resp, ep)
	}
	if n := sc.Observations(ep.Address); n != 0 {
		t.Errorf("learned from %d failed responses", n)
	}
	req := &scheduling.Request{Prompt: []byte("hi")}
	sc.PreRequest(ctx, req, nil, ep)
	sc.ResponseComplete(ctx, req, &scheduling.Response{StatusCode: 200, Duration: time.Second, CompletionTokens: 10}, ep)
	if n := sc.Observations(ep.Address); n != 1 {
		t.Errorf("a plain response: %d observations, want 1", n)
	}
}

func TestFactory_Parameters(t *testing.T) {
	for _, tc := range []struct {
		raw  string
		want string // substring of the error; "" for none
	}{
		{``, ""},
		{`{"forgettingFactor": 0.99, "minObservations": 4}`, ""},
		{`{"forgettingFactor": 0.5}`, "forgettingFactor"},
		{`{"forgettingFactor": 1.5}`, "forgettingFactor"},
		{`{"minObservations": 0}`, "minObservations"},
		{`{"unknown": 1}`, "unknown"},
	} {
		_, err := latency.Factory("l", json.RawMessage(tc.raw))
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.raw, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: error %v, want one naming %s", tc.raw, err, tc.want)
		}
	}
}

// BenchmarkScore_100Endpoints is the latency scorer alone over 100
// candidates, every endpoint with a learned model.
func BenchmarkScore_100Endpoints(b *testing.B) {
	sc := latency.New("latency", latency.DefaultParameters())
	eps := schedtest.Fleet(100, 42)
	ctx := context.Background()
	for i, ep := range eps {
		for j := range 16 {
			req := &scheduling.Request{Prompt: make([]byte, 1024*(1+j%8))}
			sc.PreRequest(ctx, req, nil, ep)
			sc.ResponseComplete(ctx, req, &scheduling.Response{StatusCode: 200, Streamed: true, CompletionTokens: 20,
				FirstByte: time.Duration(10+i+j) * time.Millisecond, Duration: time.Duration(200+i+j) * time.Millisecond}, ep)
		}
	}
	cands := schedtest.Candidates(eps...)
	scores := make([]float64, len(cands))
	req := &scheduling.Request{Prompt: make([]byte, 4000)}
	b.ReportAllocs()
	for b.Loop() {
		sc.Score(ctx, req, cands, scores)
	}
}

// cachedOn is a scheduling.CachedPrompt that says which endpoints hold
// how many bytes.
type cachedOn map[*datastore.Endpoint]int

func (c cachedOn) CachedBytesAt(cands []scheduling.Candidate, i int) int { return c[cands[i].Endpoint] }
func (c cachedOn) CachedBytes(ep *datastore.Endpoint) int                { return c[ep] }

// With a latency predictor configured, the prefix-cache scorer publishes
// each candidate's cached bytes for the cycle, and after PreRequest what
// the chosen endpoint held before the request was credited to it; the
// default profile (no predictor) publishes nothing.
func TestPrefixScorerPublishesCachedPrompt(t *testing.T) {
	sched, err := plugins.NewSchedulerFromYAML([]byte(`apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: prefix-cache-scorer
  parameters: {blockSize: 4}
- type: latency-scorer
schedulingProfiles:
- name: default
  plugins:
  - pluginRef: prefix-cache-scorer
    weight: 1
  - pluginRef: latency-scorer
    weight: 1
`))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	a := schedtest.Endpoint("10.0.0.1:8000", &datastore.Metrics{UpdateTime: time.Now()}, 0)
	b := schedtest.Endpoint("10.0.0.2:8000", &datastore.Metrics{UpdateTime: time.Now()}, 0)
	warm := &scheduling.Request{Model: "m", Prompt: []byte("0000111122223333")}
	res, err := sched.Schedule(ctx, warm, []*datastore.Endpoint{a})
	if err != nil {
		t.Fatal(err)
	}
	sched.PreRequest(ctx, warm, res, a) // a now holds the prompt's 4 blocks

	req := &scheduling.Request{Model: "m", Prompt: []byte("00001111xxxxyyyy")} // shares 2 blocks
	if res, err = sched.Schedule(ctx, req, []*datastore.Endpoint{a, b}); err != nil {
		t.Fatal(err)
	}
	cp := scheduling.CachedPromptOf(req)
	if cp == nil {
		t.Fatal("no cached-prompt entry with a latency predictor configured")
	}
	if got := cp.CachedBytes(a); got != 8 {
		t.Errorf("a holds %d bytes, want 8 (two 4-byte blocks)", got)
	}
	if got := cp.CachedBytes(b); got != 0 {
		t.Errorf("b holds %d bytes, want 0", got)
	}
	sched.PreRequest(ctx, req, res, b)
	if got := cp.CachedBytes(b); got != 0 {
		t.Errorf("after PreRequest b holds %d bytes, want what it held before (0)", got)
	}

	plain, err := plugins.NewDefaultScheduler()
	if err != nil {
		t.Fatal(err)
	}
	req = &scheduling.Request{Model: "m", Prompt: []byte("0000111122223333")}
	if _, err := plain.Schedule(ctx, req, []*datastore.Endpoint{a, b}); err != nil {
		t.Fatal(err)
	}
	if scheduling.CachedPromptOf(req) != nil {
		t.Error("the default profile published cached bytes nobody reads")
	}
}

// With a latency-scorer in the configuration, the prefix-cache scorer's
// load bound is priced by what each endpoint has learned: a holder keeps
// its prefix score while the prefill its hit saves outweighs the wait its
// longer queue adds, so a long shared prompt keeps its affinity at a queue
// difference the fixed bound (4) would not allow, and a short one loses it
// at a difference the fixed bound would.
func TestPrefixScorerLoadBoundIsPricedByTheCostModel(t *testing.T) {
	const config = `apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: prefix-cache-scorer
- type: latency-scorer
schedulingProfiles:
- name: default
  plugins:
  - pluginRef: prefix-cache-scorer
    weight: 1
  - pluginRef: latency-scorer
    weight: 1
`
	sched, err := plugins.NewSchedulerFromYAML([]byte(config))
	if err != nil {
		t.Fatal(err)
	}
	var prefixScorer scheduling.Scorer
	var lat *latency.Scorer
	for _, p := range sched.Plugins() {
		switch p.TypedName().Type {
		case "prefix-cache-scorer":
			prefixScorer = p.(scheduling.Scorer)
		case latency.Type:
			lat = p.(*latency.Scorer)
		}
	}
	// Both servers prefill at 10 ms per KiB and wait 20 ms per request
	// ahead: a cached KiB is worth half a request of queue.
	rng := rand.New(rand.NewPCG(7, 7))
	a := newServer("10.0.0.1:8000", 0.02, 0.010, 0.020, 0.01)
	b := newServer("10.0.0.2:8000", 0.02, 0.010, 0.020, 0.01)
	teach(t, lat, a, 300, rng)
	teach(t, lat, b, 300, rng)
	perKiB, perAhead, ok := lat.Costs(a.ep)
	if !ok || perKiB < 0.005 || perKiB > 0.015 || perAhead < 0.005 || perAhead > 0.040 {
		t.Fatalf("learned costs %v per KiB, %v per request ahead (ok %v), want about 10 ms and 20 ms", perKiB, perAhead, ok)
	}

	ctx := context.Background()
	holderKeeps := func(promptBytes, extraQueue int) bool {
		t.Helper()
		prompt := []byte(strings.Repeat("x", promptBytes))
		prefixScorer.(scheduling.PreRequest).PreRequest(ctx, &scheduling.Request{Model: "m", Prompt: prompt}, nil, a.ep)
		cands := schedtest.Candidates(a.ep, b.ep)
		for i := range cands {
			m := datastore.Metrics{RunningRequests: 8, UpdateTime: time.Now()}
			if i == 0 {
				m.WaitingQueueSize = extraQueue
			}
			cands[i].Metrics, cands[i].InFlight = &m, 0
		}
		scores := make([]float64, len(cands))
		prefixScorer.Score(ctx, &scheduling.Request{Model: "m", Prompt: prompt}, cands, scores)
		return scores[0] > 0.9
	}
	// 16 KiB cached saves ~160 ms: worth ~8 requests ahead.
	if !holderKeeps(16<<10, 6) {
		t.Error("a 16 KiB cached prompt lost its affinity at 6 requests of extra queue (saves ~160 ms, costs ~120 ms)")
	}
	if holderKeeps(16<<10, 24) {
		t.Error("a 16 KiB cached prompt kept its affinity at 24 requests of extra queue (saves ~160 ms, costs ~480 ms)")
	}
	// 1 KiB cached saves ~10 ms: not worth one request ahead.
	if holderKeeps(1<<10, 2) {
		t.Error("a 1 KiB cached prompt kept its affinity at 2 requests of extra queue (saves ~10 ms, costs ~40 ms)")
	}
	if !holderKeeps(1<<10, 0) {
		t.Error("a 1 KiB cached prompt lost its affinity without any extra queue")
	}
}
