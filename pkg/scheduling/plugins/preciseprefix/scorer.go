package preciseprefix

import (
	"context"
	"encoding/json"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/igw-dev/igw/pkg/datastore"
	"github.com/igw-dev/igw/pkg/scheduling"
	"github.com/igw-dev/igw/pkg/scheduling/plugins/prefix"
	"github.com/igw-dev/igw/pkg/tokenizer"
)

// Type is the plugin's type name in EndpointPickerConfig.
const Type = "precise-prefix-cache-scorer"

// Defaults of the parameters.
const (
	DefaultMaxBlocksToMatch = 512
	// DefaultBlockSize is vLLM's default --block-size.
	DefaultBlockSize = 16
	// DefaultMaxSpeculativeBlocks bounds the speculative entries.
	DefaultMaxSpeculativeBlocks = 1 << 16
	// DefaultMaxQueueImbalance is the prefix-cache-scorer's.
	DefaultMaxQueueImbalance = 4
)

var (
	_ scheduling.Scorer            = (*Scorer)(nil)
	_ scheduling.PreRequest        = (*Scorer)(nil)
	_ scheduling.EndpointForgetter = (*Scorer)(nil)
)

// Index is what the scorer reads from the KV-event index;
// *kvevents.Index implements it. Keeping it an interface keeps the plugin
// ignorant of transports (ZeroMQ lives in kvevents).
type Index interface {
	// Match is how many leading blocks of hashes the endpoint with that
	// address holds for certain, for adapter key lora.
	Match(endpoint string, hashes []uint64, lora uint32) int
}

// PromptHasher turns a request into the block hashes the index keys its
// blocks by (TokenHasher: igw's chained hash of the prompt's tokens).
type PromptHasher interface {
	// BlockHashes returns the hashes of the prompt's full blocks, in
	// order, and the request's adapter key (kvevents.LoRAKey; 0 for the
	// base model); ok is false when the request cannot be hashed (no
	// tokenizer for its model), which falls back to approximate matching.
	BlockHashes(req *scheduling.Request) (hashes []uint64, lora uint32, ok bool)
}

// deps are the attached dependencies, swapped whole so a cycle reads a
// consistent pair without a lock.
type deps struct {
	index  Index
	hasher PromptHasher
}

// Scorer is the precise-prefix-cache-scorer.
type Scorer struct {
	name      string
	params    Parameters
	stateKey  scheduling.StateKey
	deps      atomic.Pointer[deps]
	spec      *speculative // nil: no speculative entries
	tokenizer *TokenHasher // from the parameters; nil without tokenizers
	// approx scores what cannot be hashed precisely (no tokenizer for the
	// model, an API the tokenizer does not render), as the
	// prefix-cache-scorer does.
	approx *prefix.Scorer
}

// Parameters are the plugin's EndpointPickerConfig parameters.
type Parameters struct {
	MaxBlocksToMatch int `json:"maxBlocksToMatch"`
	// BlockSize must equal the engines' block size (vLLM --block-size,
	// SGLang --page-size): prompts are cut into blocks of it.
	BlockSize int `json:"blockSize"`
	// Tokenizer is a directory in the Hugging Face layout
	// (tokenizer.json, tokenizer_config.json) for every model of the
	// pool; ModelTokenizers names one per model.
	Tokenizer       string            `json:"tokenizer"`
	ModelTokenizers map[string]string `json:"modelTokenizers"`
	MaxPromptBytes  int               `json:"maxPromptBytes"`
	// SpeculativeTTL, when set, makes a routed request's blocks count as
	// held by its endpoint for that long unless events say so first.
	SpeculativeTTL       scheduling.Duration `json:"speculativeTTL"`
	MaxSpeculativeBlocks int                 `json:"maxSpeculativeBlocks"`
	MaxQueueImbalance    *int                `json:"maxQueueImbalance"`
}

func (p *Parameters) defaults() {
	if p.MaxBlocksToMatch == 0 {
		p.MaxBlocksToMatch = DefaultMaxBlocksToMatch
	}
	if p.BlockSize == 0 {
		p.BlockSize = DefaultBlockSize
	}
	if p.MaxPromptBytes == 0 {
		p.MaxPromptBytes = tokenizer.DefaultMaxPromptBytes
	}
	if p.MaxSpeculativeBlocks == 0 {
		p.MaxSpeculativeBlocks = DefaultMaxSpeculativeBlocks
	}
	if p.MaxQueueImbalance == nil {
		v := DefaultMaxQueueImbalance
		p.MaxQueueImbalance = &v
	}
}

