package modelserver

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/igw-dev/igw/pkg/datastore"
)

// fakeServer is a model server on a loopback socket whose /metrics page and
// /health status the test changes while the scraper runs.
type fakeServer struct {
	srv           *httptest.Server
	page          atomic.Pointer[string]
	healthStatus  atomic.Int32
	metricsStatus atomic.Int32
	scrapes       atomic.Int64
}

func newFakeServer(t *testing.T, page string) *fakeServer {
	t.Helper()
	f := &fakeServer{}
	f.setPage(page)
	f.healthStatus.Store(http.StatusOK)
	f.metricsStatus.Store(http.StatusOK)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		f.scrapes.Add(1)
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		w.WriteHeader(int(f.metricsStatus.Load()))
		_, _ = w.Write([]byte(*f.page.Load()))
	})
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(int(f.healthStatus.Load()))
	})
	f.srv = httptest.NewServer(mux) // 127.0.0.1, a real socket
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeServer) setPage(page string) { f.page.Store(&page) }

func (f *fakeServer) endpoint(name string) *datastore.Endpoint {
	return datastore.NewEndpoint(name, f.srv.Listener.Addr().String(), "default/pool", datastore.EngineVLLM, nil)
}

func vllmPage(waiting, running int, kv float64) string {
	return fmt.Sprintf(`# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="m"} %d.0
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="m"} %d.0
# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{engine="0",model_name="m"} %g
`, waiting, running, kv)
}

// testOptions scrape fast so tests finish quickly, but nothing asserts on
// timing: every wait polls for a condition with a generous deadline.
func testOptions() Options {
	return Options{
		Interval:       10 * time.Millisecond,
		HealthInterval: 20 * time.Millisecond,
		Timeout:        2 * time.Second,
	}
}

