package gateway

import (
	"context"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/igw-dev/igw/pkg/config"
	"github.com/igw-dev/igw/pkg/datastore"
	"github.com/igw-dev/igw/pkg/engine"
	"github.com/igw-dev/igw/pkg/modelserver"
)

// fakeServer is a model server on a loopback port: /metrics in vLLM's text
// format with values a test sets, /health, /v1/models, and the OpenAI
// inference paths
// answered by a handler a test can replace. It records what it received,
// so a test can check what the gateway forwarded.
type fakeServer struct {
	srv  *httptest.Server
	addr string // host:port, the endpoint address

	waiting  atomic.Int64
	kvBits   atomic.Uint64 // float64 bits of the KV-cache usage
	noScrape atomic.Bool   // /metrics fails while set

	hits atomic.Int64

	mu      sync.Mutex
	handler http.HandlerFunc
	running atomic.Int64 // vllm:num_requests_running (see busy)
	header  http.Header  // of the last inference request
	body    []byte
	uri     string
}

func newFakeServer(t testing.TB) *fakeServer {
	t.Helper()
	f := &fakeServer{handler: answerChat}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	f.addr = f.srv.Listener.Addr().String()
	t.Cleanup(f.srv.Close)
	return f
}

// load sets what the next scrapes report.
func (f *fakeServer) load(waiting int, kv float64) {
	f.running.Store(0)
	f.waiting.Store(int64(waiting))
	f.kvBits.Store(math.Float64bits(kv))
}

// busy makes the server report running requests and nothing waiting:
// occupied, with room (its concurrency limit is never learned).
func (f *fakeServer) busy(running int) {
	f.running.Store(int64(running))
	f.waiting.Store(0)
}

func (f *fakeServer) setHandler(h http.HandlerFunc) {
	f.mu.Lock()
	f.handler = h
	f.mu.Unlock()
}

// last returns the headers and body of the last inference request.
func (f *fakeServer) last() (http.Header, []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.header, f.body
}

// lastURI is the request URI (path and query) of the last inference request.
func (f *fakeServer) lastURI() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.uri
}

