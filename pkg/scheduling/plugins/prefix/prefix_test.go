package prefix

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/igw-dev/igw/pkg/datastore"
	"github.com/igw-dev/igw/pkg/scheduling"
	"github.com/igw-dev/igw/pkg/scheduling/schedtest"
)

func small(blockSize, capacity int) *Scorer {
	return New(Type, Parameters{BlockSize: blockSize, MaxPrefixBlocksToMatch: 256, LRUCapacityPerServer: capacity})
}

func req(model, prompt string) *scheduling.Request {
	return &scheduling.Request{Model: model, Prompt: []byte(prompt)}
}

func TestAppendBlockHashes_ChainsBlocksSeededByModel(t *testing.T) {
	h := func(model, prompt string, maxBlocks int) []uint64 {
		return AppendBlockHashes(nil, model, []byte(prompt), 4, maxBlocks)
	}
	base := h("m", "aaaabbbbcccc", 10)
	tests := []struct {
		name string
		got  []uint64
		want func([]uint64) bool
	}{
		{"full blocks only", h("m", "aaaabbbbccccdd", 10), func(g []uint64) bool { return slices.Equal(g, base) }},
		{"deterministic", h("m", "aaaabbbbcccc", 10), func(g []uint64) bool { return slices.Equal(g, base) }},
		{"capped at maxBlocks", h("m", "aaaabbbbcccc", 2), func(g []uint64) bool { return slices.Equal(g, base[:2]) }},
		{"another model shares nothing", h("m2", "aaaabbbbcccc", 10), func(g []uint64) bool {
			return len(g) == 3 && g[0] != base[0] && g[1] != base[1] && g[2] != base[2]
		}},
		{"a changed block changes every later hash", h("m", "aaaaXbbbcccc", 10), func(g []uint64) bool {
			return g[0] == base[0] && g[1] != base[1] && g[2] != base[2]
		}},
		{"same block text after a different prefix differs", h("m", "zzzzbbbbcccc", 10), func(g []uint64) bool { return g[1] != base[1] }},
		{"shorter than a block has no blocks", h("m", "abc", 10), func(g []uint64) bool { return len(g) == 0 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !tt.want(tt.got) {
				t.Fatalf("hashes %x (base %x)", tt.got, base)
			}
		})
	}
}

func TestPrefixScorer_PrefersLongestMatch(t *testing.T) {
	a, b, c := schedtest.Endpoint("a:1", nil, 0), schedtest.Endpoint("b:1", nil, 0), schedtest.Endpoint("c:1", nil, 0)
	const prompt = "0000111122223333"
	tests := []struct {
		name     string
		sent     map[*datastore.Endpoint]string // prompt previously sent
		model    string
		prompt   string
		want     []float64
		sentWith string // model of the previous requests
	}{
		{"full match scores 1, partial by fraction", map[*datastore.Endpoint]string{a: prompt, b: "00001111xxxxyyyy"}, "m", prompt, []float64{1, 0.5, 0}, "m"},
		{"nothing recorded scores 0", nil, "m", prompt, []float64{0, 0, 0}, "m"},
		{"other model's cache does not count", map[*datastore.Endpoint]string{a: prompt}, "m2", prompt, []float64{0, 0, 0}, "m"},
		{"longer cached prompt is a full match", map[*datastore.Endpoint]string{c: prompt + "44445555"}, "m", prompt, []float64{0, 0, 1}, "m"},
		{"prompt shorter than a block scores 0", map[*datastore.Endpoint]string{a: "00"}, "m", "00", []float64{0, 0, 0}, "m"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := small(4, 100)
			for ep, p := range tt.sent {
				s.PreRequest(context.Background(), req(tt.sentWith, p), nil, ep)
			}
			got := schedtest.Score(s, req(tt.model, tt.prompt), a, b, c)
			if !slices.Equal(got, tt.want) {
				t.Fatalf("scores %v, want %v", got, tt.want)
			}
		})
	}
}

func TestPrefixScorer_TargetModelSeedsTheChain(t *testing.T) {
	s := small(4, 100)
	a := schedtest.Endpoint("a:1", nil, 0)
	s.PreRequest(context.Background(), &scheduling.Request{Model: "alias", TargetModel: "real", Prompt: []byte("00001111")}, nil, a)
	if got := schedtest.Score(s, req("real", "00001111"), a); got[0] != 1 {
		t.Fatalf("score %v, want 1 (hashed under the target model)", got[0])
	}
}

