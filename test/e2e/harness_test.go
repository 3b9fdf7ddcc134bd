package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"text/template"
	"time"

	"github.com/igw-dev/igw/pkg/config"
	"github.com/igw-dev/igw/pkg/datastore"
	"github.com/igw-dev/igw/pkg/discovery/static"
	"github.com/igw-dev/igw/pkg/engine"
	"github.com/igw-dev/igw/pkg/gateway"
	"github.com/igw-dev/igw/pkg/openai"
	"github.com/igw-dev/igw/pkg/sim"
)

// testModel is the model every simulated replica serves unless a test says
// otherwise.
const testModel = "e2e-model"

// Header names the tests read or send.
const (
	hdrServed      = "X-Gateway-Destination-Endpoint-Served"
	hdrDestination = "X-Gateway-Destination-Endpoint"
	hdrSubset      = "X-Gateway-Destination-Endpoint-Subset"
	hdrDropped     = "X-Gateway-Request-Dropped-Reason"
	hdrObjective   = "X-Gateway-Inference-Objective"
	hdrFairness    = "X-Gateway-Inference-Fairness-Id"
)

// startFleet starts replicas simulated replicas of testModel on ephemeral
// loopback ports, at time scale 20, after mutate adjusts the settings. The
// fleet is closed when the test ends.
func startFleet(t *testing.T, replicas int, mutate func(*sim.Config)) *sim.Fleet {
	t.Helper()
	cfg := sim.DefaultConfig()
	cfg.Address, cfg.Port, cfg.Replicas, cfg.Model, cfg.TimeScale = "127.0.0.1", 0, replicas, testModel, 20
	if mutate != nil {
		mutate(&cfg)
	}
	f, err := sim.StartFleet(cfg, nil)
	if err != nil {
		t.Fatalf("starting simulator: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = f.Close(ctx)
	})
	return f
}

// poolSpec is one InferencePool of a rendered gateway configuration: its
// endpoints (one ModelServer each) and the Route that sends Model to it.
type poolSpec struct {
	Name  string
	Model string
	Addrs []string
	// Annotations of the InferencePool (igw.dev/outlier-*, …).
	Annotations map[string]string
	// KVEventsPorts, when set, are the ports each address publishes its
	// KV-cache events on (ModelServer spec.kvEventsPort).
	KVEventsPorts []int
}

// gatewaySpec is what renderConfig turns into a standalone YAML file.
type gatewaySpec struct {
	// MaxBody is spec.maxRequestBodySize ("" for the default).
	MaxBody string
	// Pools, each with a ModelServer per address and a Route by model.
	Pools []poolSpec
	// Extra documents (objectives, an EndpointPickerConfig), appended as is.
	Extra []string
}

var configTemplate = template.Must(template.New("e2e").Funcs(template.FuncMap{
	"host": func(addr string) string { h, _, _ := net.SplitHostPort(addr); return h },
	"port": func(addr string) string { _, p, _ := net.SplitHostPort(addr); return p },
}).Parse(`apiVersion: igw.dev/v1alpha1
kind: Gateway
metadata:
  name: e2e
spec:
  address: "127.0.0.1:0"
  adminAddress: "127.0.0.1:0"
{{- if .MaxBody}}
  maxRequestBodySize: {{.MaxBody}}
{{- end}}
{{- range $p := .Pools}}
{{- range $i, $a := $p.Addrs}}
---
apiVersion: igw.dev/v1alpha1
kind: ModelServer
metadata:
  name: {{$p.Name}}-{{$i}}
  labels:
    app: {{$p.Name}}
spec:
  address: {{host $a}}
  ports: [{number: {{port $a}}}]
  engine: vllm
{{- if $p.KVEventsPorts}}
  kvEventsPort: {{index $p.KVEventsPorts $i}}
{{- end}}
{{- end}}
---
apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata:
  name: {{$p.Name}}
{{- if $p.Annotations}}
  annotations:
{{- range $k, $v := $p.Annotations}}
    {{$k}}: "{{$v}}"
{{- end}}
{{- end}}
spec:
  selector:
    matchLabels:
      app: {{$p.Name}}
  targetPorts:
{{- range $p.Addrs}}
  - number: {{port .}}
{{- end}}
---
apiVersion: igw.dev/v1alpha1
kind: Route
metadata:
  name: {{$p.Name}}
spec:
  matches:
  - model: {value: "{{$p.Model}}"}
  backends:
  - pool: {{$p.Name}}
{{- end}}
{{- range .Extra}}
---
{{.}}
{{- end}}
`))

