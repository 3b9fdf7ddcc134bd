package sim

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// ErrEngineStopped is the error of sequences still in the engine when it
// shuts down.
var ErrEngineStopped = errors.New("engine stopped")

// ErrAborted is the error of a sequence its client abandoned.
var ErrAborted = errors.New("request aborted")

type seqState uint8

const (
	stateWaiting seqState = iota
	stateRunning
	stateFinished
	stateAborted
)

// Sequence is one request inside an engine. The engine owns its fields;
// the HTTP handler reads progress through the exported methods.
type Sequence struct {
	adapter   string
	finish    string
	tokens    []uint32 // prompt followed by every output token to be generated
	promptLen int
	outputLen int

	// Guarded by the engine's lock.
	state     seqState
	computed  int     // tokens whose KV is in the cache
	blocks    []int32 // KV blocks, in token order
	hashes    []uint64
	committed int  // leading blocks committed to the prefix cache
	admitted  bool // admitted at least once (for queue time and cached tokens)
	arrival   time.Time
	lastToken time.Time

	generated atomic.Int32
	cached    atomic.Int32
	err       error // set before done is closed
	notify    chan struct{}
	done      chan struct{}
}

// Generated is how many output tokens exist so far.
func (s *Sequence) Generated() int { return int(s.generated.Load()) }

// CachedTokens is how many prompt tokens were served from the prefix cache
// at first admission.
func (s *Sequence) CachedTokens() int { return int(s.cached.Load()) }

// PromptTokens is the prompt length in tokens.
func (s *Sequence) PromptTokens() int { return s.promptLen }

// OutputTokens is the number of tokens the sequence will generate.
func (s *Sequence) OutputTokens() int { return s.outputLen }

// Notify receives a value whenever new tokens exist; several tokens may be
// behind one value, so readers compare Generated with what they have sent.
func (s *Sequence) Notify() <-chan struct{} { return s.notify }

// Done is closed when the sequence has finished, been aborted or failed.
func (s *Sequence) Done() <-chan struct{} { return s.done }

// Err is nil after a normal finish; valid once Done is closed.
func (s *Sequence) Err() error { return s.err }

func (s *Sequence) known() int { return s.promptLen + int(s.generated.Load()) }

// Engine simulates one model server's scheduler and GPU: continuous
// batching with chunked prefill, FCFS admission bounded by KV blocks,
// max-num-seqs and LoRA slots, preemption by recomputation when the KV cache
// runs out, and a step-time model for how long each step takes.
type Engine struct {
	cfg     Config
	metrics *engineMetrics

	wake chan struct{}

	mu       sync.Mutex
	kv       *kvCache
	waiting  []*Sequence
	running  []*Sequence
	resident []string // LoRA adapters in GPU slots, least recently used first
	stopped  bool
	stats    engineStats
	// sink receives the KV-cache events of each schedule and apply, in
	// order, with mu held; nil when events are off. It must not block.
	sink func([]kvEvent)
}

// engineStats are the engine's monotonic counters, read by the collector.
type engineStats struct {
	promptTokens     uint64
	generationTokens uint64
	prefixQueries    uint64
	prefixHits       uint64
	preemptions      uint64
	kvRefusals       uint64
	finished         map[string]uint64 // by finish reason
	steps            uint64
	busy             time.Duration // simulated time spent in steps
}

// NewEngine builds an idle engine; Run drives it.
func NewEngine(cfg Config, m *engineMetrics) *Engine {
	return &Engine{
		cfg:     cfg,
		metrics: m,
		wake:    make(chan struct{}, 1),
		kv:      newKVCache(cfg.KVCacheBlocks, cfg.BlockSize),
		stats:   engineStats{finished: map[string]uint64{}},
	}
}

// Request is what the HTTP layer asks the engine to run.
type Request struct {
	// Prompt and Output are token ids; Output holds every token the request
	// will generate (its length is the output length).
	Prompt, Output []uint32
	// Adapter is the LoRA adapter, "" for the base model.
	Adapter string
	// FinishReason is reported when the last token is generated.
	FinishReason string
}