func TestPrefixScorer_OnlyConsecutiveBlocksFromStartCount(t *testing.T) {
	s := small(4, 100)
	a := schedtest.Endpoint("a:1", nil, 0)
	r := req("m", "0000111122223333")
	hashes := s.Hashes(r)
	s.Index().Record("a:1", hashes[1:]) // everything but the first block
	if got := schedtest.Score(s, req("m", "0000111122223333"), a); got[0] != 0 {
		t.Fatalf("score %v, want 0 without the first block", got[0])
	}
	s.Index().Record("a:1", hashes[:1])
	if got := schedtest.Score(s, req("m", "0000111122223333"), a); got[0] != 1 {
		t.Fatalf("score %v, want 1", got[0])
	}
}

func TestPrefixScorer_EvictsLeastRecentBlocksPerEndpoint(t *testing.T) {
	s := small(4, 4)
	a, b := schedtest.Endpoint("a:1", nil, 0), schedtest.Endpoint("b:1", nil, 0)
	x, y := "xxxxXXXXxxxx", "yyyyYYYYyyyy"
	s.PreRequest(context.Background(), req("m", x), nil, a)
	s.PreRequest(context.Background(), req("m", x), nil, b)
	s.PreRequest(context.Background(), req("m", y), nil, a) // a: 6 blocks > 4, drops x's tail
	if got := schedtest.Score(s, req("m", y), a); got[0] != 1 {
		t.Fatalf("newest prompt score %v, want 1", got[0])
	}
	if got := schedtest.Score(s, req("m", x), a, b); got[0] != 1.0/3 || got[1] != 1 {
		t.Fatalf("x scores %v, want [1/3 1]: a keeps only x's head, b is unaffected", got)
	}
	if n := s.Index().Len(); n != 7 {
		t.Fatalf("tracked %d blocks, want 4+3", n)
	}
}

func TestPrefixScorer_ForgetEndpointDropsItsBlocks(t *testing.T) {
	s := small(4, 1000)
	a, b := schedtest.Endpoint("a:1", nil, 0), schedtest.Endpoint("b:1", nil, 0)
	for i := range 50 {
		p := fmt.Sprintf("%04d%04d%04d", i, i, i)
		s.PreRequest(context.Background(), req("m", p), nil, a)
		s.PreRequest(context.Background(), req("m", p), nil, b)
	}
	s.ForgetEndpoint("a:1")
	s.ForgetEndpoint("never-seen:1")
	if got := schedtest.Score(s, req("m", "000700070007"), a, b); !slices.Equal(got, []float64{0, 1}) {
		t.Fatalf("scores %v, want [0 1]", got)
	}
	if s.Index().Len() != 150 || s.Index().Endpoints() != 1 {
		t.Fatalf("len %d endpoints %d, want 150 and 1", s.Index().Len(), s.Index().Endpoints())
	}
}

// Scoring keeps each endpoint's index slot on the endpoint; after Forget
// the slot goes to the next new endpoint, and the forgotten endpoint's
// object (or a new one under its address) must not read that endpoint's
// blocks through the slot it kept.
func TestPrefixScorer_ReusedSlotIsNotReadThroughAForgottenEndpoint(t *testing.T) {
	s := small(4, 100)
	a, b := schedtest.Endpoint("a:1", nil, 0), schedtest.Endpoint("b:1", nil, 0)
	const p = "000011112222"
	s.PreRequest(context.Background(), req("m", p), nil, a)
	if got := schedtest.Score(s, req("m", p), a); got[0] != 1 {
		t.Fatalf("a before Forget: %v, want 1", got)
	}
	s.ForgetEndpoint("a:1")
	s.PreRequest(context.Background(), req("m", p), nil, b) // b takes a's old slot
	if got := schedtest.Score(s, req("m", p), a, b); !slices.Equal(got, []float64{0, 1}) {
		t.Fatalf("scores %v, want [0 1]: a was forgotten, b holds the prompt", got)
	}
	// An endpoint object replaced under a known address finds its blocks.
	b2 := schedtest.Endpoint("b:1", nil, 0)
	if got := schedtest.Score(s, req("m", p), b2); got[0] != 1 {
		t.Fatalf("new object for b:1 scores %v, want 1", got)
	}
}

