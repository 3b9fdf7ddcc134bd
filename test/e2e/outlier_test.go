package e2e

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// ejectedLine is outlier detection's log line for an ejection.
var ejectedLine = regexp.MustCompile(`msg="endpoint ejected" pool=(\S+) endpoint=(\S+)`)

// ejectedLines are the ejection log lines of endpoint in out.
func ejectedLines(out, endpoint string) [][]string {
	var lines [][]string
	for _, m := range ejectedLine.FindAllStringSubmatch(out, -1) {
		if m[2] == endpoint {
			lines = append(lines, m)
		}
	}
	return lines
}

// readAll reads and closes a response body ("" on error).
func readAll(resp *http.Response) string {
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// TestGateway_ReplicaAnswering500IsEjected runs four `igw sim` processes,
// one replica each, behind `igw serve`; one answers every request with
// 500 while its metrics and readiness stay green, so it looks idle and
// the scheduler would keep choosing it (issue 13: 34% of requests failed).
// Its 500s are retried on another replica within the retry budget, and
// after five in a row outlier detection ejects it: from then on it only
// gets half-open probes, and (nearly) no request fails.
func TestGateway_ReplicaAnswering500IsEjected(t *testing.T) {
	t.Parallel()
	var addrs []string
	const faulty = 2
	for i := range 4 {
		extra := []string{"--model", testModel, "--time-scale", "20"}
		if i == faulty {
			extra = append(extra, "--failure-rate", "1", "--failure-status", "500")
		}
		_, a := startSimProc(t, fmt.Sprintf("igw sim %d", i), 1, extra...)
		addrs = append(addrs, a...)
	}
	path := filepath.Join(t.TempDir(), "igw.yaml")
	// Short ejections (200 ms doubling to 1 s, instead of 10 s to 5 min),
	// so the half-open probes happen while the load runs.
	cfg := renderConfig(t, gatewaySpec{Pools: []poolSpec{{Name: "pool", Model: testModel, Addrs: addrs,
		Annotations: map[string]string{"igw.dev/outlier-base-ejection-time": "200ms", "igw.dev/outlier-max-ejection-time": "1s"}}}})
	if err := os.WriteFile(path, cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	serve, api, admin := startServeProc(t, path)
	c := newClient()
	ctx := withTimeout(t, 60*time.Second)
	var stale staleRejections
	defer stale.report(t)
	metrics := "http://" + admin + "/metrics"
	bad := map[string]string{"endpoint": addrs[faulty]}

	// Watch the gateway's metrics: requests begun after the first
	// ejection shows are "after".
	var ejected atomic.Bool
	var decisionsAtEjection atomic.Int64
	stopWatch := make(chan struct{})
	var watch sync.WaitGroup
	watch.Add(1)
	go func() {
		defer watch.Done()
		for {
			select {
			case <-stopWatch:
				return
			case <-time.After(20 * time.Millisecond):
			}
			resp, err := c.Get(metrics)
			if err != nil {
				continue
			}
			page := readAll(resp)
			if metricSum(page, "igw_outlier_ejections_total", bad) > 0 {
				decisionsAtEjection.Store(int64(metricSum(page, "igw_scheduling_decisions_total", bad)))
				ejected.Store(true)
				return
			}
		}
	}()

	// 600 requests from 6 workers, distinct prompts so that every replica
	// is used.
	const n, workers = 600, 6
	type sent struct {
		after bool
		r     result
	}
	log := make([]sent, n)
	next := make(chan int)
	var wg sync.WaitGroup
	start := time.Now()
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				after := ejected.Load()
				req := chat{Model: testModel, System: text(uint64(5000+i), 300), User: "Answer briefly.", MaxTokens: 8}
				log[i] = sent{after: after, r: postTolerant(ctx, c, chatURL(api), req.body(), nil, &stale)}
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	took := time.Since(start)
	close(stopWatch)
	watch.Wait()

	total, failed, after, failedAfter := 0, 0, 0, 0
	served := counts{}
	for _, s := range log {
		total++
		if s.after {
			after++
		}
		if s.r.Err != nil || s.r.Status != http.StatusOK {
			failed++
			if s.after {
				failedAfter++
			}
			if failed <= 5 {
				t.Logf("failed request (after ejection: %v): %s", s.after, s.r)
			}
			continue
		}
		served[s.r.Served()]++
	}
	page := scrape(t, c, metrics)
	ejections := metricSum(page, "igw_outlier_ejections_total", bad)
	gauge := metricSum(page, "igw_outlier_ejected_endpoints", nil)
	retries := metricSum(page, "igw_retries_total", nil)
	denied := metricSum(page, "igw_retries_denied_total", nil)
	decisions := metricSum(page, "igw_scheduling_decisions_total", bad)
	probes := int64(decisions) - decisionsAtEjection.Load()
	t.Logf("%d requests in %v (%d after the first ejection): %d failed (%d after); served by %v", total, took.Round(time.Millisecond), after, failed, failedAfter, served)
	t.Logf("faulty replica %s: ejections %v, ejected endpoints now %v, decisions %v (%d after the ejection); retries %v, denied by the budget %v",
		addrs[faulty], ejections, gauge, decisions, probes, retries, denied)

	if !ejected.Load() || ejections < 1 {
		t.Fatalf("the faulty replica %s was never ejected (igw_outlier_ejections_total %v)\n%s", addrs[faulty], ejections, tail(serve.output(), 20))
	}
	if gauge != 1 {
		t.Errorf("igw_outlier_ejected_endpoints = %v; want 1 (the faulty replica, ejected or half-open)", gauge)
	}
	if after < n/2 {
		t.Errorf("only %d of %d requests began after the ejection; it came late", after, n)
	}
	if failedAfter*100 >= after {
		t.Errorf("%d of %d requests after the ejection failed; want < 1%%", failedAfter, after)
	}
	if failed*100 >= 2*total {
		t.Errorf("%d of %d requests failed; want < 2%%", failed, total)
	}
	if served[addrs[faulty]] != 0 {
		t.Errorf("%d successful responses claim the faulty replica served them", served[addrs[faulty]])
	}
	// Only half-open probes after the ejection: one per back-off (0.2 s,
	// 0.4 s, 0.8 s, then every second), plus the few decisions made
	// concurrently as it opened.
	reprobes := len(ejectedLines(serve.output(), addrs[faulty])) - 1
	t.Logf("re-ejections after a failed probe: %d", reprobes)
	if limit := int64(2 * (2 + took/time.Second)); probes > limit {
		t.Errorf("the faulty replica was chosen %d times after its ejection in %v; want only probes (<= %d)", probes, took, limit)
	}
	if len(serve.waitOutput(t, ejectedLine, 1, 5*time.Second)) == 0 {
		t.Error("no log line for the ejection")
	}
}
