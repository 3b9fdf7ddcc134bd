package prefix

import (
	"context"
	"encoding/json"
	"sync"
	"sync/atomic"

	"github.com/cespare/xxhash/v2"

	"github.com/igw-dev/igw/pkg/datastore"
	"github.com/igw-dev/igw/pkg/scheduling"
)

// Type is the plugin's type name in EndpointPickerConfig.
const Type = "prefix-cache-scorer"

// Defaults, as commonly deployed (REFERENCE §1).
const (
	DefaultBlockSize              = 64
	DefaultMaxPrefixBlocksToMatch = 256
	DefaultLRUCapacityPerServer   = 31250
	DefaultMaxQueueImbalance      = 4
)

// Parameter bounds; values outside them are configuration mistakes.
const (
	maxBlockSize   = 1 << 20
	maxBlocksLimit = 1 << 16
	maxLRUCapacity = 1 << 26
)

var (
	_ scheduling.Scorer            = (*Scorer)(nil)
	_ scheduling.PreRequest        = (*Scorer)(nil)
	_ scheduling.EndpointForgetter = (*Scorer)(nil)
	_ scheduling.CostModelUser     = (*Scorer)(nil)
)

// Parameters are the prefix-cache-scorer's configuration; see the package
// doc.
type Parameters struct {
	// BlockSize is the number of prompt bytes per hashed block.
	BlockSize int `json:"blockSize"`
	// MaxPrefixBlocksToMatch caps the blocks hashed from the prompt's start.
	MaxPrefixBlocksToMatch int `json:"maxPrefixBlocksToMatch"`
	// LRUCapacityPerServer is how many blocks are remembered per endpoint.
	LRUCapacityPerServer int `json:"lruCapacityPerServer"`
	// MaxQueueImbalance is how many more waiting requests than the least
	// loaded candidate an endpoint may have and still get its prefix
	// score; beyond it the cached prefix is not worth the wait, and the
	// endpoint scores 0. Negative disables the check.
	MaxQueueImbalance int `json:"maxQueueImbalance"`
}

// rawParameters is what the configuration may contain: Parameters plus
// hashBlockSize, the older name of blockSize, accepted so configurations
// written for other pickers load.
type rawParameters struct {
	BlockSize              *int `json:"blockSize"`
	HashBlockSize          *int `json:"hashBlockSize"`
	MaxPrefixBlocksToMatch *int `json:"maxPrefixBlocksToMatch"`
	LRUCapacityPerServer   *int `json:"lruCapacityPerServer"`
	MaxQueueImbalance      *int `json:"maxQueueImbalance"`
}

// DefaultParameters are the values used for parameters not configured.
func DefaultParameters() Parameters {
	return Parameters{
		BlockSize:              DefaultBlockSize,
		MaxPrefixBlocksToMatch: DefaultMaxPrefixBlocksToMatch,
		LRUCapacityPerServer:   DefaultLRUCapacityPerServer,
		MaxQueueImbalance:      DefaultMaxQueueImbalance,
	}
}

// Validate rejects out-of-range values, naming the parameter.
func (p Parameters) Validate() error {
	switch {
	case p.BlockSize < 1 || p.BlockSize > maxBlockSize:
		return scheduling.ParamError("blockSize", "must be between 1 and %d, got %d", maxBlockSize, p.BlockSize)
	case p.MaxPrefixBlocksToMatch < 1 || p.MaxPrefixBlocksToMatch > maxBlocksLimit:
		return scheduling.ParamError("maxPrefixBlocksToMatch", "must be between 1 and %d, got %d", maxBlocksLimit, p.MaxPrefixBlocksToMatch)
	case p.LRUCapacityPerServer < 1 || p.LRUCapacityPerServer > maxLRUCapacity:
		return scheduling.ParamError("lruCapacityPerServer", "must be between 1 and %d, got %d", maxLRUCapacity, p.LRUCapacityPerServer)
	}
	return nil
}

// Scorer is the approximate prefix-cache scorer and its index.
type Scorer struct {
	name     string
	params   Parameters
	stateKey scheduling.StateKey
	index    *Index
	scratch  sync.Pool // *scoreScratch for Index.score
	// costs prices the load bound when the profile has a cost model (a
	// latency-scorer); nil until one is handed over.
	costs atomic.Pointer[costModel]
}