// Submit queues a request.
func (e *Engine) Submit(r Request) (*Sequence, error) {
	prompt, output := r.Prompt, r.Output
	if len(output) == 0 {
		return nil, errors.New("a request must generate at least one token")
	}
	total := len(prompt) + len(output)
	if need := ceilDiv(total, e.cfg.BlockSize); need > e.cfg.KVCacheBlocks {
		return nil, fmt.Errorf("request needs %d KV blocks (%d tokens) but the cache has %d", need, total, e.cfg.KVCacheBlocks)
	}
	tokens := make([]uint32, 0, total)
	tokens = append(append(tokens, prompt...), output...)
	s := &Sequence{
		adapter:   r.Adapter,
		finish:    r.FinishReason,
		tokens:    tokens,
		promptLen: len(prompt),
		outputLen: len(output),
		arrival:   time.Now(),
		notify:    make(chan struct{}, 1),
		done:      make(chan struct{}),
	}
	e.mu.Lock()
	if e.stopped {
		e.mu.Unlock()
		return nil, ErrEngineStopped
	}
	if e.cfg.KVFullStatus != 0 && !e.fitsNow(s) {
		e.stats.kvRefusals++
		e.mu.Unlock()
		return nil, ErrKVCacheFull
	}
	s.state = stateWaiting
	e.waiting = append(e.waiting, s)
	e.mu.Unlock()
	e.kick()
	return s, nil
}

// ErrKVCacheFull is Submit's answer, with Config.KVFullStatus set, for a
// request the KV cache cannot admit now.
var ErrKVCacheFull = errors.New("the KV cache has no room for this request now")

// fitsNow reports whether the KV cache has room for s's prompt now (e.mu
// held): its uncached blocks, on top of what the requests already waiting
// will take, are free.
func (e *Engine) fitsNow(s *Sequence) bool {
	bs := e.cfg.BlockSize
	reserved := 0
	for _, w := range e.waiting {
		reserved += ceilDiv(w.promptLen+1, bs)
	}
	maxHit := max((s.promptLen-1)/bs, 0)
	s.ensureHashes(maxHit, bs)
	hits, hitsInFree := e.kv.lookup(s.hashes[:maxHit])
	need := ceilDiv(s.promptLen+1, bs) - hits
	return reserved+need <= e.kv.numFree-hitsInFree
}

// Abort removes s from the engine at once, freeing its KV blocks; a client
// that went away must not hold GPU memory.
func (e *Engine) Abort(s *Sequence) {
	e.mu.Lock()
	switch s.state {
	case stateWaiting:
		e.waiting = remove(e.waiting, s)
	case stateRunning:
		e.running = remove(e.running, s)
		e.kv.release(s.blocks)
		s.blocks = nil
	default:
		e.mu.Unlock()
		return
	}
	s.state = stateAborted
	s.err = ErrAborted
	close(s.done)
	e.stats.finished["abort"]++
	e.mu.Unlock()
	e.kick()
}

func (e *Engine) kick() {
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

// step is one sequence's share of an engine step: n new tokens computed.
type step struct {
	seq *Sequence
	n   int
}

// Run drives the engine until ctx ends. An idle engine blocks; it never
// spins.
func (e *Engine) Run(ctx context.Context) {
	var plan []step
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer e.shutdown()
	for {
		e.mu.Lock()
		var d time.Duration
		plan, d = e.schedule(plan[:0])
		e.flushEvents()
		e.mu.Unlock()
		if len(plan) == 0 {
			select {
			case <-e.wake:
				continue
			case <-ctx.Done():
				return
			}
		}
		timer.Reset(e.real(d))
		select {
		case <-timer.C:
		case <-ctx.Done():
			return
		}
		e.mu.Lock()
		e.apply(plan, d)
		e.flushEvents()
		e.mu.Unlock()
		clear(plan) // drop references to finished sequences
	}
}

func (e *Engine) shutdown() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.stopped = true
	for _, s := range append(e.waiting, e.running...) {
		e.kv.release(s.blocks)
		s.blocks = nil
		s.state = stateAborted
		s.err = ErrEngineStopped
		close(s.done)
	}
	e.waiting, e.running = nil, nil
}

