package gateway

import (
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/igw-dev/igw/pkg/director"
)

func TestGateway_RetriesRefusedConnectionOnFallback(t *testing.T) {
	// The dead endpoint looks idle to the scraper (its scrapes are sent to
	// a live fake), so the picker always tries it first; the proxy's
	// connection to it is refused.
	dead, looksIdle, live := closedAddr(t), newFakeServer(t), newFakeServer(t)
	live.load(3, 0.5)
	cfg := parseConfig(t,
		poolYAML("p", dead, live.addr),
		routeYAML("r", "  matches: [{model: {value: m}}]\n  backends: [{pool: p}]\n"),
		routeYAML("no-retries", "  matches: [{model: {value: m-once}}]\n  backends: [{pool: p}]\n  retries: 0\n"),
	)
	s := startGateway(t, cfg, Options{Scraper: redirectingScraper(map[string]string{dead: looksIdle.addr})})
	waitCandidates(t, s, "p", 2)
	waitMetrics(t, s, live.addr, 3)
	c := newClient(t)

	// Without retries the refusal reaches the client as 502.
	r := post(t, c, s, "/v1/chat/completions", chatBody("m-once"))
	if r.status != http.StatusBadGateway || live.hits.Load() != 0 {
		t.Errorf("no-retry route: %d %s (live hits %d)", r.status, r.body, live.hits.Load())
	}
	// With retries each request is retried on the live endpoint, until
	// the dead one has failed outlier.DefaultConsecutiveFailures (5) times
	// in a row and is ejected: then requests go to the live one at once.
	const n = 4
	for range n + 3 {
		r := post(t, c, s, "/v1/chat/completions", chatBody("m"))
		if r.status != http.StatusOK || r.header.Get(HeaderDestinationServed) != live.addr {
			t.Fatalf("%d served by %q: %s", r.status, r.header.Get(HeaderDestinationServed), r.body)
		}
	}
	// A request is counted just after its last byte went out.
	waitFor(t, "every request counted", 5*time.Second, func() bool {
		return sample(scrape(t, c, s), "igw_requests_total", "pool=default/p", "code=200") == n+3
	})
	fams := scrape(t, c, s)
	if got := sample(fams, "igw_retries_total", "pool=default/p"); got != n {
		t.Errorf("igw_retries_total = %v, want %d (no retry once the dead endpoint is ejected)", got, n)
	}
	if got := sample(fams, "igw_outlier_ejections_total", "pool=default/p", "endpoint="+dead); got != 1 {
		t.Errorf("igw_outlier_ejections_total{endpoint=%s} = %v, want 1", dead, got)
	}
	if got := sample(fams, "igw_outlier_ejected_endpoints", "pool=default/p"); got != 1 {
		t.Errorf("igw_outlier_ejected_endpoints = %v, want 1", got)
	}
	for _, ep := range s.engine.Store().AllEndpoints() {
		if ep.InFlight() != 0 {
			t.Errorf("%s: %d requests still counted in flight", ep.Address, ep.InFlight())
		}
	}
}

func TestGateway_RetriesServerErrorsButNotClientErrors(t *testing.T) {
	for _, tc := range []struct {
		name       string
		primary    int // status the preferred endpoint answers
		status     int // what the client sees
		retried    bool
		fallbackOK bool
	}{
		{"503 is retried on the fallback", http.StatusServiceUnavailable, http.StatusOK, true, true},
		{"502 is retried on the fallback", http.StatusBadGateway, http.StatusOK, true, true},
		{"500 is retried on the fallback", http.StatusInternalServerError, http.StatusOK, true, true},
		{"the last 500 reaches the client", http.StatusInternalServerError, http.StatusInternalServerError, true, false},
		{"429 is returned as is", http.StatusTooManyRequests, http.StatusTooManyRequests, false, true},
		{"the last 503 reaches the client", http.StatusServiceUnavailable, http.StatusServiceUnavailable, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			preferred, fallback := newFakeServer(t), newFakeServer(t)
			// One waiting request makes the fallback the second choice
			// without making its failures refusals of a full server
			// (those are readmitted: TestGateway_ReadmitsRefusals).
			fallback.load(1, 0.5)
			preferred.setHandler(answerStatus(tc.primary))
			if !tc.fallbackOK {
				fallback.setHandler(answerStatus(tc.primary))
			}
			s := startGateway(t, parseConfig(t,
				poolYAML("p", preferred.addr, fallback.addr),
				routeYAML("r", "  matches: [{model: {value: m}}]\n  backends: [{pool: p}]\n"),
			), Options{})
			waitCandidates(t, s, "p", 2)
			waitMetrics(t, s, fallback.addr, 1)
			c := newClient(t)

			r := post(t, c, s, "/v1/chat/completions", chatBody("m"))
			if r.status != tc.status {
				t.Fatalf("status %d, want %d: %s", r.status, tc.status, r.body)
			}
			wantFallbackHits, wantRetries := int64(0), 0.0
			if tc.retried {
				wantFallbackHits, wantRetries = 1, 1
			}
			if preferred.hits.Load() != 1 || fallback.hits.Load() != wantFallbackHits {
				t.Errorf("hits preferred=%d fallback=%d, want 1 and %d", preferred.hits.Load(), fallback.hits.Load(), wantFallbackHits)
			}
			if got := sample(scrape(t, c, s), "igw_retries_total"); got != wantRetries {
				t.Errorf("igw_retries_total = %v, want %v", got, wantRetries)
			}
		})
	}
}