// New returns a scorer named name with parameters p (defaults filled in);
// it loads p's tokenizers. Without a PromptHasher (no tokenizer, and none
// attached) it matches approximately.
func New(name string, p Parameters) (*Scorer, error) {
	p.defaults()
	switch {
	case p.MaxBlocksToMatch < 1:
		return nil, fmt.Errorf("maxBlocksToMatch: must be ≥ 1, got %d", p.MaxBlocksToMatch)
	case p.BlockSize < 1:
		return nil, fmt.Errorf("blockSize: must be ≥ 1, got %d", p.BlockSize)
	case p.MaxPromptBytes < 1:
		return nil, fmt.Errorf("maxPromptBytes: must be ≥ 1, got %d", p.MaxPromptBytes)
	case p.MaxSpeculativeBlocks < 1:
		return nil, fmt.Errorf("maxSpeculativeBlocks: must be ≥ 1, got %d", p.MaxSpeculativeBlocks)
	}
	s := &Scorer{name: name, params: p, stateKey: scheduling.StateKey(Type + "/" + name)}
	if p.SpeculativeTTL != "" {
		ttl, err := time.ParseDuration(string(p.SpeculativeTTL))
		if err != nil || ttl <= 0 {
			return nil, fmt.Errorf("speculativeTTL: %q is not a positive duration (e.g. 2s)", p.SpeculativeTTL)
		}
		s.spec = newSpeculative(ttl, p.MaxSpeculativeBlocks)
	}
	if p.Tokenizer != "" || len(p.ModelTokenizers) > 0 {
		h, err := NewTokenHasher(p.Tokenizer, p.ModelTokenizers, p.BlockSize, p.MaxBlocksToMatch, p.MaxPromptBytes)
		if err != nil {
			return nil, err
		}
		s.tokenizer = h
		s.deps.Store(&deps{hasher: h})
	}
	ap := prefix.DefaultParameters()
	ap.MaxQueueImbalance = *p.MaxQueueImbalance
	s.approx = prefix.New(name+"/approximate", ap)
	return s, nil
}

// Factory builds a precise-prefix-cache-scorer from its parameters.
func Factory(name string, raw json.RawMessage) (scheduling.Plugin, error) {
	var p Parameters
	if err := scheduling.DecodeParameters(raw, &p); err != nil {
		return nil, err
	}
	return New(name, p)
}

// Register adds the precise-prefix-cache-scorer type to r.
func Register(r *scheduling.Registry) error { return r.Register(Type, Factory) }

// TypedName identifies the instance.
func (s *Scorer) TypedName() scheduling.TypedName {
	return scheduling.TypedName{Type: Type, Name: s.name}
}

// Parameters are the scorer's parameters, defaults filled in.
func (s *Scorer) Parameters() Parameters { return s.params }

// Attach gives the scorer the index it reads and the hasher that turns
// prompts into its keys; without both it matches approximately. Safe to
// call while scoring.
func (s *Scorer) Attach(index Index, hasher PromptHasher) {
	s.deps.Store(&deps{index: index, hasher: hasher})
}

// AttachIndex gives the scorer the index, keeping its hasher (the one its
// tokenizer parameters built): what the engine does.
func (s *Scorer) AttachIndex(index Index) {
	var hasher PromptHasher
	if d := s.deps.Load(); d != nil {
		hasher = d.hasher
	}
	s.Attach(index, hasher)
}

// Hashing reports whether the scorer can hash prompts (a PromptHasher is
// attached); without one it matches approximately, which the engine logs.
func (s *Scorer) Hashing() bool {
	d := s.deps.Load()
	return d != nil && d.hasher != nil
}

// hashed is the request's prompt hashes, computed once per request.
type hashed struct {
	hashes []uint64
	lora   uint32
	ok     bool
}