func (f *fakeServer) serve(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/metrics":
		if f.noScrape.Load() {
			http.Error(w, "not yet", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		fmt.Fprintf(w, "# TYPE vllm:num_requests_waiting gauge\nvllm:num_requests_waiting{model_name=\"m\"} %d\n"+
			"# TYPE vllm:num_requests_running gauge\nvllm:num_requests_running{model_name=\"m\"} %d\n"+
			"# TYPE vllm:kv_cache_usage_perc gauge\nvllm:kv_cache_usage_perc{model_name=\"m\"} %g\n",
			f.waiting.Load(), f.running.Load(), math.Float64frombits(f.kvBits.Load()))
	case "/health":
		w.WriteHeader(http.StatusOK)
	case "/v1/models": // the scraper reads it after every health check
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"object":"list","data":[{"id":"m","object":"model","created":1,"owned_by":"test"}]}`)
	default:
		if r.Method != http.MethodPost { // only inference requests count as hits
			http.NotFound(w, r)
			return
		}
		body, _ := io.ReadAll(r.Body)
		f.hits.Add(1)
		f.mu.Lock()
		f.header, f.body, f.uri = r.Header.Clone(), body, r.URL.RequestURI()
		h := f.handler
		f.mu.Unlock()
		h(w, r)
	}
}

// chatAnswer is a small non-streamed chat completion with usage 7 in, 3 out.
const chatAnswer = `{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"m",` +
	`"choices":[{"index":0,"message":{"role":"assistant","content":"hi there"},"finish_reason":"stop"}],` +
	`"usage":{"prompt_tokens":7,"completion_tokens":3,"total_tokens":10}}`

func answerChat(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(chatAnswer)))
	_, _ = io.WriteString(w, chatAnswer)
}

// answerStatus answers every inference request with an OpenAI error of
// status code.
func answerStatus(code int) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		fmt.Fprintf(w, `{"error":{"message":"status %d","type":"server_error","code":%d}}`, code, code)
	}
}

// closedAddr is a loopback address nothing listens on: connecting to it is
// refused.
func closedAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// gatewayYAML is a Gateway listening on ephemeral loopback ports.
const gatewayYAML = `apiVersion: igw.dev/v1alpha1
kind: Gateway
metadata: {name: igw}
spec:
  address: 127.0.0.1:0
  adminAddress: 127.0.0.1:0
`

// poolYAML is an InferencePool named name with one ModelServer per address
// (host:port on 127.0.0.1).
func poolYAML(name string, addrs ...string) string {
	var b strings.Builder
	var ports []string
	for i, a := range addrs {
		_, port, _ := net.SplitHostPort(a)
		ports = append(ports, "{number: "+port+"}")
		fmt.Fprintf(&b, "---\napiVersion: igw.dev/v1alpha1\nkind: ModelServer\nmetadata: {name: %s-%d, labels: {pool: %s}}\nspec: {address: 127.0.0.1, ports: [{number: %s}]}\n",
			name, i, name, port)
	}
	fmt.Fprintf(&b, "---\napiVersion: inference.networking.k8s.io/v1\nkind: InferencePool\nmetadata: {name: %s}\nspec:\n  selector: {matchLabels: {pool: %s}}\n  targetPorts: [%s]\n",
		name, name, strings.Join(ports, ", "))
	return b.String()
}

// routeYAML is a Route document with the given spec (YAML, indented by the
// caller as a block under spec:).
func routeYAML(name, spec string) string {
	return "---\napiVersion: igw.dev/v1alpha1\nkind: Route\nmetadata: {name: " + name + "}\nspec:\n" + spec
}

// testSchema is igw serve's: the engine's kinds and the Gateway.
var testSchema = engine.Schema(Kind())

func parseConfig(t testing.TB, docs ...string) *config.Config {
	t.Helper()
	cfg, err := testSchema.Parse("test.yaml", []byte(gatewayYAML+strings.Join(docs, "")))
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	return cfg
}

// testScrapeInterval is faster than the default so tests wait less; it
// stays well under datastore.DefaultMaxAge so endpoints stay candidates
// under -race.
const testScrapeInterval = 20 * time.Millisecond

// startGateway builds and starts a Server from cfg and shuts it down when
// the test ends.
func startGateway(t testing.TB, cfg *config.Config, o Options) *Server {
	t.Helper()
	if o.Scraper.Interval == 0 {
		o.Scraper.Interval = testScrapeInterval
	}
	s, err := New(cfg, o)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Shutdown(ctx) // a test may have shut it down already
	})
	return s
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitCandidates waits until n endpoints of pool (namespace default) are
// scraped, ready and fresh.
func waitCandidates(t testing.TB, s *Server, pool string, n int) {
	t.Helper()
	waitFor(t, fmt.Sprintf("%d schedulable endpoints in pool %s", n, pool), 5*time.Second, func() bool {
		p := s.engine.Store().Pool("default/" + pool)
		return p != nil && len(datastore.Candidates(nil, p.Endpoints, time.Now(), 0)) == n
	})
}

// waitMetrics waits until the endpoint at addr has been scraped with the
// given queue length, so a test that set a fake server's load knows the
// scheduler sees it.
func waitMetrics(t testing.TB, s *Server, addr string, waiting int) {
	t.Helper()
	waitFor(t, "a scrape of "+addr, 5*time.Second, func() bool {
		for _, e := range s.engine.Store().AllEndpoints() {
			if m := e.Metrics(); e.Address == addr && m != nil && m.WaitingQueueSize == waiting {
				return true
			}
		}
		return false
	})
}

// newClient is a plain HTTP client with a bound on every request.
func newClient(t testing.TB) *http.Client {
	t.Helper()
	tr := &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 64, DisableCompression: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 20 * time.Second}
}

type reply struct {
	status int
	header http.Header
	body   string
}

// post sends body to the gateway's path with extra headers ("k: v").
func post(t testing.TB, c *http.Client, s *Server, path, body string, headers ...string) reply {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, "http://"+s.Addr()+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for _, h := range headers {
		k, v, _ := strings.Cut(h, ":")
		req.Header.Add(k, strings.TrimSpace(v))
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("POST %s: reading: %v", path, err)
	}
	return reply{status: resp.StatusCode, header: resp.Header, body: string(b)}
}

func chatBody(model string) string {
	return `{"model":"` + model + `","messages":[{"role":"user","content":"Hello there"}],"max_tokens":8}`
}

func get(t testing.TB, c *http.Client, url string) reply {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return reply{status: resp.StatusCode, header: resp.Header, body: string(b)}
}

// scrape reads the gateway's /metrics over HTTP.
func scrape(t testing.TB, c *http.Client, s *Server) map[string]*dto.MetricFamily {
	t.Helper()
	r := get(t, c, "http://"+s.AdminAddr()+"/metrics")
	if r.status != http.StatusOK {
		t.Fatalf("/metrics: %d", r.status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(strings.NewReader(r.body))
	if err != nil {
		t.Fatalf("/metrics does not parse: %v", err)
	}
	return fams
}

// sample sums the values of the series of family name whose labels include
// every pair of labels ("k=v"): counter and gauge values, histogram counts.
func sample(fams map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	f := fams[name]
	if f == nil {
		return 0
	}
	total := 0.0
next:
	for _, m := range f.Metric {
		for _, l := range labels {
			k, v, _ := strings.Cut(l, "=")
			found := false
			for _, lp := range m.Label {
				if lp.GetName() == k && lp.GetValue() == v {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			total += m.Counter.GetValue()
		case m.Gauge != nil:
			total += m.Gauge.GetValue()
		case m.Histogram != nil:
			total += float64(m.Histogram.GetSampleCount())
		}
	}
	return total
}

// redirectingScraper is scraper options whose client dials the addresses
// in to instead: the scraper sees a healthy server where the proxy finds
// a dead port, as when a server dies between two scrapes.
func redirectingScraper(to map[string]string) modelserver.Options {
	d := &net.Dialer{Timeout: time.Second}
	tr := &http.Transport{Proxy: nil, DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		if a, ok := to[addr]; ok {
			addr = a
		}
		return d.DialContext(ctx, network, addr)
	}}
	return modelserver.Options{Client: &http.Client{Transport: tr}}
}