// costModel boxes the scheduler's cost model for an atomic pointer.
type costModel struct{ scheduling.CostModel }

// UseCostModel implements scheduling.CostModelUser: from then on the load
// bound compares, per holder of the prefix, the prefill its hit saves
// with the wait its longer queue adds (see overBound).
func (s *Scorer) UseCostModel(cm scheduling.CostModel) {
	if cm != nil {
		s.costs.Store(&costModel{cm})
	}
}

// New returns a prefix-cache scorer named name; p must be valid.
func New(name string, p Parameters) *Scorer {
	s := &Scorer{
		name:     name,
		params:   p,
		stateKey: scheduling.StateKey(Type + "/" + name),
		index:    NewIndex(p.LRUCapacityPerServer),
	}
	s.scratch.New = func() any { return new(scoreScratch) }
	return s
}

// Factory builds a prefix-cache-scorer from configuration.
func Factory(name string, raw json.RawMessage) (scheduling.Plugin, error) {
	var rp rawParameters
	if err := scheduling.DecodeParameters(raw, &rp); err != nil {
		return nil, err
	}
	p := DefaultParameters()
	if rp.BlockSize != nil && rp.HashBlockSize != nil && *rp.BlockSize != *rp.HashBlockSize {
		return nil, scheduling.ParamError("hashBlockSize", "conflicts with blockSize (%d vs %d); set only blockSize", *rp.HashBlockSize, *rp.BlockSize)
	}
	for _, v := range []struct {
		from *int
		to   *int
	}{{rp.HashBlockSize, &p.BlockSize}, {rp.BlockSize, &p.BlockSize},
		{rp.MaxPrefixBlocksToMatch, &p.MaxPrefixBlocksToMatch}, {rp.LRUCapacityPerServer, &p.LRUCapacityPerServer},
		{rp.MaxQueueImbalance, &p.MaxQueueImbalance}} {
		if v.from != nil {
			*v.to = *v.from
		}
	}
	if err := p.Validate(); err != nil {
		return nil, err
	}
	return New(name, p), nil
}

// Register adds the prefix-cache-scorer type to r.
func Register(r *scheduling.Registry) error { return r.Register(Type, Factory) }

// TypedName identifies the instance.
func (s *Scorer) TypedName() scheduling.TypedName {
	return scheduling.TypedName{Type: Type, Name: s.name}
}

// Parameters returns the instance's effective configuration.
func (s *Scorer) Parameters() Parameters { return s.params }

// Index exposes the scorer's index, e.g. for size metrics.
func (s *Scorer) Index() *Index { return s.index }

// blocks is the per-request state: the prompt's block hashes, computed once
// and shared by Score and PreRequest. The inline buffer holds a 4 KiB
// prompt at the default block size without a second allocation.
type blocks struct {
	hashes []uint64
	buf    [64]uint64
	// For scheduling.CachedPrompt: the matched blocks of each candidate
	// of the last cycle scored (aligned to the cycle's candidate slice).
	s       *Scorer
	matched []int32
	cycle   []scheduling.Candidate
	// sentTo held sentRun blocks when PreRequest recorded the request
	// there, so CachedBytes reports what it held before, not the prompt
	// it was just credited with.
	sentTo  *datastore.Endpoint
	sentRun int
}

var _ scheduling.CachedPrompt = (*blocks)(nil)

// CachedBytesAt implements scheduling.CachedPrompt.
func (b *blocks) CachedBytesAt(cands []scheduling.Candidate, i int) int {
	if len(cands) == len(b.cycle) && len(cands) > 0 && &cands[0] == &b.cycle[0] {
		return int(b.matched[i]) * b.s.params.BlockSize
	}
	return b.CachedBytes(cands[i].Endpoint)
}

// CachedBytes implements scheduling.CachedPrompt.
func (b *blocks) CachedBytes(ep *datastore.Endpoint) int {
	if ep == b.sentTo {
		return b.sentRun * b.s.params.BlockSize
	}
	return b.s.index.runOf(b.hashes, ep.Address) * b.s.params.BlockSize
}