// Score implements scheduling.Scorer: the fraction of the prompt's blocks,
// from the first, the endpoint holds (reported by its events, or routed
// there within the speculative TTL); an endpoint queueing more than
// maxQueueImbalance above the shortest queue scores 0, and a prefix whose
// holders are all over that bound spills to one endpoint chosen by
// rendezvous hashing, as the prefix-cache-scorer does; a prompt no
// endpoint holds is placed by rendezvous hashing on its leading blocks. A
// request that cannot be hashed is scored approximately.
func (s *Scorer) Score(ctx context.Context, req *scheduling.Request, cands []scheduling.Candidate, scores []float64) {
	d := s.deps.Load()
	h := s.prompt(req, d)
	if !h.ok {
		s.approx.Score(ctx, req, cands, scores)
		return
	}
	if len(h.hashes) == 0 {
		clear(scores)
		return
	}
	total := float64(len(h.hashes))
	over := prefix.OverQueueBound(cands, *s.params.MaxQueueImbalance)
	held, best := false, 0
	for i := range cands {
		n := d.index.Match(cands[i].Endpoint.Address, h.hashes, h.lora)
		if s.spec != nil && n < len(h.hashes) {
			n = max(n, s.spec.run(cands[i].Endpoint.Address, h.hashes, h.lora))
		}
		best = max(best, n)
		scores[i] = float64(n) / total
		if over(i) {
			scores[i] = 0
		} else if n > 0 {
			held = true
		}
	}
	if best == 0 {
		// No endpoint reports any of the prompt: place it by rendezvous
		// hashing on its leading blocks, among the endpoints within the
		// load bound. Every igw replica computes the same place (no
		// replica's own memory decides), a prefix that every engine
		// evicted comes back to a stable endpoint, and the prefixes on
		// other endpoints are not disturbed.
		clear(scores)
		key := h.hashes[min(len(h.hashes), placementBlocks)-1]
		if target := rendezvousTarget(key, cands, over); target >= 0 {
			scores[target] = 1
		}
		return
	}
	if !held {
		if target := rendezvousTarget(h.hashes[best-1], cands, over); target >= 0 {
			scores[target] = float64(best) / total
		}
	}
}

// placementBlocks is how many leading blocks decide where a prompt no
// endpoint holds is placed: 4 blocks (64 tokens at vLLM's block size) tell
// system prompts apart while every request that shares them lands
// together.
const placementBlocks = 4

// rendezvousTarget is the candidate within the load bound that ranks
// first for key, -1 when all are over it.
func rendezvousTarget(key uint64, cands []scheduling.Candidate, over func(int) bool) int {
	target, top := -1, uint64(0)
	for i := range cands {
		if over(i) {
			continue
		}
		if w := prefix.Rendezvous(key, cands[i].Endpoint.Address); target < 0 || w > top {
			target, top = i, w
		}
	}
	return target
}

func (s *Scorer) prompt(req *scheduling.Request, d *deps) *hashed {
	if v, ok := req.State().Read(s.stateKey); ok {
		return v.(*hashed)
	}
	h := &hashed{}
	if d != nil && d.index != nil && d.hasher != nil {
		h.hashes, h.lora, h.ok = d.hasher.BlockHashes(req)
		if len(h.hashes) > s.params.MaxBlocksToMatch {
			h.hashes = h.hashes[:s.params.MaxBlocksToMatch]
		}
	}
	req.State().Write(s.stateKey, h)
	return h
}

// PreRequest implements scheduling.PreRequest: the speculative entry for
// a precisely hashed request, the approximate record for one that cannot
// be hashed.
func (s *Scorer) PreRequest(ctx context.Context, req *scheduling.Request, res *scheduling.Result, target *datastore.Endpoint) {
	if target == nil {
		return
	}
	h := s.prompt(req, s.deps.Load())
	if !h.ok {
		s.approx.PreRequest(ctx, req, res, target)
		return
	}
	if s.spec != nil && len(h.hashes) > 0 {
		s.spec.record(target.Address, h.hashes, h.lora)
	}
}

// ForgetEndpoint implements scheduling.EndpointForgetter for the
// approximate fallback's index (the KV-event index forgets on its own).
func (s *Scorer) ForgetEndpoint(address string) { s.approx.ForgetEndpoint(address) }
