package e2e

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestGateway_KilledReplicaLeavesCandidateSetWithoutFailingRequests runs
// four `igw sim` processes, one replica each, behind `igw serve`, and kills
// one with SIGKILL while traffic flows. No request sent after the kill
// fails (a request the gateway still sends to the dead replica fails before
// the first byte and is retried on a fallback), and within a couple of
// seconds the dead replica is no longer chosen at all.
func TestGateway_KilledReplicaLeavesCandidateSetWithoutFailingRequests(t *testing.T) {
	t.Parallel()
	var sims []*proc
	var addrs []string
	for i := range 4 {
		p, a := startSimProc(t, fmt.Sprintf("igw sim %d", i), 1, "--model", testModel, "--time-scale", "20")
		sims = append(sims, p)
		addrs = append(addrs, a...)
	}
	path := filepath.Join(t.TempDir(), "igw.yaml")
	if err := os.WriteFile(path, onePool(t, addrs), 0o644); err != nil {
		t.Fatal(err)
	}
	_, api, admin := startServeProc(t, path)
	c := newClient()
	ctx := withTimeout(t, 60*time.Second)
	var stale staleRejections
	defer stale.report(t)
	const victim = 1

	// Traffic: 4 workers, distinct prompts (so every replica is used),
	// until stopped or 1,500 requests.
	type sent struct {
		afterKill bool
		r         result
	}
	var (
		mu      sync.Mutex
		log     []sent
		killed  atomic.Bool
		stop    = make(chan struct{})
		next    atomic.Int64
		workers sync.WaitGroup
	)
	for range 4 {
		workers.Add(1)
		go func() {
			defer workers.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				i := next.Add(1)
				if i > 1500 {
					return
				}
				after := killed.Load()
				req := chat{Model: testModel, System: text(uint64(1000+i), 400), User: "Answer briefly.", MaxTokens: 8}
				r := postTolerant(ctx, c, chatURL(api), req.body(), nil, &stale)
				mu.Lock()
				log = append(log, sent{afterKill: after, r: r})
				mu.Unlock()
				time.Sleep(5 * time.Millisecond) // a steady stream, not a CPU hog
			}
		}()
	}
	servedBy := func(addr string, afterKill bool) int {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, s := range log {
			if s.afterKill == afterKill && s.r.Served() == addr {
				n++
			}
		}
		return n
	}
	// Kill only once the victim has served traffic.
	eventually(t, 15*time.Second, func() error {
		if servedBy(addrs[victim], false) < 3 {
			return fmt.Errorf("replica %s has not served 3 requests yet", addrs[victim])
		}
		return nil
	})
	sims[victim].kill() // returns once the process is gone
	killed.Store(true)
	// Keep the traffic going for 3 s after the kill, then stop.
	time.Sleep(3 * time.Second)
	close(stop)
	workers.Wait()

	mu.Lock()
	defer mu.Unlock()
	total, failed, after := 0, 0, counts{}
	for _, s := range log {
		if !s.afterKill {
			continue
		}
		total++
		if s.r.Err != nil || s.r.Status != http.StatusOK {
			failed++
			if failed <= 5 {
				t.Errorf("request sent after the kill failed: %s", s.r)
			}
			continue
		}
		after[s.r.Served()]++
		if s.r.Served() == addrs[victim] {
			t.Errorf("request sent after the kill reports being served by the dead replica %s", addrs[victim])
		}
	}
	if failed > 0 {
		t.Errorf("%d of %d requests sent after the kill failed", failed, total)
	}
	if total < 20 {
		t.Errorf("only %d requests completed after the kill; want a steady stream", total)
	}
	page := scrape(t, c, "http://"+admin+"/metrics")
	retries := metricSum(page, "igw_retries_total", nil)
	before := metricSum(page, "igw_scheduling_decisions_total", map[string]string{"endpoint": addrs[victim]})
	t.Logf("after the kill of %s: %d requests, served by %v; igw_retries_total %v; decisions for the dead replica %v",
		addrs[victim], total, after, retries, before)

	// The dead replica left the candidate set: new requests are no longer
	// scheduled on it (its decision counter stops growing).
	for i := range 20 {
		req := chat{Model: testModel, System: text(uint64(9000+i), 400), User: "Answer briefly.", MaxTokens: 4}
		if r := postTolerant(ctx, c, chatURL(api), req.body(), nil, &stale); r.Status != http.StatusOK {
			t.Errorf("request %d well after the kill: %s", i, r)
		}
	}
	if later := metricSum(scrape(t, c, "http://"+admin+"/metrics"), "igw_scheduling_decisions_total", map[string]string{"endpoint": addrs[victim]}); later != before {
		t.Errorf("the dead replica %s was still chosen %v times more, 3 s after the kill", addrs[victim], later-before)
	}
}
