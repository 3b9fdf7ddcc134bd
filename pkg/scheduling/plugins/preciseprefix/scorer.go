package preciseprefix

import (
	"context"
	"encoding/json"
	"fmt"
	"sync/atomic"

	"github.com/igw-dev/igw/pkg/scheduling"
)

// Type is the plugin's type name in EndpointPickerConfig.
const Type = "precise-prefix-cache-scorer"

// DefaultMaxBlocksToMatch bounds the prompt blocks looked up per endpoint.
const DefaultMaxBlocksToMatch = 512

var _ scheduling.Scorer = (*Scorer)(nil)

// Index is what the scorer reads from the KV-event index;
// *kvevents.Index implements it. Keeping it an interface keeps the plugin
// ignorant of transports (ZeroMQ lives in kvevents).
type Index interface {
	// Match is how many leading blocks of hashes the endpoint with that
	// address holds for certain, for adapter key lora.
	Match(endpoint string, hashes []uint64, lora uint32) int
}

// PromptHasher turns a request into the engine's block hashes of its
// prompt: the seam for issue 15 part 3 (tokenizing like the engine).
type PromptHasher interface {
	// BlockHashes returns the hashes of the prompt's full blocks, in
	// order, and the request's adapter key (kvevents.LoRAKey; 0 for the
	// base model); ok is false when the request cannot be hashed (no
	// tokenizer for its model), which gives no signal.
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
	name     string
	maxBlock int
	stateKey scheduling.StateKey
	deps     atomic.Pointer[deps]
}

// Parameters are the plugin's EndpointPickerConfig parameters.
type Parameters struct {
	MaxBlocksToMatch int `json:"maxBlocksToMatch"`
}

// New returns a scorer named name that matches at most maxBlocks blocks
// (DefaultMaxBlocksToMatch when ≤ 0). It scores 0 until Attach.
func New(name string, maxBlocks int) *Scorer {
	if maxBlocks <= 0 {
		maxBlocks = DefaultMaxBlocksToMatch
	}
	return &Scorer{name: name, maxBlock: maxBlocks, stateKey: scheduling.StateKey(Type + "/" + name)}
}

// Factory builds a precise-prefix-cache-scorer from its parameters.
func Factory(name string, raw json.RawMessage) (scheduling.Plugin, error) {
	p := Parameters{MaxBlocksToMatch: DefaultMaxBlocksToMatch}
	if err := scheduling.DecodeParameters(raw, &p); err != nil {
		return nil, err
	}
	if p.MaxBlocksToMatch < 1 {
		return nil, fmt.Errorf("maxBlocksToMatch: must be ≥ 1, got %d", p.MaxBlocksToMatch)
	}
	return New(name, p.MaxBlocksToMatch), nil
}

// Register adds the precise-prefix-cache-scorer type to r.
func Register(r *scheduling.Registry) error { return r.Register(Type, Factory) }

// TypedName identifies the instance.
func (s *Scorer) TypedName() scheduling.TypedName {
	return scheduling.TypedName{Type: Type, Name: s.name}
}

// Attach gives the scorer the index it reads and the hasher that turns
// prompts into the engine's block hashes; without both it scores 0. Safe
// to call while scoring.
func (s *Scorer) Attach(index Index, hasher PromptHasher) {
	s.deps.Store(&deps{index: index, hasher: hasher})
}

// AttachIndex gives the scorer the index, keeping its hasher: what the
// engine does today, with no tokenizer to hash prompts yet (part 3).
func (s *Scorer) AttachIndex(index Index) {
	var hasher PromptHasher
	if d := s.deps.Load(); d != nil {
		hasher = d.hasher
	}
	s.Attach(index, hasher)
}

// Hashing reports whether the scorer can hash prompts (a PromptHasher is
// attached); without one it gives no signal, which the engine logs.
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

// Score implements scheduling.Scorer.
func (s *Scorer) Score(_ context.Context, req *scheduling.Request, cands []scheduling.Candidate, scores []float64) {
	d := s.deps.Load()
	if d != nil && (d.index == nil || d.hasher == nil) {
		d = nil
	}
	h := s.prompt(req, d)
	if !h.ok || len(h.hashes) == 0 {
		clear(scores)
		return
	}
	total := float64(len(h.hashes))
	for i := range cands {
		scores[i] = float64(d.index.Match(cands[i].Endpoint.Address, h.hashes, h.lora)) / total
	}
}

func (s *Scorer) prompt(req *scheduling.Request, d *deps) *hashed {
	if v, ok := req.State().Read(s.stateKey); ok {
		return v.(*hashed)
	}
	h := &hashed{}
	if d != nil {
		h.hashes, h.lora, h.ok = d.hasher.BlockHashes(req)
		if len(h.hashes) > s.maxBlock {
			h.hashes = h.hashes[:s.maxBlock]
		}
	}
	req.State().Write(s.stateKey, h)
	return h
}