// Hashes returns req's block hashes, computing them on first use and
// caching them in the request's CycleState.
func (s *Scorer) Hashes(req *scheduling.Request) []uint64 {
	st := req.State()
	if v, ok := st.Read(s.stateKey); ok {
		return v.(*blocks).hashes
	}
	b := &blocks{}
	n := len(req.Prompt) / s.params.BlockSize
	if n > s.params.MaxPrefixBlocksToMatch {
		n = s.params.MaxPrefixBlocksToMatch
	}
	dst := b.buf[:0]
	if n > len(b.buf) {
		dst = make([]uint64, 0, n)
	}
	b.hashes = AppendBlockHashes(dst, req.EffectiveModel(), req.Prompt, s.params.BlockSize, s.params.MaxPrefixBlocksToMatch)
	st.Write(s.stateKey, b)
	return b.hashes
}

// Score implements scheduling.Scorer: the fraction of the prompt's blocks,
// counted from the start and without gaps, that the endpoint was recently
// sent.
func (s *Scorer) Score(_ context.Context, req *scheduling.Request, cands []scheduling.Candidate, scores []float64) {
	hashes := s.Hashes(req)
	sc := s.scratch.Get().(*scoreScratch)
	s.index.score(hashes, cands, scores, sc)
	s.scratch.Put(sc)
	s.publishCached(req, hashes, cands, scores)
	bound := s.overBound(cands, scores, len(hashes))
	held, dropped := false, false
	for i := range cands {
		switch {
		case scores[i] > 0 && bound.over(i):
			scores[i] = -1 // a holder over the bound: no spill target either
			dropped = true
		case scores[i] > 0:
			held = true
		}
	}
	if !held {
		s.spill(hashes, cands, scores, bound.over)
	}
	if dropped {
		for i, v := range scores {
			if v < 0 {
				scores[i] = 0
			}
		}
	}
}

// publishCached records under scheduling.CachedPromptKey how many prompt
// bytes each candidate holds (its matched blocks; scores are still the
// plain match fractions), before the load bound and the spill change the
// scores: a latency predictor needs what is cached, not what is preferred.
func (s *Scorer) publishCached(req *scheduling.Request, hashes []uint64, cands []scheduling.Candidate, scores []float64) {
	if !req.WantsCachedPrompt() {
		return
	}
	v, _ := req.State().Read(s.stateKey)
	b := v.(*blocks)
	if cap(b.matched) < len(cands) {
		b.matched = make([]int32, len(cands))
	}
	b.matched = b.matched[:len(cands)]
	for i := range cands {
		b.matched[i] = int32(scores[i]*float64(len(hashes)) + 0.5)
	}
	b.s, b.cycle = s, cands
	req.State().Write(scheduling.CachedPromptKey, b)
}

// overBound reports, for a candidate index, whether the candidate is over
// the load bound and gets no prefix score: a cached prefix saves one
// prefill, a queue delays every request behind it, and without the bound a
// hot shared prefix sends all of its traffic to one endpoint while others
// idle. matched are the candidates' match fractions of a prompt of n
// blocks (the scores before the bound).
//
// With a cost model (scheduling.CostModel, a latency-scorer in the
// profile) that has learned the candidate, a holder of the prefix is over
// the bound when the wait its extra queue adds (requests beyond the
// shortest candidate queue × its learned cost per request ahead) exceeds
// the prefill its hit saves (cached KiB × its learned cost per KiB): the
// bound then follows the prompt's length and the server's speed. Otherwise
// — no cost model, nothing learned yet, or a candidate that holds nothing
// (a spill target) — it is over when its estimated waiting queue exceeds
// the shortest by more than maxQueueImbalance (never, when negative).
func (s *Scorer) overBound(cands []scheduling.Candidate, matched []float64, n int) loadBound {
	b := loadBound{cands: cands, matched: matched, n: n, limit: s.params.MaxQueueImbalance,
		shortest: shortestQueue(cands), blockKiB: float64(s.params.BlockSize) / 1024}
	if cm := s.costs.Load(); cm != nil {
		b.costs = cm.CostModel
	}
	return b
}

// loadBound is overBound's verdict for one scoring cycle: a value with a
// method rather than a closure, so a decision allocates nothing for it.
type loadBound struct {
	cands    []scheduling.Candidate
	matched  []float64
	n        int
	limit    int
	shortest int
	blockKiB float64
	costs    scheduling.CostModel // nil: the fixed bound only
}