func TestPrefixScorer_HashesThePromptOncePerRequest(t *testing.T) {
	s := small(4, 100)
	a := schedtest.Endpoint("a:1", nil, 0)
	r := req("m", "00001111")
	schedtest.Score(s, r, a)
	first := s.Hashes(r)
	r.Prompt = []byte("zzzzzzzz") // must not be rehashed
	if !slices.Equal(s.Hashes(r), first) {
		t.Fatal("hashes recomputed for the same request")
	}
	s.PreRequest(context.Background(), r, nil, a)
	if got := schedtest.Score(s, req("m", "00001111"), a); got[0] != 1 {
		t.Fatalf("PreRequest did not reuse the cycle's hashes: score %v", got[0])
	}
}

// TestIndex_MatchesReferenceModel drives the index with random records,
// evictions and forgets and compares every score with a naive model, to
// check the hash table (growth, shrinking, backward-shift deletion) and the
// linked lists.
func TestIndex_MatchesReferenceModel(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	const capacity = 300
	ix := NewIndex(capacity)
	type ref struct{ order []uint64 } // most recent first
	model := map[string]*ref{}
	addrs := []string{"a", "b", "c", "d", "e"}
	cands := make([]scheduling.Candidate, len(addrs))
	for i, a := range addrs {
		cands[i] = scheduling.Candidate{Endpoint: datastore.NewEndpoint(a, a, "p", "", nil)}
	}
	// Prompts share prefixes: chains drawn from a small tree.
	chain := func() []uint64 {
		n := 1 + rng.IntN(40)
		out := make([]uint64, n)
		for i := range out {
			out[i] = uint64(i)<<32 | uint64(rng.IntN(3)+1) // low branching
			if i > 0 {
				out[i] ^= out[i-1] * 0x9e3779b97f4a7c15
			}
			if out[i] == 0 {
				out[i] = 1
			}
		}
		return out
	}
	scores := make([]float64, len(addrs))
	var sc scoreScratch
	for step := range 10000 {
		addr := addrs[rng.IntN(len(addrs))]
		switch op := rng.IntN(100); {
		case op < 2:
			ix.Forget(addr)
			delete(model, addr)
		case op < 60:
			h := chain()
			ix.Record(addr, h)
			r := model[addr]
			if r == nil {
				r = &ref{}
				model[addr] = r
			}
			for i := len(h) - 1; i >= 0; i-- {
				r.order = slices.DeleteFunc(r.order, func(x uint64) bool { return x == h[i] })
				r.order = append([]uint64{h[i]}, r.order...)
			}
			if len(r.order) > capacity {
				r.order = r.order[:capacity]
			}
		default:
			h := chain()
			// A random subset of candidates, in random order.
			sub := slices.Clone(cands)
			rng.Shuffle(len(sub), func(i, j int) { sub[i], sub[j] = sub[j], sub[i] })
			sub = sub[:1+rng.IntN(len(sub))]
			ix.score(h, sub, scores[:len(sub)], &sc)
			for i, c := range sub {
				a := c.Endpoint.Address
				want := 0
				if r := model[a]; r != nil {
					for want < len(h) && slices.Contains(r.order, h[want]) {
						want++
					}
				}
				if got := scores[i] * float64(len(h)); int(got+0.5) != want {
					t.Fatalf("step %d: %s matched %v blocks, want %d", step, a, got, want)
				}
			}
		}
	}
	total := 0
	for _, r := range model {
		total += len(r.order)
	}
	if ix.Len() != total {
		t.Fatalf("index tracks %d blocks, model %d", ix.Len(), total)
	}
}

func TestPrefixScorer_MemoryPerTrackedBlockIsBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("fills up to 400k blocks")
	}
	// Several endpoint counts, so the tables are measured at different
	// points of their growth (just before and just after resizing).
	for _, endpoints := range []int{1, 3, 5, 8, 13} {
		t.Run(fmt.Sprintf("%dEndpoints", endpoints), func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			ix := NewIndex(DefaultLRUCapacityPerServer)
			rng := rand.New(rand.NewPCG(3, 4))
			hashes := make([]uint64, 250)
			for e := range endpoints {
				addr := fmt.Sprintf("10.0.0.%d:8000", e)
				for n := 0; n < DefaultLRUCapacityPerServer; n += len(hashes) {
					for i := range hashes {
						hashes[i] = rng.Uint64() | 1 // all distinct: the worst case
					}
					ix.Record(addr, hashes)
				}
			}
			runtime.GC()
			runtime.ReadMemStats(&after)
			blocks := ix.Len()
			if blocks != endpoints*DefaultLRUCapacityPerServer {
				t.Fatalf("tracked %d blocks, want %d", blocks, endpoints*DefaultLRUCapacityPerServer)
			}
			perBlock := float64(after.HeapAlloc-before.HeapAlloc) / float64(blocks)
			t.Logf("%d tracked blocks, %.1f bytes per block", blocks, perBlock)
			if perBlock > 64 {
				t.Fatalf("%.1f bytes per tracked block, want <= 64", perBlock)
			}
			runtime.KeepAlive(ix)
		})
	}
}