// real converts a simulated duration to wall-clock time.
func (e *Engine) real(d time.Duration) time.Duration {
	return time.Duration(float64(d) / e.cfg.TimeScale)
}

// simulated converts a wall-clock duration to simulated seconds.
func (e *Engine) simulated(d time.Duration) float64 {
	return d.Seconds() * e.cfg.TimeScale
}

// schedule plans the next step and returns it with its simulated duration,
// as vLLM's scheduler does: running sequences first (one decode token each,
// or their next prefill chunk), preempting the newest running sequence when
// KV blocks run out; then, if nothing was preempted, waiting sequences in
// arrival order while the token budget, max-num-seqs, LoRA slots and KV
// blocks allow. A waiting sequence that does not fit in the KV cache blocks
// those behind it (FCFS); one whose adapter has no free slot is skipped.
func (e *Engine) schedule(plan []step) ([]step, time.Duration) {
	bs := e.cfg.BlockSize
	budget := e.cfg.MaxNumBatchedTokens
	preempted := false
	for i := 0; i < len(e.running) && budget > 0; {
		s := e.running[i]
		n := min(s.known()-s.computed, budget)
		need := ceilDiv(s.computed+n, bs) - len(s.blocks)
		for need > e.kv.numFree && s.state == stateRunning {
			e.preempt(e.running[len(e.running)-1])
			preempted = true
		}
		if s.state != stateRunning {
			break
		}
		s.blocks = e.kv.allocate(s.blocks, need)
		plan = append(plan, step{s, n})
		budget -= n
		i++
	}
	if !preempted {
		plan = e.admit(plan, budget)
	}
	if len(plan) == 0 {
		return plan, 0
	}
	return plan, e.stepDuration(plan)
}

func (e *Engine) admit(plan []step, budget int) []step {
	bs := e.cfg.BlockSize
	for i := 0; i < len(e.waiting) && budget > 0 && len(e.running) < e.cfg.MaxNumSeqs; {
		s := e.waiting[i]
		if s.adapter != "" && !e.adapterActive(s.adapter) && e.activeAdapters() >= e.cfg.MaxLoRAs {
			i++ // wait for a LoRA slot; others may pass
			continue
		}
		known := s.known()
		// At least one token is always computed, to produce logits.
		maxHit := (known - 1) / bs
		s.ensureHashes(maxHit, bs)
		hits, hitsInFree := e.kv.lookup(s.hashes[:maxHit])
		computed := hits * bs
		n := min(known-computed, budget)
		need := ceilDiv(computed+n, bs) - hits
		if need > e.kv.numFree-hitsInFree {
			break // head of line: wait for KV blocks
		}
		s.blocks = e.kv.acquireCached(s.blocks[:0], s.hashes[:hits])
		s.blocks = e.kv.allocate(s.blocks, need)
		s.computed = computed
		s.committed = hits
		e.stats.prefixQueries += uint64(known)
		e.stats.prefixHits += uint64(computed)
		if !s.admitted {
			s.admitted = true
			s.cached.Store(int32(computed))
			e.metrics.queueTime.Observe(e.simulated(time.Since(s.arrival)))
		}
		e.waiting = slices.Delete(e.waiting, i, i+1)
		s.state = stateRunning
		e.running = append(e.running, s)
		plan = append(plan, step{s, n})
		budget -= n
	}
	return plan
}

// preempt evicts a running sequence to the front of the waiting queue. Its
// blocks keep their cached contents, so recomputation may hit the prefix
// cache.
func (e *Engine) preempt(s *Sequence) {
	e.running = remove(e.running, s)
	e.kv.release(s.blocks)
	s.blocks = s.blocks[:0]
	s.computed, s.committed = 0, 0
	s.state = stateWaiting
	e.waiting = slices.Insert(e.waiting, 0, s)
	e.stats.preemptions++
}