// over reports whether candidate i is over the bound; see overBound.
func (b *loadBound) over(i int) bool {
	extra := b.cands[i].Metrics.EstimatedQueue(b.cands[i].InFlight) - b.shortest
	if extra <= 0 {
		return false
	}
	if b.costs != nil && b.matched[i] > 0 {
		if perKiB, perAhead, ok := b.costs.Costs(b.cands[i].Endpoint); ok {
			saved := b.matched[i] * float64(b.n) * b.blockKiB * perKiB
			return float64(extra)*perAhead > saved
		}
	}
	return b.limit >= 0 && extra > b.limit
}

// OverQueueBound reports, for a candidate index, whether the candidate's
// estimated waiting queue exceeds the shortest one by more than limit
// (never, with a negative limit). Such a candidate gets no prefix score: a
// cached prefix saves one prefill, a queue delays every request behind it,
// and without the bound a hot shared prefix sends all of its traffic to
// one endpoint while others idle. The precise-prefix-cache-scorer applies
// the same bound, and this scorer without a cost model.
func OverQueueBound(cands []scheduling.Candidate, limit int) func(i int) bool {
	if limit < 0 {
		return func(int) bool { return false }
	}
	shortest := shortestQueue(cands)
	return func(i int) bool { return cands[i].Metrics.EstimatedQueue(cands[i].InFlight)-shortest > limit }
}

// shortestQueue is the least estimated waiting queue among cands.
func shortestQueue(cands []scheduling.Candidate) int {
	shortest := -1
	for i := range cands {
		if q := cands[i].Metrics.EstimatedQueue(cands[i].InFlight); shortest < 0 || q < shortest {
			shortest = q
		}
	}
	return shortest
}

// spill places a prompt that no candidate within the load bound holds but
// some endpoint does — its holders are over the bound, saturated,
// ejected, or otherwise not candidates — on one endpoint chosen by
// rendezvous hashing on the deepest block held, among the candidates
// within the bound; it gets the score the holders would have. A hot group
// so grows onto a stable next replica, whose cache warms (from then on it
// holds the prefix and scores on its own), in an order of replicas fixed
// for the group, instead of onto whichever replica is idle this
// millisecond: spread that way, every replica ends up needing every hot
// prefix, hits fall and the fleet stays overloaded (docs/performance.md,
// "Where igw still loses"). A prompt nobody holds is left to the other
// scorers.
func (s *Scorer) spill(hashes []uint64, cands []scheduling.Candidate, scores []float64, over func(int) bool) {
	k := s.index.heldRun(hashes)
	if k == 0 {
		return
	}
	key := hashes[k-1]
	target, best := -1, uint64(0)
	for i := range cands {
		if scores[i] < 0 || over(i) {
			continue
		}
		if w := Rendezvous(key, cands[i].Endpoint.Address); target < 0 || w > best {
			target, best = i, w
		}
	}
	if target >= 0 {
		scores[target] = float64(k) / float64(len(hashes))
	}
}

// Rendezvous is the highest-random-weight hash of a prefix key and an
// endpoint: each key ranks the endpoints in its own stable order, and an
// endpoint leaving the pool moves only the keys it was first for. Both
// prefix scorers spill hot prefixes with it.
func Rendezvous(key uint64, address string) uint64 {
	// Finalized, so nearby keys rank differently.
	return mix64(xxhash.Sum64String(address) ^ key)
}

// PreRequest implements scheduling.PreRequest: it records that target now
// holds the request's prompt blocks.
func (s *Scorer) PreRequest(_ context.Context, req *scheduling.Request, _ *scheduling.Result, target *datastore.Endpoint) {
	if target == nil {
		return
	}
	hashes := s.Hashes(req)
	if req.WantsCachedPrompt() {
		v, _ := req.State().Read(s.stateKey)
		b := v.(*blocks)
		b.s, b.sentTo, b.sentRun = s, target, s.index.runOf(hashes, target.Address)
		req.State().Write(scheduling.CachedPromptKey, b)
	}
	s.index.Record(target.Address, hashes)
}

// ForgetEndpoint implements scheduling.EndpointForgetter.
func (s *Scorer) ForgetEndpoint(address string) { s.index.Forget(address) }
