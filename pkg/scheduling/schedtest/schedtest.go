// Package schedtest holds helpers for testing and benchmarking scheduling
// plugins without a datastore or a running gateway: endpoints with given
// metrics, candidate snapshots as the scheduler builds them, and a
// realistic fleet for benchmarks. It is imported by tests only.
package schedtest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/igw-dev/igw/pkg/datastore"
	"github.com/igw-dev/igw/pkg/scheduling"
)

// Endpoint returns a ready endpoint at address with metrics m (nil: never
// scraped) and the given in-flight count.
func Endpoint(address string, m *datastore.Metrics, inFlight int64) *datastore.Endpoint {
	ep := datastore.NewEndpoint(address, address, "default/pool", datastore.EngineVLLM, nil)
	if m != nil {
		ep.SetMetrics(m)
	}
	ep.SetReady(true)
	ep.AddInFlight(inFlight)
	return ep
}

// Candidates snapshots endpoints the way the scheduler does, for calling a
// plugin directly.
func Candidates(eps ...*datastore.Endpoint) []scheduling.Candidate {
	out := make([]scheduling.Candidate, len(eps))
	for i, ep := range eps {
		m := ep.Metrics()
		out[i] = scheduling.Candidate{Endpoint: ep, Metrics: m, HasMetrics: m != nil, InFlight: ep.InFlight()}
		if m == nil {
			out[i].Metrics = &datastore.Metrics{}
		}
	}
	return out
}

// Score runs one scorer over eps and returns the scores.
func Score(s scheduling.Scorer, req *scheduling.Request, eps ...*datastore.Endpoint) []float64 {
	if req == nil {
		req = &scheduling.Request{}
	}
	cands := Candidates(eps...)
	scores := make([]float64, len(cands))
	s.Score(context.Background(), req, cands, scores)
	return scores
}

// Fleet returns n endpoints with realistic, varied metrics (queues 0–9,
// running 5–64, KV usage 0.1–0.9, a few LoRA adapters, 0–7 in flight),
// deterministic for a seed.
func Fleet(n int, seed uint64) []*datastore.Endpoint {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	eps := make([]*datastore.Endpoint, n)
	now := time.Now()
	for i := range eps {
		m := &datastore.Metrics{
			WaitingQueueSize:  rng.IntN(10),
			RunningRequests:   5 + rng.IntN(60),
			KVCacheUsage:      0.1 + 0.8*rng.Float64(),
			ActiveAdapters:    map[string]struct{}{fmt.Sprintf("lora-%d", rng.IntN(8)): {}},
			WaitingAdapters:   map[string]struct{}{},
			MaxActiveAdapters: 4,
			CacheBlockSize:    16,
			CacheNumBlocks:    8192,
			UpdateTime:        now,
		}
		eps[i] = Endpoint(fmt.Sprintf("10.0.%d.%d:8000", i/250, i%250), m, int64(rng.IntN(8)))
	}
	return eps
}

// Prompt returns a deterministic prompt of exactly n bytes that starts with
// the given shared prefix (a "system prompt"), followed by filler text
// specific to variant.
func Prompt(n int, prefix string, variant int) []byte {
	var b strings.Builder
	b.WriteString(prefix)
	for i := 0; b.Len() < n; i++ {
		fmt.Fprintf(&b, " user %d asks question %d about topic %d.", variant, i, (variant*31+i)%97)
	}
	return []byte(b.String()[:n])
}