// stepDuration is the step-time model (docs/sim.md):
//
//	floor + prefill/throughput + decodes·per-seq + context·per-token + LoRA swaps
func (e *Engine) stepDuration(plan []step) time.Duration {
	p := &e.cfg.Perf
	prefill, decodes, context := 0, 0, 0
	loads := 0
	for _, st := range plan {
		s := st.seq
		if st.n == 1 && s.generated.Load() > 0 && s.computed == s.known()-1 {
			decodes++
		} else {
			prefill += st.n
		}
		context += s.computed + st.n
		if s.adapter != "" && e.touchAdapter(s.adapter) {
			loads++
		}
	}
	d := p.StepFloor.Duration +
		time.Duration(float64(prefill)/p.PrefillTokensPerSecond*float64(time.Second)) +
		time.Duration(decodes)*p.DecodeSeqCost.Duration +
		time.Duration(context)*p.ContextTokenCost.Duration +
		time.Duration(loads)*e.cfg.LoRALoadDelay.Duration
	return d
}

// touchAdapter marks adapter as most recently used in a GPU slot and
// reports whether it had to be loaded.
func (e *Engine) touchAdapter(adapter string) bool {
	if i := slices.Index(e.resident, adapter); i >= 0 {
		if i != len(e.resident)-1 {
			e.resident = append(slices.Delete(e.resident, i, i+1), adapter)
		}
		return false
	}
	if len(e.resident) >= e.cfg.MaxLoRAs {
		e.resident = slices.Delete(e.resident, 0, 1)
	}
	e.resident = append(e.resident, adapter)
	return true
}

func (e *Engine) adapterActive(adapter string) bool {
	for _, s := range e.running {
		if s.adapter == adapter {
			return true
		}
	}
	return false
}

func (e *Engine) activeAdapters() int {
	n := 0
	for i, s := range e.running {
		if s.adapter == "" {
			continue
		}
		first := true
		for _, t := range e.running[:i] {
			if t.adapter == s.adapter {
				first = false
				break
			}
		}
		if first {
			n++
		}
	}
	return n
}

// apply completes a step: computed tokens enter the KV cache (full blocks
// become prefix-cache entries) and every sequence whose known tokens are all
// computed samples its next token.
func (e *Engine) apply(plan []step, d time.Duration) {
	now := time.Now()
	e.stats.steps++
	e.stats.busy += d
	bs := e.cfg.BlockSize
	for _, st := range plan {
		s := st.seq
		if s.state != stateRunning {
			continue // aborted during the step
		}
		s.computed += st.n
		if full := s.computed / bs; full > s.committed {
			s.ensureHashes(full, bs)
			run := -1 // first block of a run newly stored, for the event
			for b := s.committed; b < full; b++ {
				if e.kv.commit(s.blocks[b], s.hashes[b]) {
					if run < 0 {
						run = b
					}
					continue
				}
				if run >= 0 {
					e.noteStored(s, run, b)
					run = -1
				}
			}
			if run >= 0 {
				e.noteStored(s, run, full)
			}
			s.committed = full
		}
		if s.computed < s.known() {
			continue // a partial prefill chunk
		}
		g := s.generated.Add(1)
		e.stats.generationTokens++
		if g == 1 {
			e.stats.promptTokens += uint64(s.promptLen)
			e.metrics.ttft.Observe(e.simulated(now.Sub(s.arrival)))
		} else {
			itl := e.simulated(now.Sub(s.lastToken))
			e.metrics.itl.Observe(itl)
			e.metrics.tpot.Observe(itl)
		}
		s.lastToken = now
		if int(g) == s.outputLen {
			e.finish(s, now)
			continue
		}
		select {
		case s.notify <- struct{}{}:
		default:
		}
	}
}

func (e *Engine) finish(s *Sequence, now time.Time) {
	e.running = remove(e.running, s)
	e.kv.release(s.blocks)
	s.blocks = nil
	s.state = stateFinished
	e.stats.finished[s.finish]++
	e.metrics.e2e.Observe(e.simulated(now.Sub(s.arrival)))
	e.metrics.promptTokens.Observe(float64(s.promptLen))
	e.metrics.generationTokens.Observe(float64(s.generated.Load()))
	close(s.done)
}

