package bench

import (
	"context"
	"testing"
	"time"

	"github.com/igw-dev/igw/pkg/sim"
)

// startSim starts a one-replica simulator fleet on an ephemeral port, 50×
// faster than the modelled GPU.
func startSim(t *testing.T) *Client {
	t.Helper()
	cfg := sim.DefaultConfig()
	cfg.Port = 0
	cfg.Model = "m"
	cfg.TimeScale = 50
	f, err := sim.StartFleet(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = f.Close(ctx)
	})
	return newTestClient(t, "http://"+f.Addrs()[0])
}

func TestRun_AgainstSimulator_SharedPrefix(t *testing.T) {
	c := startSim(t)
	w := &Workload{Model: "m", Seed: 1, SharedPrefix: &SharedPrefix{
		NumGroups: 2, NumPromptsPerGroup: 3, SystemPromptLen: 200, QuestionLen: 20, OutputLen: 16,
	}}
	src := mustSource(t, w)
	ref := mustSource(t, w).Next() // every prompt has the same length
	wantInput := len(renderChat(ref.Messages))

	res, err := Run(context.Background(), c, src, Options{
		Stages:      []Stage{stage(20, 0, 1500*time.Millisecond)},
		Warmup:      300 * time.Millisecond,
		MaxRequests: 40,
		Seed:        1,
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Requests) < 10 {
		t.Fatalf("only %d requests sent", len(res.Requests))
	}
	maxCached := 0
	for _, r := range res.Requests {
		if !r.OK() {
			t.Fatalf("request %d failed: %s %s", r.ID, r.ErrorKind, r.Error)
		}
		if r.Status != 200 || !r.UsageReported || r.OutputTokens != 16 || r.InputTokens != wantInput {
			t.Fatalf("request %d: status %d usage %v tokens %d in / %d out, want 200 true %d / 16", r.ID, r.Status, r.UsageReported, r.InputTokens, r.OutputTokens, wantInput)
		}
		if len(r.ITL) != 15 || r.TTFT <= 0 || r.TTFT >= r.E2E || r.TPOT <= 0 || r.NTPOT <= 0 {
			t.Fatalf("request %d: %d ITLs, TTFT %v, E2E %v, TPOT %v", r.ID, len(r.ITL), r.TTFT, r.E2E, r.TPOT)
		}
		if r.Endpoint != "" {
			t.Fatalf("model server named an endpoint: %q", r.Endpoint)
		}
		maxCached = max(maxCached, r.CachedTokens)
	}
	// A repeated group's system prompt (and its template) comes from the
	// prefix cache, in whole 16-token blocks.
	if maxCached < 192 || maxCached%16 != 0 {
		t.Fatalf("max cached tokens %d, want ≥ 192 in whole blocks", maxCached)
	}
	s := res.Total
	if s.Succeeded == 0 || s.Failed != 0 || s.CacheHitRatio < 0.5 || s.RequestRate <= 0 || s.OutputTokenRate <= 0 || s.InputTokenRate <= 0 {
		t.Fatalf("total %+v", s)
	}
	if s.TTFT.Count != s.Succeeded || s.ITL.Count != 15*s.Succeeded || s.TTFT.P50 <= 0 || s.ITL.P50 <= 0 || s.E2E.P99 < s.E2E.P50 {
		t.Fatalf("distributions ttft %+v itl %+v e2e %+v", s.TTFT, s.ITL, s.E2E)
	}
	if sh := s.Endpoints[UnknownEndpoint]; sh.Share != 1 || sh.Requests != s.Requests {
		t.Fatalf("endpoints %v, want all unknown", s.Endpoints)
	}
}

func TestRun_AgainstSimulator_MultiTurnHitsCache(t *testing.T) {
	c := startSim(t)
	w := &Workload{Model: "m", Seed: 2, MultiTurn: &MultiTurn{NumSessions: 2, Turns: 3, SystemPromptLen: 40, UserLen: 10, OutputLen: 24}}
	res, err := Run(context.Background(), c, mustSource(t, w), Options{
		Stages: []Stage{stage(0, 2, 5*time.Second)}, MaxRequests: 6,
	})
	if err != nil {
		t.Fatal(err)
	}
	last := map[int]RequestResult{}
	for _, r := range res.Requests {
		if !r.OK() {
			t.Fatalf("request %d failed: %s", r.ID, r.Error)
		}
		if prev, ok := last[r.Group]; ok {
			// The new prompt holds the previous prompt, its answer and a
			// new question; all of the previous turn's full blocks hit.
			if r.Turn != prev.Turn+1 || r.InputTokens <= prev.InputTokens+prev.OutputTokens {
				t.Fatalf("session %d turn %d: %d input tokens after %d+%d", r.Group, r.Turn, r.InputTokens, prev.InputTokens, prev.OutputTokens)
			}
			if want := (prev.InputTokens + prev.OutputTokens - 1) / 16 * 16; r.CachedTokens < want-16 {
				t.Fatalf("session %d turn %d: %d cached tokens, want about %d", r.Group, r.Turn, r.CachedTokens, want)
			}
		}
		last[r.Group] = r
	}
	// A finished session is replaced, so a third may start before the
	// second ends; at least one session has had all its turns.
	deepest := 0
	for _, r := range last {
		deepest = max(deepest, r.Turn)
	}
	if len(last) < 2 || deepest != 2 {
		t.Fatalf("%d sessions, deepest turn %d; want ≥ 2 sessions and turn 2", len(last), deepest)
	}
}