func TestGateway_URLBackendRetriesUnavailable(t *testing.T) {
	upstream := newFakeServer(t)
	var calls atomic.Int32
	upstream.setHandler(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			answerStatus(http.StatusServiceUnavailable)(w, r)
			return
		}
		answerChat(w, r)
	})
	s := startGateway(t, parseConfig(t,
		routeYAML("r", "  matches: [{model: {value: m}}]\n  backends: [{url: \"http://"+upstream.addr+"\"}]\n  retries: 1\n"),
	), Options{})
	c := newClient(t)
	r := post(t, c, s, "/v1/chat/completions", chatBody("m"))
	if r.status != http.StatusOK || upstream.hits.Load() != 2 {
		t.Fatalf("%d after %d attempts: %s", r.status, upstream.hits.Load(), r.body)
	}
	if got := sample(scrape(t, c, s), "igw_retries_total"); got != 1 {
		t.Errorf("igw_retries_total = %v, want 1", got)
	}
}

func TestGateway_TimeoutIsGatewayTimeout(t *testing.T) {
	slow := newFakeServer(t)
	canceled := make(chan struct{})
	var once sync.Once
	slow.setHandler(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
			once.Do(func() { close(canceled) })
		case <-time.After(10 * time.Second):
			answerChat(w, r)
		}
	})
	s := startGateway(t, parseConfig(t,
		poolYAML("p", slow.addr),
		routeYAML("r", "  matches: [{model: {value: m}}]\n  backends: [{pool: p}]\n  timeout: 200ms\n"),
	), Options{})
	waitCandidates(t, s, "p", 1)
	c := newClient(t)
	start := time.Now()
	r := post(t, c, s, "/v1/chat/completions", chatBody("m"))
	if r.status != http.StatusGatewayTimeout {
		t.Fatalf("status %d, want 504: %s", r.status, r.body)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("the timeout took %s", took)
	}
	select {
	case <-canceled:
	case <-time.After(5 * time.Second):
		t.Error("the model server's request was not canceled")
	}
	if slow.hits.Load() != 1 {
		t.Errorf("a timed-out request was retried (%d attempts)", slow.hits.Load())
	}
	if got := sample(scrape(t, c, s), "igw_requests_total", "code=504"); got != 1 {
		t.Errorf("igw_requests_total{code=504} = %v, want 1", got)
	}
}

// A server holding other requests that refuses one (429, 500, 503) is
// full, not failing: the request goes back through admission — here, with
// one server and no retries on the route, to the same server once it has
// room — instead of reaching the client; after MaxReadmissions the
// refusal is answered as it is. Readmissions are counted.
func TestGateway_ReadmitsRefusals(t *testing.T) {
	for _, tc := range []struct {
		name    string
		refuse  int // how many requests the server refuses first
		status  int
		readmit float64
	}{
		{"a refusal is readmitted", 1, http.StatusOK, 1},
		{"refusals beyond the bound reach the client", 100, http.StatusServiceUnavailable, director.MaxReadmissions},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newFakeServer(t)
			srv.busy(2) // two running: holding others, with room
			var refused atomic.Int64
			srv.setHandler(func(w http.ResponseWriter, r *http.Request) {
				if refused.Add(1) <= int64(tc.refuse) {
					answerStatus(http.StatusServiceUnavailable)(w, r)
					return
				}
				answerChat(w, r)
			})
			s := startGateway(t, parseConfig(t,
				poolYAML("p", srv.addr),
				routeYAML("r", "  matches: [{model: {value: m}}]\n  backends: [{pool: p}]\n  retries: 0\n"),
			), Options{})
			waitCandidates(t, s, "p", 1)
			waitFor(t, "the server's running requests scraped", 5*time.Second, func() bool {
				m := s.engine.Store().AllEndpoints()[0].Metrics()
				return m != nil && m.RunningRequests == 2
			})
			c := newClient(t)
			r := post(t, c, s, "/v1/chat/completions", chatBody("m"))
			if r.status != tc.status {
				t.Fatalf("status %d, want %d: %s", r.status, tc.status, r.body)
			}
			if got := sample(scrape(t, c, s), "igw_readmissions_total", "pool=default/p"); got != tc.readmit {
				t.Errorf("igw_readmissions_total = %v, want %v", got, tc.readmit)
			}
			for _, ep := range s.engine.Store().AllEndpoints() {
				if ep.InFlight() != 0 {
					t.Errorf("%s: %d requests still counted in flight", ep.Address, ep.InFlight())
				}
			}
		})
	}
}