// runScraper starts s.Run and stops it at the end of the test, failing the
// test if Run does not return or leaves loops behind.
func runScraper(t *testing.T, s *Scraper) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	stopped := false
	stop = func() {
		t.Helper()
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run returned %v, want nil", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Run did not return after cancel")
		}
		if n := s.loops.Load(); n != 0 {
			t.Errorf("%d endpoint loops still running after Run returned", n)
		}
	}
	t.Cleanup(stop)
	return stop
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func newTestScraper(t *testing.T, opts Options) *Scraper {
	t.Helper()
	s, err := NewScraper(opts)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func waitingIs(ep *datastore.Endpoint, n int) func() bool {
	return func() bool {
		m := ep.Metrics()
		return m != nil && m.WaitingQueueSize == n
	}
}

func TestScraper_SnapshotFollowsServer(t *testing.T) {
	f := newFakeServer(t, vllmPage(4, 2, 0.25))
	ep := f.endpoint("a")
	s := newTestScraper(t, testOptions())
	s.SetEndpoints([]*datastore.Endpoint{ep}) // before Run: remembered
	start := time.Now()
	runScraper(t, s)

	eventually(t, "first snapshot and ready", func() bool { return waitingIs(ep, 4)() && ep.Ready() })
	m := ep.Metrics()
	if m.RunningRequests != 2 || m.KVCacheUsage != 0.25 {
		t.Fatalf("snapshot = %+v", m)
	}
	if m.UpdateTime.Before(start) || m.UpdateTime.After(time.Now()) {
		t.Fatalf("UpdateTime %v not within the test", m.UpdateTime)
	}
	if !datastore.IsCandidate(ep, time.Now(), time.Minute) {
		t.Fatal("ready endpoint with a fresh snapshot is not a candidate")
	}

	f.setPage(vllmPage(9, 3, 0.75))
	eventually(t, "snapshot follows the new page", waitingIs(ep, 9))
	if m := ep.Metrics(); m.RunningRequests != 3 || m.KVCacheUsage != 0.75 {
		t.Fatalf("snapshot = %+v", m)
	}
	if ep.Metrics() == m {
		t.Fatal("snapshot was modified in place instead of replaced")
	}
}

func TestScraper_KilledServerGoesStaleAndNotReady(t *testing.T) {
	f := newFakeServer(t, vllmPage(1, 1, 0.1))
	ep := f.endpoint("a")
	s := newTestScraper(t, testOptions())
	runScraper(t, s)
	s.SetEndpoints([]*datastore.Endpoint{ep})
	eventually(t, "ready", func() bool { return ep.Ready() && ep.Metrics() != nil })

	f.srv.Close()
	eventually(t, "not ready after the server died", func() bool { return !ep.Ready() })
	const maxAge = 100 * time.Millisecond
	eventually(t, "no longer a candidate", func() bool {
		return len(datastore.Candidates(nil, []*datastore.Endpoint{ep}, time.Now(), maxAge)) == 0
	})
	if ep.Metrics() == nil {
		t.Fatal("the last snapshot was dropped; it should stay (and go stale)")
	}
}

func TestScraper_RefusedConnectionSkipsFailureThreshold(t *testing.T) {
	f := newFakeServer(t, vllmPage(1, 1, 0.1))
	ep := f.endpoint("a")
	opts := testOptions()
	opts.FailureThreshold = 1_000_000 // would take hours by counting
	opts.HealthInterval = time.Hour   // only the first health check runs
	s := newTestScraper(t, opts)
	runScraper(t, s)
	s.SetEndpoints([]*datastore.Endpoint{ep})
	eventually(t, "ready", func() bool { return ep.Ready() && ep.Metrics() != nil })

	f.srv.Close()
	eventually(t, "not ready once connections are refused", func() bool { return !ep.Ready() })
}

func TestScraper_Health503MarksNotReady(t *testing.T) {
	f := newFakeServer(t, vllmPage(1, 1, 0.1))
	ep := f.endpoint("a")
	s := newTestScraper(t, testOptions())
	runScraper(t, s)
	s.SetEndpoints([]*datastore.Endpoint{ep})
	eventually(t, "ready", ep.Ready)

	f.healthStatus.Store(http.StatusServiceUnavailable)
	eventually(t, "not ready while /health answers 503", func() bool { return !ep.Ready() })
	// Metrics keep flowing, but the endpoint is not a candidate.
	f.setPage(vllmPage(7, 1, 0.1))
	eventually(t, "metrics still scraped", waitingIs(ep, 7))
	if datastore.IsCandidate(ep, time.Now(), time.Minute) {
		t.Fatal("unhealthy endpoint is a candidate")
	}

	f.healthStatus.Store(http.StatusOK)
	eventually(t, "ready again", ep.Ready)
}

func TestScraper_ConsecutiveScrapeFailuresMarkNotReady(t *testing.T) {
	tests := []struct {
		name    string
		opts    func(*Options)
		breakIt func(*fakeServer)
	}{
		{"status 500", nil, func(f *fakeServer) { f.metricsStatus.Store(http.StatusInternalServerError) }},
		{"missing metric", nil, func(f *fakeServer) { f.setPage("vllm:num_requests_waiting 1\n") }},
		{"garbage", nil, func(f *fakeServer) { f.setPage("<html>oops</html>") }},
		{"page too large", func(o *Options) { o.MaxBodyBytes = 4096 }, func(f *fakeServer) {
			f.setPage(vllmPage(1, 1, 0.1) + strings.Repeat("# padding\n", 1000))
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeServer(t, vllmPage(1, 1, 0.1))
			ep := f.endpoint("a")
			opts := testOptions()
			opts.HealthInterval = time.Hour // only the first health check runs
			if tc.opts != nil {
				tc.opts(&opts)
			}
			s := newTestScraper(t, opts)
			runScraper(t, s)
			s.SetEndpoints([]*datastore.Endpoint{ep})
			eventually(t, "ready", func() bool { return ep.Ready() && ep.Metrics() != nil })
			last := ep.Metrics()

			tc.breakIt(f)
			eventually(t, "not ready after failed scrapes", func() bool { return !ep.Ready() })
			if ep.Metrics().WaitingQueueSize != last.WaitingQueueSize {
				t.Fatal("a failed scrape published a snapshot")
			}

			f.metricsStatus.Store(http.StatusOK)
			f.setPage(vllmPage(5, 1, 0.1))
			eventually(t, "ready again after a good scrape", func() bool { return ep.Ready() && waitingIs(ep, 5)() })
		})
	}
}

func TestScraper_RemovedEndpointStops(t *testing.T) {
	fa := newFakeServer(t, vllmPage(1, 0, 0))
	fb := newFakeServer(t, vllmPage(2, 0, 0))
	a, b := fa.endpoint("a"), fb.endpoint("b")
	s := newTestScraper(t, testOptions())
	stop := runScraper(t, s)

	s.SetEndpoints([]*datastore.Endpoint{a, b})
	eventually(t, "both scraped", func() bool { return waitingIs(a, 1)() && waitingIs(b, 2)() })
	if n := s.loops.Load(); n != 2 {
		t.Fatalf("%d loops, want 2", n)
	}

	s.SetEndpoints([]*datastore.Endpoint{a})
	eventually(t, "the removed endpoint's loop exits", func() bool { return s.loops.Load() == 1 })
	removedScrapes := fb.scrapes.Load()
	keptScrapes := fa.scrapes.Load()
	// Let the remaining loop make progress: several intervals pass.
	eventually(t, "the kept endpoint keeps being scraped", func() bool { return fa.scrapes.Load() >= keptScrapes+5 })
	// A scrape already on the wire when the loop was cancelled may still
	// reach the server after the loop exited; nothing after it may.
	if got := fb.scrapes.Load(); got > removedScrapes+1 {
		t.Fatalf("removed endpoint scraped %d more times", got-removedScrapes)
	}

	// Re-adding starts a fresh loop; an empty set stops everything.
	s.SetEndpoints([]*datastore.Endpoint{a, b})
	eventually(t, "two loops again", func() bool { return s.loops.Load() == 2 })
	s.SetEndpoints(nil)
	eventually(t, "no loops", func() bool { return s.loops.Load() == 0 })

	s.SetEndpoints([]*datastore.Endpoint{a, b})
	eventually(t, "two loops before shutdown", func() bool { return s.loops.Load() == 2 })
	stop() // checks that Run returns and no loop is left
}

func TestScraper_UnknownEngineIsNotReady(t *testing.T) {
	f := newFakeServer(t, vllmPage(1, 0, 0))
	ep := datastore.NewEndpoint("a", f.srv.Listener.Addr().String(), "default/pool", "tgi", nil)
	ep.SetReady(true)
	s := newTestScraper(t, testOptions())
	runScraper(t, s)
	s.SetEndpoints([]*datastore.Endpoint{ep})
	eventually(t, "marked not ready", func() bool { return !ep.Ready() })
	eventually(t, "its loop exits", func() bool { return s.loops.Load() == 0 })
	if f.scrapes.Load() != 0 {
		t.Fatal("an endpoint of unknown engine was scraped")
	}
}

func TestScraper_RunTwiceIsAnError(t *testing.T) {
	s := newTestScraper(t, testOptions())
	runScraper(t, s)
	eventually(t, "Run started", s.running.Load)
	if err := s.Run(context.Background()); err == nil {
		t.Fatal("second concurrent Run returned nil")
	}
}

func TestNewScraper_RejectsNegativeOptions(t *testing.T) {
	for _, opts := range []Options{
		{Interval: -1}, {HealthInterval: -1}, {Timeout: -1}, {FailureThreshold: -1}, {MaxBodyBytes: -1},
	} {
		if _, err := NewScraper(opts); err == nil {
			t.Errorf("NewScraper(%+v) accepted a negative option", opts)
		}
	}
	if _, err := NewScraper(Options{}); err != nil {
		t.Fatalf("NewScraper(Options{}) = %v; the zero value must be a working configuration", err)
	}
}

func TestCandidates(t *testing.T) {
	now := time.Now()
	mk := func(name string, ready bool, age time.Duration, hasMetrics bool) *datastore.Endpoint {
		ep := datastore.NewEndpoint(name, name+":8000", "pool", datastore.EngineVLLM, nil)
		ep.SetReady(ready)
		if hasMetrics {
			ep.SetMetrics(&datastore.Metrics{UpdateTime: now.Add(-age)})
		}
		return ep
	}
	eps := []*datastore.Endpoint{
		mk("fresh", true, 10*time.Millisecond, true),
		mk("stale", true, 300*time.Millisecond, true),
		mk("unready", false, 10*time.Millisecond, true),
		mk("no-metrics", true, 0, false),
		nil,
		mk("edge", true, datastore.DefaultMaxAge, true),
	}
	got := datastore.Candidates(nil, eps, now, 0)
	var names []string
	for _, ep := range got {
		names = append(names, ep.Name)
	}
	if strings.Join(names, ",") != "fresh,edge" {
		t.Fatalf("Candidates = %v, want [fresh edge]", names)
	}
	if got := datastore.Candidates(nil, eps, now, time.Second); len(got) != 3 {
		t.Fatalf("with a 1s max age: %d candidates, want 3", len(got))
	}
	dst := make([]*datastore.Endpoint, 0, len(eps))
	if allocs := testing.AllocsPerRun(100, func() { dst = datastore.Candidates(dst[:0], eps, now, 0) }); allocs != 0 {
		t.Fatalf("Candidates allocated %v times per call", allocs)
	}
}
