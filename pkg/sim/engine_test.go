package sim

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// testEngine builds an engine that tests drive step by step (no Run loop),
// so simulated durations are exact and nothing sleeps.
func testEngine(t *testing.T, mutate func(*Config)) *Engine {
	t.Helper()
	cfg := DefaultConfig()
	if mutate != nil {
		mutate(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	m, attach := newMetrics(prometheus.NewRegistry(), cfg.Engine, cfg.ServedName())
	e := NewEngine(cfg, m)
	attach(e)
	return e
}

// stepOnce plans and completes one step, returning its simulated duration
// (0 when there was nothing to do).
func stepOnce(e *Engine) (time.Duration, int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	plan, d := e.schedule(nil)
	if len(plan) == 0 {
		return 0, 0
	}
	e.apply(plan, d)
	return d, len(plan)
}

// runUntil steps until cond holds, returning the simulated time it took.
func runUntil(t *testing.T, e *Engine, cond func() bool) time.Duration {
	t.Helper()
	var total time.Duration
	for i := 0; !cond(); i++ {
		if i > 1_000_000 {
			t.Fatal("engine made no progress")
		}
		d, n := stepOnce(e)
		if n == 0 {
			t.Fatal("engine idle before the condition held")
		}
		total += d
	}
	return total
}

func tokens(n int, salt uint32) []uint32 {
	out := make([]uint32, n)
	for i := range out {
		out[i] = uint32(i)*2654435761 + salt
	}
	return out
}

func submit(t *testing.T, e *Engine, prompt []uint32, outLen int, adapter string) *Sequence {
	t.Helper()
	s, err := e.Submit(Request{Prompt: prompt, Output: tokens(outLen, 7), Adapter: adapter, FinishReason: "length"})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func finished(s *Sequence) bool {
	select {
	case <-s.Done():
		return true
	default:
		return false
	}
}

func TestEngine_PrefixHitCutsPrefillTime(t *testing.T) {
	e := testEngine(t, nil)
	prompt := tokens(2000, 1)

	first := submit(t, e, prompt, 4, "")
	ttft1 := runUntil(t, e, func() bool { return first.Generated() >= 1 })
	runUntil(t, e, func() bool { return finished(first) })

	second := submit(t, e, prompt, 4, "")
	ttft2 := runUntil(t, e, func() bool { return second.Generated() >= 1 })

	if got := first.CachedTokens(); got != 0 {
		t.Errorf("first request cached %d tokens, want 0", got)
	}
	// 2000 tokens = 125 full blocks; the last token is always recomputed, so
	// 124 blocks hit.
	if got := second.CachedTokens(); got != 1984 {
		t.Errorf("second request cached %d tokens, want 1984", got)
	}
	p := DefaultConfig().Perf
	perToken := time.Duration(float64(time.Second) / p.PrefillTokensPerSecond)
	// The hit saves exactly the prefill cost of the 1984 cached tokens.
	saved := ttft1 - ttft2
	want := 1984 * perToken
	if diff := saved - want; diff < -time.Microsecond || diff > time.Microsecond {
		t.Errorf("prefix hit saved %v of prefill, want %v (ttft %v → %v)", saved, want, ttft1, ttft2)
	}
	if ttft2*3 >= ttft1 {
		t.Errorf("cached TTFT %v is not under a third of %v", ttft2, ttft1)
	}
}

func TestEngine_ChunkedPrefillRespectsTokenBudget(t *testing.T) {
	e := testEngine(t, func(c *Config) { c.MaxNumBatchedTokens = 1000 })
	s := submit(t, e, tokens(2500, 1), 2, "")
	steps := 0
	for s.Generated() == 0 {
		if _, n := stepOnce(e); n == 0 {
			t.Fatal("idle")
		}
		steps++
	}
	if steps != 3 {
		t.Errorf("2500-token prompt with a 1000-token budget took %d steps to first token, want 3", steps)
	}
}

func TestEngine_QueuesWhenKVCacheIsFull(t *testing.T) {
	// 20 blocks of 16 tokens; each request needs 8 blocks for its prompt.
	e := testEngine(t, func(c *Config) { c.KVCacheBlocks = 20 })
	var seqs []*Sequence
	for i := range 4 {
		seqs = append(seqs, submit(t, e, tokens(120, uint32(i+1)*1000), 4, ""))
	}
	stepOnce(e)
	st := e.State()
	if st.Running != 2 || st.Waiting != 2 {
		t.Fatalf("running %d waiting %d, want 2 and 2 (KV holds two prompts)", st.Running, st.Waiting)
	}
	if st.KVCacheUsage < 0.75 {
		t.Errorf("KV usage %.2f, want ≥ 0.75", st.KVCacheUsage)
	}
	runUntil(t, e, func() bool {
		for _, s := range seqs {
			if !finished(s) {
				return false
			}
		}
		return true
	})
	if st := e.State(); st.KVCacheUsage != 0 || st.Running != 0 || st.Waiting != 0 {
		t.Errorf("after all finished: %+v", st)
	}
}

func TestEngine_PreemptsNewestWhenDecodeRunsOutOfBlocks(t *testing.T) {
	// Two prompts of exactly 4 blocks fill 8 of 9 blocks; decoding needs a
	// new block each, so the newer one must be preempted and recomputed.
	e := testEngine(t, func(c *Config) { c.KVCacheBlocks = 9 })
	old := submit(t, e, tokens(64, 1), 40, "")
	young := submit(t, e, tokens(64, 2), 40, "")
	runUntil(t, e, func() bool { return finished(old) && finished(young) })
	st := e.State()
	if st.Preemptions == 0 {
		t.Fatal("no preemption although decode outgrew the KV cache")
	}
	if old.Generated() != 40 || young.Generated() != 40 {
		t.Errorf("generated %d and %d tokens, want 40 each", old.Generated(), young.Generated())
	}
	if st.KVCacheUsage != 0 {
		t.Errorf("KV usage %.2f after finishing, want 0", st.KVCacheUsage)
	}
}

func TestEngine_MaxNumSeqsBoundsTheBatch(t *testing.T) {
	e := testEngine(t, func(c *Config) { c.MaxNumSeqs = 4 })
	for i := range 10 {
		submit(t, e, tokens(50, uint32(i)*100), 100, "")
	}
	stepOnce(e)
	if st := e.State(); st.Running != 4 || st.Waiting != 6 {
		t.Fatalf("running %d waiting %d, want 4 and 6", st.Running, st.Waiting)
	}
}

func TestEngine_LoRASlotsMakeOtherAdaptersWait(t *testing.T) {
	e := testEngine(t, func(c *Config) { c.MaxLoRAs = 1 })
	a := submit(t, e, tokens(32, 1), 10, "adapter-a")
	b := submit(t, e, tokens(32, 2), 10, "adapter-b")
	base := submit(t, e, tokens(32, 3), 10, "")
	a2 := submit(t, e, tokens(32, 4), 10, "adapter-a")
	stepOnce(e)
	st := e.State()
	if st.Running != 3 || st.Waiting != 1 {
		t.Fatalf("running %d waiting %d, want adapter-a twice and the base running, adapter-b waiting", st.Running, st.Waiting)
	}
	if len(st.RunningAdapters) != 1 || st.RunningAdapters[0] != "adapter-a" || len(st.WaitingAdapters) != 1 || st.WaitingAdapters[0] != "adapter-b" {
		t.Fatalf("running adapters %v waiting %v", st.RunningAdapters, st.WaitingAdapters)
	}
	runUntil(t, e, func() bool { return b.Generated() >= 1 })
	if !finished(a) || !finished(a2) {
		t.Fatal("adapter-b ran while adapter-a held the only LoRA slot")
	}
	runUntil(t, e, func() bool { return finished(b) && finished(base) })
}

func TestEngine_LoRALoadCostsItsDelay(t *testing.T) {
	e := testEngine(t, func(c *Config) { c.LoRALoadDelay = Duration{300 * time.Millisecond} })
	s := submit(t, e, tokens(16, 1), 3, "ad")
	first, _ := stepOnce(e)
	second, _ := stepOnce(e)
	if first-second < 290*time.Millisecond {
		t.Errorf("first step %v, second %v: loading the adapter should add 300ms once", first, second)
	}
	runUntil(t, e, func() bool { return finished(s) })
}

func TestEngine_AbortFreesBlocksAtOnce(t *testing.T) {
	e := testEngine(t, nil)
	s := submit(t, e, tokens(1000, 1), 500, "")
	waiting := submit(t, e, tokens(10, 2), 5, "")
	stepOnce(e)
	if e.State().KVCacheUsage == 0 {
		t.Fatal("running request holds no KV blocks")
	}
	e.Abort(s)
	e.Abort(waiting)
	st := e.State()
	if st.KVCacheUsage != 0 || st.Running != 0 || st.Waiting != 0 {
		t.Fatalf("after abort: running %d waiting %d KV %.3f, want all zero", st.Running, st.Waiting, st.KVCacheUsage)
	}
	if !finished(s) || s.Err() != ErrAborted {
		t.Fatalf("aborted sequence: done=%v err=%v", finished(s), s.Err())
	}
}

func TestEngine_DecodeStepTimeGrowsWithContext(t *testing.T) {
	e := testEngine(t, nil)
	submit(t, e, tokens(16, 1), 50, "")
	stepOnce(e) // prefill
	short, _ := stepOnce(e)

	e2 := testEngine(t, nil)
	submit(t, e2, tokens(8000, 1), 50, "")
	stepOnce(e2)
	long, _ := stepOnce(e2)
	p := DefaultConfig().Perf
	want := time.Duration(8000-16) * p.ContextTokenCost.Duration
	if got := long - short; got != want {
		t.Errorf("decode step with 8000 context tokens is %v longer than with 16, want %v", got, want)
	}
	if short < p.StepFloor.Duration {
		t.Errorf("decode step %v is below the floor %v", short, p.StepFloor.Duration)
	}
}

func TestEngine_RejectsRequestLargerThanTheCache(t *testing.T) {
	e := testEngine(t, func(c *Config) { c.KVCacheBlocks = 4 })
	if _, err := e.Submit(Request{Prompt: tokens(100, 1), Output: tokens(1, 1)}); err == nil {
		t.Fatal("a request that can never fit was accepted")
	}
}

func TestEngine_TimeScaleDividesWallClockTime(t *testing.T) {
	// One request of about 2 simulated seconds (400 decode steps of ~5ms).
	e := testEngine(t, func(c *Config) { c.TimeScale = 200 })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go e.Run(ctx)
	start := time.Now()
	s := submit(t, e, tokens(100, 1), 400, "")
	select {
	case <-s.Done():
	case <-time.After(20 * time.Second):
		t.Fatal("request did not finish")
	}
	wall := time.Since(start)
	st := e.State()
	if st.Busy < 2*time.Second {
		t.Fatalf("simulated busy time %v, want ≥ 2s", st.Busy)
	}
	// Unscaled, this request takes over 2s of wall time.
	if wall >= st.Busy {
		t.Errorf("wall time %v is not below the simulated %v at time-scale 200", wall, st.Busy)
	}
}

func TestEngine_IdleEngineBlocks(t *testing.T) {
	e := testEngine(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { e.Run(ctx); close(done) }()
	time.Sleep(50 * time.Millisecond)
	if st := e.State(); st.Steps != 0 {
		t.Fatalf("idle engine ran %d steps", st.Steps)
	}
	cancel()
	<-done
	if _, err := e.Submit(Request{Prompt: tokens(1, 1), Output: tokens(1, 1)}); err != ErrEngineStopped {
		t.Fatalf("submit after stop: %v, want ErrEngineStopped", err)
	}
}

func TestEngine_KVFullStatusRefusesWhatTheCacheCannotTake(t *testing.T) {
	// 20 blocks of 16 tokens; each request needs 8 blocks for its prompt:
	// two fit, the third is refused instead of queued.
	e := testEngine(t, func(c *Config) { c.KVCacheBlocks = 20; c.KVFullStatus = 500 })
	for i := range 2 {
		submit(t, e, tokens(120, uint32(i+1)*1000), 4, "")
	}
	if _, err := e.Submit(Request{Prompt: tokens(120, 3000), Output: tokens(4, 1)}); !errors.Is(err, ErrKVCacheFull) {
		t.Fatalf("third request: err %v, want ErrKVCacheFull", err)
	}
	// A prompt the cache already holds needs no new blocks for it.
	stepOnce(e)
	if _, err := e.Submit(Request{Prompt: tokens(120, 1000), Output: tokens(4, 1)}); err != nil {
		t.Errorf("a request for a cached prompt was refused: %v", err)
	}
	if st := e.State(); st.KVRefusals != 1 {
		t.Errorf("KVRefusals = %d, want 1", st.KVRefusals)
	}
}