// noteStored records a BlockStored event for s's blocks from..to-1.
func (e *Engine) noteStored(s *Sequence, from, to int) {
	if !e.kv.record {
		return
	}
	bs := e.cfg.BlockSize
	ev := kvEvent{
		hashes:  slices.Clone(s.hashes[from:to]),
		tokens:  s.tokens[from*bs : to*bs], // never written after Submit
		adapter: s.adapter,
	}
	if from > 0 {
		ev.parent, ev.hasParent = s.hashes[from-1], true
	}
	e.kv.noteStored(ev)
}

// flushEvents hands the recorded KV-cache events to the sink (e.mu held).
func (e *Engine) flushEvents() {
	if e.sink == nil {
		return
	}
	if evs := e.kv.takeEvents(); len(evs) > 0 {
		e.sink(evs)
	}
}

// setEventSink turns KV-cache events on; call before Run.
func (e *Engine) setEventSink(sink func([]kvEvent)) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.sink = sink
	e.kv.record = sink != nil
}

// ResetPrefixCache empties the prefix cache, as vLLM's
// /reset_prefix_cache does, when no running sequence holds a block (vLLM
// refuses otherwise too); it reports whether it did. Subscribers to KV
// events see AllBlocksCleared.
func (e *Engine) ResetPrefixCache() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	ok := e.kv.reset()
	e.flushEvents()
	return ok
}

// CachedBlockHashes is the hash of every block in the prefix cache, sorted:
// the debug view that tests compare a router's KV-event index against.
// Hashes are the ones the replica publishes in its KV-cache events.
func (e *Engine) CachedBlockHashes() []uint64 {
	e.mu.Lock()
	h := e.kv.cachedHashes()
	e.mu.Unlock()
	slices.Sort(h)
	return h
}

// ensureHashes extends s.hashes to the first n full blocks of its tokens.
func (s *Sequence) ensureHashes(n, bs int) {
	parent := adapterSeed(s.adapter)
	if k := len(s.hashes); k > 0 {
		parent = s.hashes[k-1]
	}
	for b := len(s.hashes); b < n; b++ {
		parent = blockHash(parent, s.tokens[b*bs:(b+1)*bs])
		s.hashes = append(s.hashes, parent)
	}
}

// State is a point-in-time view of an engine, what /metrics reports.
type State struct {
	Waiting, Running int
	KVCacheUsage     float64
	// RunningAdapters and WaitingAdapters are the distinct LoRA adapters of
	// running and waiting sequences, in first-seen order.
	RunningAdapters, WaitingAdapters []string
	PromptTokens, GenerationTokens   uint64
	PrefixQueries, PrefixHits        uint64
	Preemptions                      uint64
	// KVRefusals counts requests answered with KVFullStatus.
	KVRefusals uint64
	Finished   map[string]uint64
	Steps      uint64
	// Busy is the simulated time the engine has spent computing steps.
	Busy time.Duration
}

// State reads the engine's current state.
func (e *Engine) State() State {
	e.mu.Lock()
	defer e.mu.Unlock()
	st := State{
		Waiting:          len(e.waiting),
		Running:          len(e.running),
		KVCacheUsage:     e.kv.usage(),
		RunningAdapters:  distinctAdapters(e.running),
		WaitingAdapters:  distinctAdapters(e.waiting),
		PromptTokens:     e.stats.promptTokens,
		GenerationTokens: e.stats.generationTokens,
		PrefixQueries:    e.stats.prefixQueries,
		PrefixHits:       e.stats.prefixHits,
		Preemptions:      e.stats.preemptions,
		KVRefusals:       e.stats.kvRefusals,
		Finished:         make(map[string]uint64, len(e.stats.finished)),
		Steps:            e.stats.steps,
		Busy:             e.stats.busy,
	}
	for k, v := range e.stats.finished {
		st.Finished[k] = v
	}
	return st
}

func distinctAdapters(seqs []*Sequence) []string {
	var out []string
	for _, s := range seqs {
		if s.adapter != "" && !slices.Contains(out, s.adapter) {
			out = append(out, s.adapter)
		}
	}
	return out
}

func remove(seqs []*Sequence, s *Sequence) []*Sequence {
	if i := slices.Index(seqs, s); i >= 0 {
		return slices.Delete(seqs, i, i+1)
	}
	return seqs
}

func ceilDiv(a, b int) int { return (a + b - 1) / b }