// renderConfig renders spec as a standalone configuration file whose
// listeners are on 127.0.0.1:0.
func renderConfig(t *testing.T, spec gatewaySpec) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := configTemplate.Execute(&buf, spec); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// objectiveDoc is an InferenceObjective document for pool.
func objectiveDoc(name, pool string, priority int) string {
	return fmt.Sprintf(`apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceObjective
metadata:
  name: %s
spec:
  priority: %d
  poolRef:
    name: %s`, name, priority, pool)
}

// pickerConfigDoc is an EndpointPickerConfig with the queue, KV-cache and
// prefix-cache scorers at the given weights, plus the LoRA affinity scorer
// when loraWeight > 0, and the max-score picker.
func pickerConfigDoc(queue, kv, prefix, loraWeight int) string {
	var b strings.Builder
	b.WriteString(`apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: queue-scorer
- type: kv-cache-utilization-scorer
- type: prefix-cache-scorer
`)
	if loraWeight > 0 {
		b.WriteString("- type: lora-affinity-scorer\n")
	}
	fmt.Fprintf(&b, `- type: max-score-picker
schedulingProfiles:
- name: default
  plugins:
  - pluginRef: queue-scorer
    weight: %d
  - pluginRef: kv-cache-utilization-scorer
    weight: %d
  - pluginRef: prefix-cache-scorer
    weight: %d
`, queue, kv, prefix)
	if loraWeight > 0 {
		fmt.Fprintf(&b, "  - pluginRef: lora-affinity-scorer\n    weight: %d\n", loraWeight)
	}
	b.WriteString("  - pluginRef: max-score-picker")
	return b.String()
}

// schema is igw serve's configuration schema.
var schema = engine.Schema(gateway.Kind())

// startGateway parses raw, starts a gateway.Server on loopback and waits
// until it is ready and every endpoint of every pool is a scheduling
// candidate. The server is shut down when the test ends; its log is shown
// if the test failed.
func startGateway(t *testing.T, raw []byte) *gateway.Server {
	t.Helper()
	cfg, err := schema.Parse("e2e.yaml", raw)
	if err != nil {
		t.Fatalf("configuration:\n%s\n%v", raw, err)
	}
	var logs syncBuffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	gw, err := gateway.New(cfg, gateway.Options{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	if err := gw.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = gw.Shutdown(ctx)
		if t.Failed() {
			t.Logf("gateway log:\n%s", tail(logs.String(), 60))
		}
	})
	waitReady(t, gw.AdminAddr())
	for _, p := range static.Pools(cfg) {
		waitCandidates(t, gw, config.NamespacedName(p.Namespace, p.Name), len(static.PoolEndpoints(cfg, p)))
	}
	return gw
}

// candidates are the addresses of pool's endpoints the Director may
// schedule on now.
func candidates(gw *gateway.Server, pool string) []string {
	p := gw.Director().Store().Pool(pool)
	if p == nil {
		return nil
	}
	var out []string
	for _, e := range datastore.Candidates(nil, p.Endpoints, time.Now(), 0) {
		out = append(out, e.Address)
	}
	slices.Sort(out)
	return out
}

// waitCandidates waits until pool has n candidate endpoints.
func waitCandidates(t *testing.T, gw *gateway.Server, pool string, n int) {
	t.Helper()
	eventually(t, 10*time.Second, func() error {
		if c := candidates(gw, pool); len(c) != n {
			return fmt.Errorf("pool %s has candidates %v, want %d", pool, c, n)
		}
		return nil
	})
}

// waitReady polls the admin listener's /readyz until it answers 200.
func waitReady(t *testing.T, admin string) {
	t.Helper()
	c := newClient()
	eventually(t, 15*time.Second, func() error {
		resp, err := c.Get("http://" + admin + "/readyz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("/readyz: %s", resp.Status)
		}
		return nil
	})
}

// eventually calls f every 20 ms until it returns nil, failing the test
// with f's last error after timeout.
func eventually(t *testing.T, timeout time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not true after %v: %v", timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// newClient is an HTTP client for loopback tests: no proxy from the
// environment, no compression, enough idle connections for the tests'
// concurrency.
func newClient() *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			Proxy:               nil,
			DialContext:         (&net.Dialer{Timeout: 10 * time.Second}).DialContext,
			MaxIdleConnsPerHost: 128,
			DisableCompression:  true,
		},
		Timeout: 60 * time.Second,
	}
}

