package flowcontrol

import (
	"context"
	"testing"
)

// TestFairness_TenToOneArrivalsBothBacklogged is issue 6's fairness target:
// two tenants in one band, arriving at a 10:1 ratio and both backlogged,
// each receive at least 45% of the dispatches. Arrivals keep coming at
// 10:1 during the measurement (10 of tenant a and 1 of tenant b per round,
// 2 dispatches per round, after a backlog of 100:10), so tenant b stays
// backlogged throughout; dispatch is one permit at a time, so the order is
// the controller's alone.
func TestFairness_TenToOneArrivalsBothBacklogged(t *testing.T) {
	c, p := newController(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel() // what is still queued at the end leaves
	done := make(chan result, 1024)
	queued := 0
	arrive := func(rounds int) {
		for range rounds {
			for range 10 {
				admitAsync(ctx, c, "a", Request{FairnessID: "a", Priority: 3}, done)
			}
			admitAsync(ctx, c, "b", Request{FairnessID: "b", Priority: 3}, done)
			queued += 11
			waitQueued(t, c, queued)
		}
	}
	arrive(10) // backlog: 100 of a, 10 of b
	counts := map[string]int{}
	const rounds = 40
	for range rounds {
		arrive(1)
		for range 2 {
			r := releaseOne(t, c, p, done)
			if r.err != nil {
				t.Fatal(r.err)
			}
			counts[r.name]++
			queued--
		}
	}
	total := float64(2 * rounds)
	for _, tenant := range []string{"a", "b"} {
		share := float64(counts[tenant]) / total
		t.Logf("tenant %s: %d of %.0f dispatches (%.1f%%)", tenant, counts[tenant], total, 100*share)
		if share < 0.45 {
			t.Errorf("tenant %s received %.1f%% of dispatches, want ≥ 45%%", tenant, 100*share)
		}
	}
}