func TestPrefixScorer_ConcurrentScoringAndRecording(t *testing.T) {
	s := small(8, 500)
	eps := schedtest.Fleet(10, 1)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cands := schedtest.Candidates(eps...)
			scores := make([]float64, len(cands))
			for i := range 300 {
				r := &scheduling.Request{Model: "m", Prompt: schedtest.Prompt(256, "system prompt shared by all", (g*7+i)%13)}
				s.Score(context.Background(), r, cands, scores)
				s.PreRequest(context.Background(), r, nil, eps[(g+i)%len(eps)])
				if i%100 == 99 {
					s.ForgetEndpoint(eps[g].Address)
				}
			}
		}()
	}
	wg.Wait()
}

func TestPrefixScorer_Parameters(t *testing.T) {
	tests := []struct {
		raw     string
		want    Parameters
		wantErr string
	}{
		{"", DefaultParameters(), ""},
		{`{"blockSize": 16, "maxPrefixBlocksToMatch": 10, "lruCapacityPerServer": 100}`, Parameters{16, 10, 100, DefaultMaxQueueImbalance}, ""},
		{`{"hashBlockSize": 32}`, Parameters{32, 256, 31250, DefaultMaxQueueImbalance}, ""},
		{`{"blockSize": 32, "hashBlockSize": 16}`, Parameters{}, `parameter "hashBlockSize"`},
		{`{"blockSize": 0}`, Parameters{}, `parameter "blockSize": must be between`},
		{`{"maxPrefixBlocksToMatch": -1}`, Parameters{}, `parameter "maxPrefixBlocksToMatch"`},
		{`{"lruCapacityPerServer": 0}`, Parameters{}, `parameter "lruCapacityPerServer"`},
		{`{"blocksize": 16}`, Parameters{}, `unknown parameter "blocksize"`},
		{`{"blockSize": "big"}`, Parameters{}, `parameter "blockSize"`},
	}
	for _, tt := range tests {
		t.Run(tt.raw, func(t *testing.T) {
			p, err := Factory("prefix", json.RawMessage(tt.raw))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := p.(*Scorer).Parameters(); got != tt.want {
				t.Fatalf("parameters %+v, want %+v", got, tt.want)
			}
		})
	}
}

// warmed returns a default-parameter scorer whose index has seen traffic
// from 16 conversation groups spread over eps, and a request matching one
// group's 2,000-byte shared context.
func warmed(eps []*datastore.Endpoint) (*Scorer, *scheduling.Request) {
	s := New(Type, DefaultParameters())
	for i := range 2000 {
		group := i % 16
		r := &scheduling.Request{Model: "llama", Prompt: schedtest.Prompt(4000, strings.Repeat(fmt.Sprintf("context of group %d. ", group), 100), i)}
		s.PreRequest(context.Background(), r, nil, eps[(group*3+i%3)%len(eps)])
	}
	return s, &scheduling.Request{Model: "llama", Prompt: schedtest.Prompt(4000, strings.Repeat("context of group 5. ", 100), 99999)}
}

func BenchmarkPrefixScorer_Score(b *testing.B) {
	for _, n := range []int{25, 100} {
		b.Run(fmt.Sprintf("%dEndpoints", n), func(b *testing.B) {
			eps := schedtest.Fleet(n, 1)
			s, r := warmed(eps)
			cands := schedtest.Candidates(eps...)
			scores := make([]float64, n)
			b.ReportAllocs()
			for b.Loop() {
				r2 := &scheduling.Request{Model: r.Model, Prompt: r.Prompt} // hashed afresh
				s.Score(b.Context(), r2, cands, scores)
			}
		})
	}
}