// result is one answered HTTP request.
type result struct {
	Status int
	Header http.Header
	Body   []byte
	Err    error // transport error; Status is 0
}

// Served is the endpoint the gateway says it used.
func (r result) Served() string { return r.Header.Get(hdrServed) }

// String summarizes the result for failure messages.
func (r result) String() string {
	if r.Err != nil {
		return "error: " + r.Err.Error()
	}
	return fmt.Sprintf("%d %s", r.Status, bytes.TrimSpace(r.Body))
}

// post sends body to url with headers and reads the whole answer.
func post(ctx context.Context, c *http.Client, url string, body []byte, headers map[string]string) result {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return result{Err: err}
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		return result{Err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return result{Status: resp.StatusCode, Header: resp.Header, Body: b, Err: err}
}

// staleRejections counts the gateway's "503 rejected-no-endpoints"
// answers that postTolerant absorbed.
type staleRejections struct{ n atomic.Int64 }

// postTolerant is post for tests about routing and failover whose pool
// always has live servers. It absorbs the gateway's "503
// rejected-no-endpoints" answers by retrying (up to 10 times, 100 ms apart)
// and counts them in stale: the Director drops every endpoint whose metrics
// snapshot is older than 200 ms from the candidate set, so on an
// overloaded machine, where a scrape is late, a healthy pool can briefly
// have no candidate. That is a gateway bug, reproduced on its own
// elsewhere; tests that use postTolerant log the count instead of flaking.
// A nil stale absorbs nothing.
func postTolerant(ctx context.Context, c *http.Client, url string, body []byte, headers map[string]string, stale *staleRejections) result {
	for attempt := 0; ; attempt++ {
		r := post(ctx, c, url, body, headers)
		if stale == nil || attempt == 10 || r.Status != http.StatusServiceUnavailable || r.Header.Get(hdrDropped) != "rejected-no-endpoints" || ctx.Err() != nil {
			return r
		}
		stale.n.Add(1)
		time.Sleep(100 * time.Millisecond)
	}
}

// report logs how many rejections were absorbed. A request that stays
// rejected for the whole retry budget (a second) is not absorbed and
// fails its test as usual.
func (s *staleRejections) report(t *testing.T) {
	t.Helper()
	if n := s.n.Load(); n > 0 {
		t.Logf("absorbed %d transient 503 rejected-no-endpoints answers (metrics snapshots older than 200 ms on a loaded machine)", n)
	}
}

// chat is a chat completion request.
type chat struct {
	Model     string
	System    string // omitted when empty
	User      string
	MaxTokens int
	IgnoreEOS bool
	Stream    bool
	Usage     bool // stream_options.include_usage
	Seed      *int64
}

// body renders the request as JSON.
func (c chat) body() []byte {
	var msgs []map[string]string
	if c.System != "" {
		msgs = append(msgs, map[string]string{"role": "system", "content": c.System})
	}
	msgs = append(msgs, map[string]string{"role": "user", "content": c.User})
	m := map[string]any{"model": c.Model, "messages": msgs}
	if c.MaxTokens > 0 {
		m["max_tokens"] = c.MaxTokens
	}
	if c.IgnoreEOS {
		m["ignore_eos"] = true
	}
	if c.Stream {
		m["stream"] = true
	}
	if c.Usage {
		m["stream_options"] = map[string]bool{"include_usage": true}
	}
	if c.Seed != nil {
		m["seed"] = *c.Seed
	}
	b, _ := json.Marshal(m)
	return b
}

// chatURL is the chat completions URL of a gateway or replica address.
func chatURL(addr string) string { return "http://" + addr + "/v1/chat/completions" }

// words is the vocabulary of generated prompts.
var words = strings.Fields(`the a of to and in is for on with as by at from that this which model server
cache request token prompt gateway replica queue latency batch memory block prefix route pool adapter
context system user answer question document section paper table figure result method value data`)

// text is deterministic English-like text of about n bytes. Texts of
// different seeds differ from their first word on: the seed is spelled out
// first.
func text(seed uint64, n int) string {
	r := rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))
	var b strings.Builder
	b.WriteString("Document ")
	b.WriteString(strconv.FormatUint(seed, 10))
	b.WriteString(".")
	for b.Len() < n {
		b.WriteByte(' ')
		b.WriteString(words[r.IntN(len(words))])
	}
	return b.String()
}

