package e2e

import (
	"bufio"
	"bytes"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// faultFleet starts n `igw sim` processes (one replica each) and `igw
// serve` in front of them, with the route's attempt settings.
func faultFleet(t *testing.T, n int, attempt string, simArgs ...string) (sims []*proc, addrs []string, api, admin string) {
	t.Helper()
	for i := range n {
		p, a := startSimProc(t, fmt.Sprintf("igw sim %d", i), 1, append([]string{"--model", testModel}, simArgs...)...)
		sims = append(sims, p)
		addrs = append(addrs, a...)
	}
	cfg := strings.Replace(string(onePool(t, addrs)), "  backends:\n  - pool: pool", "  backends:\n  - pool: pool\n  attempt: "+attempt, 1)
	path := filepath.Join(t.TempDir(), "igw.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	_, api, admin = startServeProc(t, path)
	return sims, addrs, api, admin
}

// TestGateway_StoppedReplicaCostsOneFirstByteTimeout stops one of four
// replicas with SIGSTOP (its kernel still accepts connections and
// requests; nothing answers) while requests flow. No request fails, and
// none takes longer than the first-byte timeout plus one more attempt.
func TestGateway_StoppedReplicaCostsOneFirstByteTimeout(t *testing.T) {
	t.Parallel()
	const firstByte = time.Second
	sims, addrs, api, admin := faultFleet(t, 4, "{firstByteTimeout: 1s}", "--time-scale", "20")
	c := newClient()
	ctx := withTimeout(t, 60*time.Second)
	var stale staleRejections
	defer stale.report(t)
	// Warm up every replica, then stop one.
	waitCandidates4 := func() {
		for i := range 8 {
			req := chat{Model: testModel, System: text(uint64(100+i), 300), User: "hi", MaxTokens: 4}
			postTolerant(ctx, c, chatURL(api), req.body(), nil, &stale)
		}
	}
	waitCandidates4()
	victim := sims[2]
	victim.signal(t, syscall.SIGSTOP)
	t.Cleanup(func() { _ = victim.cmd.Process.Signal(syscall.SIGCONT) })

	var (
		mu      sync.Mutex
		results []result
		took    []time.Duration
		wg      sync.WaitGroup
	)
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 15 {
				req := chat{Model: testModel, System: text(uint64(1000+w*100+i), 300), User: "Answer briefly.", MaxTokens: 8}
				start := time.Now()
				r := postTolerant(ctx, c, chatURL(api), req.body(), nil, &stale)
				mu.Lock()
				results = append(results, r)
				took = append(took, time.Since(start))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	slowest, onVictim := time.Duration(0), 0
	for i, r := range results {
		if r.Err != nil || r.Status != http.StatusOK {
			t.Errorf("request failed with a stopped replica: %s", r)
		}
		if r.Served() == addrs[2] {
			onVictim++
		}
		slowest = max(slowest, took[i])
	}
	page := scrape(t, c, "http://"+admin+"/metrics")
	timeouts := metricSum(page, "igw_attempt_timeouts_total", map[string]string{"phase": "first_byte"})
	t.Logf("%d requests with replica %s stopped: slowest %s, %v first-byte timeouts", len(results), addrs[2], slowest, timeouts)
	if onVictim > 0 {
		t.Errorf("%d requests report being served by the stopped replica", onVictim)
	}
	// The bound of the behaviour: one first-byte timeout, then a healthy
	// replica (a few ms at time-scale 20), with room for a loaded machine.
	if limit := firstByte + 4*time.Second; slowest > limit {
		t.Errorf("the slowest request took %s; a stopped replica may cost at most the first-byte timeout (%s) and one more attempt", slowest, firstByte)
	}
	if timeouts < 1 {
		t.Error("no first-byte timeout counted: the stopped replica was never tried")
	}
}

// TestGateway_KilledReplicaEndsExactlyItsStreamsWithErrorEvents streams
// long answers from two replicas, kills one mid-stream, and checks that
// exactly the streams it carried end with an error event, and the others
// end normally.
func TestGateway_KilledReplicaEndsExactlyItsStreamsWithErrorEvents(t *testing.T) {
	t.Parallel()
	sims, addrs, api, admin := faultFleet(t, 2, "{}")
	c := newClient()
	ctx := withTimeout(t, 60*time.Second)

	type stream struct {
		served string
		events []string
		err    error
	}
	const n = 8
	streams := make([]stream, n)
	started := make(chan int, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req := chat{Model: testModel, System: text(uint64(5000+i), 300), User: "Tell a long story.", MaxTokens: 400, IgnoreEOS: true, Stream: true}
			hr, err := http.NewRequestWithContext(ctx, http.MethodPost, chatURL(api), bytes.NewReader(req.body()))
			if err != nil {
				streams[i].err = err
				started <- i
				return
			}
			hr.Header.Set("Content-Type", "application/json")
			resp, err := c.Do(hr)
			if err != nil {
				streams[i].err = err
				started <- i
				return
			}
			defer resp.Body.Close()
			streams[i].served = resp.Header.Get(hdrServed)
			sc := bufio.NewScanner(resp.Body)
			sc.Buffer(make([]byte, 64<<10), 1<<20)
			first := true
			for sc.Scan() {
				if line := sc.Text(); line != "" {
					streams[i].events = append(streams[i].events, line)
					if first {
						first = false
						started <- i
					}
				}
			}
			if first {
				started <- i
			}
			streams[i].err = sc.Err()
		}()
	}
	for range n {
		<-started
	}
	victim := addrs[0]
	sims[0].kill()
	wg.Wait()

	cut, whole := 0, 0
	for i, s := range streams {
		if s.served == "" || len(s.events) < 2 {
			t.Fatalf("stream %d: served %q, %d events, err %v", i, s.served, len(s.events), s.err)
		}
		last, beforeLast := s.events[len(s.events)-1], s.events[len(s.events)-2]
		isError := strings.HasPrefix(beforeLast, `data: {"error":`)
		if last != "data: [DONE]" {
			t.Errorf("stream %d (served by %s) ends with %q, not [DONE]", i, s.served, last)
		}
		switch {
		case s.served == victim && !isError:
			t.Errorf("stream %d was cut by the killed replica but ends without an error event: %q", i, s.events[len(s.events)-2:])
		case s.served != victim && isError:
			t.Errorf("stream %d was served by the live replica %s but ends with an error event: %q", i, s.served, beforeLast)
		case isError:
			cut++
		default:
			whole++
		}
	}
	page := scrape(t, c, "http://"+admin+"/metrics")
	broken := metricSum(page, "igw_responses_broken_total", nil)
	t.Logf("killed %s: %d streams ended with an error event, %d completed; igw_responses_broken_total %v", victim, cut, whole, broken)
	if cut == 0 || whole == 0 {
		t.Errorf("want streams on both replicas (cut %d, whole %d)", cut, whole)
	}
	if int(broken) != cut {
		t.Errorf("igw_responses_broken_total = %v, want %d", broken, cut)
	}
}