// BenchmarkPrefixScorer_ScoreSharedHead: every endpoint holds the first
// half of the prompt (a long system prompt), three hold all of it.
func BenchmarkPrefixScorer_ScoreSharedHead(b *testing.B) {
	for _, n := range []int{25, 100} {
		b.Run(fmt.Sprintf("%dEndpoints", n), func(b *testing.B) {
			eps := schedtest.Fleet(n, 1)
			s := New(Type, DefaultParameters())
			prompt := schedtest.Prompt(4000, "", 1)
			for i, ep := range eps {
				p := prompt[:2000]
				if i%(n/3) == 0 {
					p = prompt
				}
				s.PreRequest(b.Context(), &scheduling.Request{Model: "llama", Prompt: p}, nil, ep)
			}
			cands := schedtest.Candidates(eps...)
			scores := make([]float64, n)
			b.ReportAllocs()
			for b.Loop() {
				s.Score(b.Context(), &scheduling.Request{Model: "llama", Prompt: prompt}, cands, scores)
			}
		})
	}
}

// BenchmarkPrefixScorer_ScoreEverywhereCached is the worst case for
// scoring: every endpoint holds the request's whole prompt (a system prompt
// sent everywhere), so every block's chain has one entry per endpoint.
func BenchmarkPrefixScorer_ScoreEverywhereCached(b *testing.B) {
	for _, n := range []int{25, 100} {
		b.Run(fmt.Sprintf("%dEndpoints", n), func(b *testing.B) {
			eps := schedtest.Fleet(n, 1)
			s := New(Type, DefaultParameters())
			prompt := schedtest.Prompt(4000, "", 1)
			for _, ep := range eps {
				s.PreRequest(b.Context(), &scheduling.Request{Model: "llama", Prompt: prompt}, nil, ep)
			}
			cands := schedtest.Candidates(eps...)
			scores := make([]float64, n)
			b.ReportAllocs()
			for b.Loop() {
				s.Score(b.Context(), &scheduling.Request{Model: "llama", Prompt: prompt}, cands, scores)
			}
		})
	}
}

func BenchmarkPrefixScorer_PreRequest(b *testing.B) {
	eps := schedtest.Fleet(100, 1)
	s, _ := warmed(eps)
	reqs := make([]*scheduling.Request, 64)
	for i := range reqs {
		reqs[i] = &scheduling.Request{Model: "llama", Prompt: schedtest.Prompt(4000, "shared system prompt", i)}
		s.Hashes(reqs[i])
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		s.PreRequest(b.Context(), reqs[i%len(reqs)], nil, eps[i%len(eps)])
		i++
	}
}

func BenchmarkAppendBlockHashes_4000Bytes(b *testing.B) {
	prompt := schedtest.Prompt(4000, "", 1)
	dst := make([]uint64, 0, 64)
	b.SetBytes(int64(len(prompt)))
	b.ReportAllocs()
	for b.Loop() {
		dst = AppendBlockHashes(dst[:0], "llama", prompt, DefaultBlockSize, DefaultMaxPrefixBlocksToMatch)
	}
}

func TestPrefixScorer_OverloadedHolderLosesAffinity(t *testing.T) {
	eps := schedtest.Fleet(3, 1)
	s := New(Type, DefaultParameters())
	req := &scheduling.Request{TargetModel: "m", Prompt: []byte(strings.Repeat("shared system prompt ", 40))}
	s.PreRequest(context.Background(), req, nil, eps[0])
	for _, tc := range []struct {
		name        string
		holderQueue int
		want        bool // holder keeps its prefix score
	}{
		{"balanced", 0, true},
		{"at the imbalance limit", DefaultMaxQueueImbalance, true},
		{"beyond it", DefaultMaxQueueImbalance + 1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cands := schedtest.Candidates(eps...)
			for i := range cands {
				m := *cands[i].Metrics
				m.WaitingQueueSize, m.RunningRequests = 0, 0
				if i == 0 {
					m.WaitingQueueSize = tc.holderQueue
				}
				cands[i].Metrics, cands[i].InFlight = &m, 0
			}
			scores := make([]float64, len(cands))
			s.Score(context.Background(), &scheduling.Request{TargetModel: "m", Prompt: req.Prompt}, cands, scores)
			if got := scores[0] > 0.9; got != tc.want {
				t.Fatalf("holder score %v with queue %d, want kept=%v", scores[0], tc.holderQueue, tc.want)
			}
		})
	}
}