// usage is the usage block of a non-streamed response.
type usage struct {
	PromptTokens        int `json:"prompt_tokens"`
	CompletionTokens    int `json:"completion_tokens"`
	PromptTokensDetails *struct {
		CachedTokens int `json:"cached_tokens"`
	} `json:"prompt_tokens_details"`
}

// usageOf extracts the usage of a non-streamed response body.
func usageOf(t *testing.T, body []byte) usage {
	t.Helper()
	var r struct {
		Usage *usage `json:"usage"`
	}
	if err := json.Unmarshal(body, &r); err != nil || r.Usage == nil {
		t.Fatalf("no usage in %s (%v)", body, err)
	}
	return *r.Usage
}

// counts tallies how many requests each endpoint served.
type counts map[string]int

// top is the endpoint that served most and its count.
func (c counts) top() (string, int) {
	best, n := "", -1
	for k, v := range c {
		if v > n || (v == n && k < best) {
			best, n = k, v
		}
	}
	return best, n
}

// runConcurrently sends n requests with concurrency workers through
// postTolerant (with stale); req(i) builds request i's body and headers and
// url(i) its target. It returns the results in request order.
func runConcurrently(ctx context.Context, c *http.Client, n, workers int, stale *staleRejections, url func(i int) string, req func(i int) ([]byte, map[string]string)) []result {
	results := make([]result, n)
	next := make(chan int)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				body, h := req(i)
				results[i] = postTolerant(ctx, c, url(i), body, h, stale)
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	return results
}

// scrape fetches a Prometheus text page.
func scrape(t *testing.T, c *http.Client, url string) string {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("scraping %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("scraping %s: %s %v", url, resp.Status, err)
	}
	return string(b)
}

// metricSum sums the samples of the metric family name in a Prometheus
// text page whose labels include every pair of want.
func metricSum(page, name string, want map[string]string) float64 {
	sum := 0.0
	sc := bufio.NewScanner(strings.NewReader(page))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name) {
			continue
		}
		rest := line[len(name):]
		labels := ""
		switch {
		case strings.HasPrefix(rest, "{"):
			end := strings.Index(rest, "}")
			if end < 0 {
				continue
			}
			labels, rest = rest[1:end], rest[end+1:]
		case strings.HasPrefix(rest, " "):
		default:
			continue // another metric whose name starts with name
		}
		ok := true
		for k, v := range want {
			if !strings.Contains(labels, k+`="`+v+`"`) {
				ok = false
				break
			}
		}
		if !ok {
			continue
		}
		fields := strings.Fields(rest)
		if len(fields) == 0 {
			continue
		}
		if v, err := strconv.ParseFloat(fields[0], 64); err == nil {
			sum += v
		}
	}
	return sum
}

// errorBody is an OpenAI-style error response.
type errorBody struct {
	Error *struct {
		Message *string `json:"message"`
		Type    *string `json:"type"`
		Code    any     `json:"code"`
	} `json:"error"`
}

// checkOpenAIError fails the test unless r has status want and an
// OpenAI-shaped JSON error body {"error":{"message","type","code"}} with
// OpenAI's type for the status (a model server's error passes unchanged:
// vLLM's numeric code is one).
func checkOpenAIError(t *testing.T, what string, r result, want int) {
	t.Helper()
	if r.Err != nil || r.Status != want {
		t.Errorf("%s: got %s, want status %d", what, r, want)
		return
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("%s: Content-Type %q, want application/json", what, ct)
	}
	var e errorBody
	var keys struct {
		Error map[string]json.RawMessage `json:"error"`
	}
	err := json.Unmarshal(r.Body, &e)
	if err == nil {
		err = json.Unmarshal(r.Body, &keys)
	}
	_, hasCode := keys.Error["code"]
	if err != nil || e.Error == nil || e.Error.Message == nil || *e.Error.Message == "" || e.Error.Type == nil ||
		*e.Error.Type != openai.TypeForStatus(want) || !hasCode {
		t.Errorf("%s: body %s is not an OpenAI error {\"error\":{\"message\",\"type\",\"code\"}} of type %s (%v)",
			what, r.Body, openai.TypeForStatus(want), err)
	}
}
