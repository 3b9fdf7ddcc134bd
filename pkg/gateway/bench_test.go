package gateway

import (
	"cmp"
	"errors"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// fastBackendMetrics is an idle vLLM /metrics page.
const fastBackendMetrics = "# TYPE vllm:num_requests_waiting gauge\nvllm:num_requests_waiting{model_name=\"m\"} 0\n" +
	"# TYPE vllm:num_requests_running gauge\nvllm:num_requests_running{model_name=\"m\"} 0\n" +
	"# TYPE vllm:kv_cache_usage_perc gauge\nvllm:kv_cache_usage_perc{model_name=\"m\"} 0.1\n"

// startFastBackend is a model server that costs as little as an HTTP
// server can: it answers every inference request at once with a small chat
// completion, and serves /metrics, /health and /v1/models so it is a valid
// pool endpoint. What a benchmark measures against it is the HTTP path, not
// generation.
func startFastBackend(b *testing.B) string {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	answer, contentLength := []byte(chatAnswer), strconv.Itoa(len(chatAnswer))
	page := []byte(fastBackendMetrics)
	models := []byte(`{"object":"list","data":[{"id":"m","object":"model","created":1,"owned_by":"bench"}]}`)
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/metrics":
			_, _ = w.Write(page)
		case "/health":
		case "/v1/models":
			_, _ = w.Write(models)
		default:
			_, _ = io.Copy(io.Discard, r.Body)
			h := w.Header()
			h["Content-Type"] = []string{"application/json"}
			h["Content-Length"] = []string{contentLength}
			_, _ = w.Write(answer)
		}
	})}
	go func() { _ = srv.Serve(ln) }()
	b.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String()
}

// benchGateway starts n fast backends in one pool behind a gateway with the
// default scheduling profile, and waits until all are schedulable.
func benchGateway(b *testing.B, n int) (*Server, []string) {
	b.Helper()
	addrs := make([]string, n)
	for i := range addrs {
		addrs[i] = startFastBackend(b)
	}
	s := startGateway(b, parseConfig(b,
		poolYAML("fast", addrs...),
		routeYAML("fast", "  matches: [{model: {value: m}}]\n  backends: [{pool: fast}]\n"),
	), Options{})
	waitCandidates(b, s, "fast", n)
	return s, addrs
}

// benchBody is a typical small chat request.
const benchBody = `{"model":"m","messages":[{"role":"system","content":"You are a helpful assistant."},` +
	`{"role":"user","content":"What is the capital of France? Answer in one word."}],"max_tokens":16}`

func newBenchClient(b *testing.B) *http.Client {
	tr := &http.Transport{Proxy: nil, MaxIdleConns: 1024, MaxIdleConnsPerHost: 256, DisableCompression: true, IdleConnTimeout: time.Minute}
	b.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

func doChat(c *http.Client, url string) error {
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(benchBody))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err == nil && resp.StatusCode != http.StatusOK {
		err = errors.New(resp.Status)
	}
	return err
}