// When the holder of a prefix is over the load bound, the prefix spills to
// one stable endpoint (the same for every request of the group), and
// different prefixes spill to different endpoints; an endpoint within the
// bound that holds the prefix already takes it without a spill.
func TestPrefixScorer_SpillsConsistently(t *testing.T) {
	eps := schedtest.Fleet(6, 1)
	s := New(Type, DefaultParameters())
	ctx := context.Background()
	groups := 12
	prompt := func(g, q int) []byte {
		return []byte(fmt.Sprintf("system prompt of group %02d. ", g) + strings.Repeat("shared context words ", 30) + fmt.Sprintf("question %d", q))
	}
	for g := range groups {
		s.PreRequest(ctx, &scheduling.Request{TargetModel: "m", Prompt: prompt(g, 0)}, nil, eps[0])
	}
	cands := func() []scheduling.Candidate {
		cs := schedtest.Candidates(eps...)
		for i := range cs {
			m := *cs[i].Metrics
			m.WaitingQueueSize, m.RunningRequests = 0, 0
			if i == 0 {
				m.WaitingQueueSize = DefaultMaxQueueImbalance + 3 // the holder is overloaded
			}
			cs[i].Metrics, cs[i].InFlight = &m, 0
		}
		return cs
	}
	spillOf := func(g, q int) int {
		cs := cands()
		scores := make([]float64, len(cs))
		s.Score(ctx, &scheduling.Request{TargetModel: "m", Prompt: prompt(g, q)}, cs, scores)
		if scores[0] != 0 {
			t.Fatalf("group %d: the overloaded holder kept score %v", g, scores[0])
		}
		top, n := -1, 0
		for i, v := range scores {
			if v > 0 {
				top, n = i, n+1
			}
		}
		if n != 1 || scores[top] < 0.5 {
			t.Fatalf("group %d question %d: scores %v, want one spill target with the holder's score", g, q, scores)
		}
		return top
	}
	targets := map[int]bool{}
	for g := range groups {
		first := spillOf(g, 1)
		for q := 2; q < 6; q++ {
			if got := spillOf(g, q); got != first {
				t.Fatalf("group %d spills to endpoint %d, then %d: not stable", g, first, got)
			}
		}
		targets[first] = true
	}
	if len(targets) < 3 {
		t.Errorf("%d groups spill to only %d endpoints: the spill does not spread", groups, len(targets))
	}

	// Once the spill target holds the prefix, it scores on its own and no
	// other endpoint is chosen.
	g := 0
	target := spillOf(g, 1)
	s.PreRequest(ctx, &scheduling.Request{TargetModel: "m", Prompt: prompt(g, 1)}, nil, eps[target])
	cs := cands()
	scores := make([]float64, len(cs))
	s.Score(ctx, &scheduling.Request{TargetModel: "m", Prompt: prompt(g, 7)}, cs, scores)
	for i, v := range scores {
		if (i == target) != (v > 0) {
			t.Fatalf("after warming endpoint %d: scores %v", target, scores)
		}
	}
}

// A holder that is not a candidate at all (saturated, ejected) spills the
// same way: to one stable endpoint among the candidates.
func TestPrefixScorer_SpillsWhenTheHolderIsNotACandidate(t *testing.T) {
	eps := schedtest.Fleet(5, 1)
	s := New(Type, DefaultParameters())
	ctx := context.Background()
	p := []byte("a hot system prompt " + strings.Repeat("with shared context ", 40))
	s.PreRequest(ctx, &scheduling.Request{TargetModel: "m", Prompt: p}, nil, eps[0])
	target := -1
	for q := range 5 {
		cs := schedtest.Candidates(eps[1:]...)
		scores := make([]float64, len(cs))
		s.Score(ctx, &scheduling.Request{TargetModel: "m", Prompt: append(p, fmt.Sprintf(" question %d", q)...)}, cs, scores)
		top, n := -1, 0
		for i, v := range scores {
			if v > 0 {
				top, n = i, n+1
			}
		}
		if n != 1 || (target >= 0 && top != target) {
			t.Fatalf("question %d: scores %v (earlier target %d)", q, scores, target)
		}
		target = top
	}
	// A prompt no endpoint holds is left to the other scorers.
	cs := schedtest.Candidates(eps[1:]...)
	scores := make([]float64, len(cs))
	s.Score(ctx, &scheduling.Request{TargetModel: "m", Prompt: []byte(strings.Repeat("never seen before ", 20))}, cs, scores)
	for _, v := range scores {
		if v != 0 {
			t.Fatalf("an unknown prompt scored %v", scores)
		}
	}
}