// openLoop sends rate requests per second, evenly spaced, for d, each on
// its own goroutine whether or not earlier ones have finished (an open
// loop: a slow server cannot slow the arrivals down and hide its own
// latency). url(i) is the target of request i. It returns every request's
// latency, in request order, measured from its send to the end of its
// body, and the achieved completion rate.
func openLoop(b *testing.B, c *http.Client, rate int, d time.Duration, url func(i int) string) ([]time.Duration, float64) {
	b.Helper()
	n := int(d.Seconds() * float64(rate))
	interval := time.Second / time.Duration(rate)
	lat := make([]time.Duration, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range n {
		if wait := time.Until(start.Add(time.Duration(i) * interval)); wait > 0 {
			time.Sleep(wait)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			t0 := time.Now()
			errs[i] = doChat(c, url(i))
			lat[i] = time.Since(t0)
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	failed, first := 0, error(nil)
	for _, err := range errs {
		if err != nil {
			failed++
			first = cmp.Or(first, err)
		}
	}
	if failed > 0 {
		// On a starved machine scrapes fall behind, endpoints go stale and
		// the gateway answers 503: the run measures nothing then.
		b.Fatalf("open loop: %d of %d requests failed, the first with: %v", failed, n, first)
	}
	return lat, float64(n) / elapsed.Seconds()
}

func percentile(sorted []time.Duration, p float64) time.Duration {
	i := int(p*float64(len(sorted))+0.5) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func µs(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

// warm opens connections along a path (client → target, and for the
// gateway gateway → backends) so the measured phase does not pay for TCP
// handshakes.
func warm(b *testing.B, c *http.Client, url func(i int) string) {
	b.Helper()
	var wg sync.WaitGroup
	for w := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				if err := doChat(c, url(w*50+i)); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

// BenchmarkProxyOverhead_1000RPS measures the latency the gateway adds at
// 1,000 requests per second against fast backends (the target:
// p99 added ≤ 1 ms). Four loopback backends form one pool with the default
// scheduling profile. One open loop sends 1,000 req/s, evenly spaced, for
// 4 s: 2 s of it directly to the backends (round-robin) and 2 s through
// the gateway, alternating every 250 requests so that a burst of load from
// elsewhere on the machine hits both paths alike. It reports p50/p99 of
// both, their differences, and the achieved rate.
//
// The workload is fixed, so b.N is ignored; run with -benchtime 1x.
// Client, gateway and backends share the machine's cores, so the added
// latency includes the gateway's CPU competing with the load generator.
func BenchmarkProxyOverhead_1000RPS(b *testing.B) {
	const (
		rate     = 1000
		duration = 2 * time.Second // per path
		block    = 250             // requests per path before switching
	)
	s, addrs := benchGateway(b, 4)
	c := newBenchClient(b)
	direct := func(i int) string { return "http://" + addrs[i%len(addrs)] + "/v1/chat/completions" }
	gateway := func(int) string { return "http://" + s.Addr() + "/v1/chat/completions" }
	viaGateway := func(i int) bool { return (i/block)%2 == 1 }
	warm(b, c, direct)
	warm(b, c, gateway)

	b.ResetTimer()
	lat, achieved := openLoop(b, c, rate, 2*duration, func(i int) string {
		if viaGateway(i) {
			return gateway(i)
		}
		return direct(i)
	})
	b.StopTimer()

	var dLat, gLat []time.Duration
	for i, l := range lat {
		if viaGateway(i) {
			gLat = append(gLat, l)
		} else {
			dLat = append(dLat, l)
		}
	}
	slices.Sort(dLat)
	slices.Sort(gLat)
	dp50, dp99 := percentile(dLat, 0.50), percentile(dLat, 0.99)
	gp50, gp99 := percentile(gLat, 0.50), percentile(gLat, 0.99)
	b.ReportMetric(µs(dp50), "direct-p50-µs")
	b.ReportMetric(µs(dp99), "direct-p99-µs")
	b.ReportMetric(µs(gp50), "gateway-p50-µs")
	b.ReportMetric(µs(gp99), "gateway-p99-µs")
	b.ReportMetric(µs(gp50-dp50), "added-p50-µs")
	b.ReportMetric(µs(gp99-dp99), "added-p99-µs")
	b.ReportMetric(achieved, "req/s")
}

// BenchmarkGateway_ServeInference is the per-request cost of the gateway,
// closed loop: b.N sequential requests through the gateway to a fast
// backend, against the same requests sent directly (the "direct" baseline).
// The difference between the two is what the gateway costs per request in
// time and allocations (client and backend are in the same process and
// counted in both).
func BenchmarkGateway_ServeInference(b *testing.B) {
	s, addrs := benchGateway(b, 1)
	for _, bc := range []struct {
		name string
		url  string
	}{
		{"direct", "http://" + addrs[0] + "/v1/chat/completions"},
		{"gateway", "http://" + s.Addr() + "/v1/chat/completions"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			c := newBenchClient(b)
			if err := doChat(c, bc.url); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if err := doChat(c, bc.url); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
