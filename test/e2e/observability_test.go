package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// obsPool is the pool of the observability tests.
const obsPool = "obs"

// upstreamFamily is one row of REFERENCE §9: the reference Endpoint
// Picker's metric, its type and its labels, as dashboards query them.
type upstreamFamily struct {
	name   string
	typ    dto.MetricType
	labels []string
}

var upstreamFamilies = []upstreamFamily{
	{"inference_objective_request_total", dto.MetricType_COUNTER, []string{"model_name", "target_model_name"}},
	{"inference_objective_request_error_total", dto.MetricType_COUNTER, []string{"model_name", "target_model_name", "error_code"}},
	{"inference_objective_request_duration_seconds", dto.MetricType_HISTOGRAM, []string{"model_name", "target_model_name"}},
	{"inference_objective_normalized_time_per_output_token_seconds", dto.MetricType_HISTOGRAM, []string{"model_name", "target_model_name"}},
	{"inference_objective_request_sizes", dto.MetricType_HISTOGRAM, []string{"model_name", "target_model_name"}},
	{"inference_objective_response_sizes", dto.MetricType_HISTOGRAM, []string{"model_name", "target_model_name"}},
	{"inference_objective_input_tokens", dto.MetricType_HISTOGRAM, []string{"model_name", "target_model_name"}},
	{"inference_objective_output_tokens", dto.MetricType_HISTOGRAM, []string{"model_name", "target_model_name"}},
	{"inference_objective_running_requests", dto.MetricType_GAUGE, []string{"model_name"}},
	{"inference_pool_average_kv_cache_utilization", dto.MetricType_GAUGE, []string{"name"}},
	{"inference_pool_average_queue_size", dto.MetricType_GAUGE, []string{"name"}},
	{"inference_pool_ready_pods", dto.MetricType_GAUGE, []string{"name"}},
	{"inference_pool_per_pod_queue_size", dto.MetricType_GAUGE, []string{"name", "model_server_pod"}},
	{"inference_extension_info", dto.MetricType_GAUGE, []string{"commit", "build_ref"}},
	{"inference_extension_flow_control_request_queue_duration_seconds", dto.MetricType_HISTOGRAM,
		[]string{"fairness_id", "priority", "outcome", "inference_pool", "model_name", "target_model_name"}},
	{"inference_extension_flow_control_queue_size", dto.MetricType_GAUGE,
		[]string{"fairness_id", "priority", "inference_pool", "model_name", "target_model_name"}},
}

// scrapeFamilies fetches and parses a /metrics page with the Prometheus
// text parser.
func scrapeFamilies(t *testing.T, c *http.Client, url string) map[string]*dto.MetricFamily {
	t.Helper()
	page := scrape(t, c, url)
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(strings.NewReader(page))
	if err != nil {
		t.Fatalf("parsing %s: %v", url, err)
	}
	return fams
}

func labelsOf(m *dto.Metric) map[string]string {
	out := map[string]string{}
	for _, l := range m.GetLabel() {
		out[l.GetName()] = l.GetValue()
	}
	return out
}

// obsConfig writes the configuration of the observability tests: one
// pool of the fleet's replicas behind a route for testModel.
func obsConfig(t *testing.T, addrs []string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "obs.yaml")
	raw := renderConfig(t, gatewaySpec{Pools: []poolSpec{{Name: obsPool, Model: testModel, Addrs: addrs}}})
	if err := os.WriteFile(path, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// warmUp waits until pl serves a chat request.
func warmUp(t *testing.T, c *http.Client, pl plane) {
	t.Helper()
	ctx := withTimeout(t, 30*time.Second)
	body := chat{Model: testModel, User: "warm up", MaxTokens: 2}.body()
	eventually(t, 25*time.Second, func() error {
		if r := post(ctx, c, pl.base+"/v1/chat/completions", body, nil); r.Err != nil || r.Status != http.StatusOK {
			return fmt.Errorf("%s not serving yet: %s", pl.name, r)
		}
		return nil
	})
}

// TestObservability_UpstreamMetricNames runs igw serve and igw epp (behind
// Envoy's ext_proc protocol) over two simulated replicas, sends traffic
// through both, and checks on each process's /metrics that every metric of
// the reference Endpoint Picker (REFERENCE §9) is there with its type and
// exactly its labels, with values the traffic explains. It also checks
// that a request asking for its decision explained gets nothing from a
// gateway that does not explain decisions.
func TestObservability_UpstreamMetricNames(t *testing.T) {
	fleet := startFleet(t, 2, nil)
	planes := startPlanes(t, obsConfig(t, fleet.Addrs()), obsPool)
	client := newClient()
	for _, pl := range planes {
		t.Run(strings.TrimPrefix(pl.name, "igw "), func(t *testing.T) {
			warmUp(t, client, pl)
			ctx := withTimeout(t, 60*time.Second)
			url := pl.base + "/v1/chat/completions"
			const ok = 6
			for i := range ok {
				body := chat{Model: testModel, User: text(uint64(i), 200), MaxTokens: 4, IgnoreEOS: true, Stream: i%2 == 1, Usage: true}.body()
				r := post(ctx, client, url, body, map[string]string{hdrFairness: "tenant-a", "X-Igw-Debug-Decision": "1"})
				if r.Err != nil || r.Status != http.StatusOK {
					t.Fatalf("request %d: %s", i, r)
				}
				if got := r.Header.Get("X-Igw-Decision"); got != "" {
					t.Fatalf("the decision was explained without --explain-decisions: %s", got)
				}
			}
			// Too long for the model server: its 400 is a failed request.
			r := post(ctx, client, url, chat{Model: testModel, User: "hi", MaxTokens: 100_000_000}.body(), nil)
			if r.Err != nil || r.Status != http.StatusBadRequest {
				t.Fatalf("over-long request: %s", r)
			}

			fams := scrapeFamilies(t, client, pl.metrics)
			for _, want := range upstreamFamilies {
				f := fams[want.name]
				if f == nil {
					t.Errorf("%s missing", want.name)
					continue
				}
				if f.GetType() != want.typ {
					t.Errorf("%s is a %v, want %v", want.name, f.GetType(), want.typ)
				}
				for _, m := range f.GetMetric() {
					got := slices.Sorted(func(yield func(string) bool) {
						for k := range labelsOf(m) {
							if !yield(k) {
								return
							}
						}
					})
					if !slices.Equal(got, slices.Sorted(slices.Values(want.labels))) {
						t.Errorf("%s labels %v, want %v", want.name, got, want.labels)
					}
				}
			}
			if t.Failed() {
				return
			}
			models := map[string]string{"model_name": testModel, "target_model_name": testModel}
			value := func(name string, match map[string]string) (sum float64, count uint64) {
				for _, m := range fams[name].GetMetric() {
					l := labelsOf(m)
					matches := true
					for k, v := range match {
						matches = matches && l[k] == v
					}
					if !matches {
						continue
					}
					sum += m.GetCounter().GetValue() + m.GetGauge().GetValue() + m.GetHistogram().GetSampleSum()
					count += m.GetHistogram().GetSampleCount()
				}
				return sum, count
			}
			if got, _ := value("inference_objective_request_total", models); got != ok+2 { // and the warm-up
				t.Errorf("inference_objective_request_total %v, want %d", got, ok+2)
			}
			if got, _ := value("inference_objective_request_error_total", map[string]string{"error_code": "ModelServerError"}); got != 1 {
				t.Errorf("model server errors %v, want 1", got)
			}
			for _, h := range []string{"inference_objective_request_duration_seconds", "inference_objective_request_sizes",
				"inference_objective_response_sizes", "inference_objective_input_tokens", "inference_objective_output_tokens",
				"inference_objective_normalized_time_per_output_token_seconds"} {
				if _, n := value(h, models); n != ok+1 {
					t.Errorf("%s has %d observations, want %d (every successful request)", h, n, ok+1)
				}
			}
			if sum, _ := value("inference_objective_output_tokens", models); sum < 4*ok {
				t.Errorf("output tokens sum %v, want at least %d", sum, 4*ok)
			}
			if got, _ := value("inference_objective_running_requests", map[string]string{"model_name": testModel}); got != 0 {
				t.Errorf("running requests %v after all answered, want 0", got)
			}
			if got, _ := value("inference_pool_ready_pods", map[string]string{"name": obsPool}); got != 2 {
				t.Errorf("ready pods %v, want 2", got)
			}
			pods := map[string]bool{}
			for _, m := range fams["inference_pool_per_pod_queue_size"].GetMetric() {
				if l := labelsOf(m); l["name"] == obsPool && l["model_server_pod"] != "" {
					pods[l["model_server_pod"]] = true
				}
			}
			if len(pods) != 2 {
				t.Errorf("per-pod queue series for %v, want the pool's 2 members", pods)
			}
			if _, n := value("inference_extension_flow_control_request_queue_duration_seconds", map[string]string{
				"fairness_id": "tenant-a", "outcome": "Dispatched", "inference_pool": obsPool, "priority": "0",
				"model_name": testModel, "target_model_name": testModel}); n != ok {
				t.Errorf("tenant-a's dispatched requests %d, want %d", n, ok)
			}
			if got, _ := value("inference_extension_info", nil); got != 1 {
				t.Errorf("inference_extension_info %v, want 1", got)
			}
			// igw's own metrics stay beside them.
			if fams["igw_requests_total"] == nil || fams["igw_pool_ready_endpoints"] == nil {
				t.Error("igw's own metrics are missing")
			}
		})
	}
}

// accessRecord is the part of an access log record the test reads.
type accessRecord struct {
	Msg         string  `json:"msg"`
	RequestID   string  `json:"request_id"`
	Model       string  `json:"model"`
	TargetModel string  `json:"target_model"`
	Tenant      string  `json:"tenant"`
	Endpoint    string  `json:"endpoint"`
	Status      int     `json:"status"`
	TTFT        float64 `json:"ttft_seconds"`
	Output      int     `json:"output_tokens"`
	Retries     *int    `json:"retries"`
}

// accessRecords are the access log records in a process's output.
func accessRecords(out string) map[string]accessRecord {
	recs := map[string]accessRecord{}
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		var r accessRecord
		if json.Unmarshal(sc.Bytes(), &r) == nil && r.Msg == "access" {
			recs[r.RequestID] = r
		}
	}
	return recs
}

// TestObservability_ExplainedDecisionsAndAccessLog runs igw serve and igw
// epp with --explain-decisions and --access-log: a request sent with
// x-igw-debug-decision: 1 is answered with its decision (the profile,
// every candidate's per-scorer scores, the pick, which is where it was
// served), and each request leaves one JSON access log record.
func TestObservability_ExplainedDecisionsAndAccessLog(t *testing.T) {
	fleet := startFleet(t, 2, nil)
	planes, procs := startPlanesWith(t, obsConfig(t, fleet.Addrs()), obsPool, "--explain-decisions", "--access-log")
	client := newClient()
	for i, pl := range planes {
		t.Run(strings.TrimPrefix(pl.name, "igw "), func(t *testing.T) {
			warmUp(t, client, pl)
			ctx := withTimeout(t, 30*time.Second)
			id := "explained-" + strings.TrimPrefix(pl.name, "igw ")
			body := chat{Model: testModel, User: "explain this decision", MaxTokens: 3, IgnoreEOS: true}.body()
			r := post(ctx, client, pl.base+"/v1/chat/completions", body, map[string]string{
				"X-Igw-Debug-Decision": "1", "X-Request-Id": id, hdrFairness: "tenant-b"})
			if r.Err != nil || r.Status != http.StatusOK {
				t.Fatalf("request: %s", r)
			}
			var e struct {
				Primary  string `json:"primaryProfile"`
				Profiles []struct {
					Profile string   `json:"profile"`
					Picked  []string `json:"picked"`
					Scorers []struct {
						Scorer string  `json:"scorer"`
						Weight float64 `json:"weight"`
					} `json:"scorers"`
					Candidates []struct {
						Endpoint string    `json:"endpoint"`
						Scores   []float64 `json:"scores"`
						Total    float64   `json:"total"`
					} `json:"candidates"`
				} `json:"profiles"`
			}
			raw := r.Header.Get("X-Igw-Decision")
			if err := json.Unmarshal([]byte(raw), &e); err != nil {
				t.Fatalf("x-igw-decision %q: %v", raw, err)
			}
			if e.Primary == "" || len(e.Profiles) == 0 {
				t.Fatalf("explanation %s", raw)
			}
			p := e.Profiles[0]
			if len(p.Scorers) == 0 || len(p.Candidates) != 2 || len(p.Picked) == 0 {
				t.Fatalf("explanation %s: want the scorers, both replicas and the picks", raw)
			}
			for _, c := range p.Candidates {
				if len(c.Scores) != len(p.Scorers) || !slices.Contains(fleet.Addrs(), c.Endpoint) {
					t.Errorf("candidate %+v: want a replica with one score per scorer", c)
				}
			}
			served := r.Served()
			if served == "" && pl.name == "igw serve" {
				t.Fatal("no served endpoint header")
			}
			if served != "" && p.Picked[0] != served {
				t.Errorf("explanation picked %s, served by %s", p.Picked[0], served)
			}

			var rec accessRecord
			eventually(t, 10*time.Second, func() error {
				var ok bool
				if rec, ok = accessRecords(procs[i].stderr.String())[id]; !ok {
					return fmt.Errorf("no access log record for %s", id)
				}
				return nil
			})
			if rec.Model != testModel || rec.TargetModel != testModel || rec.Tenant != "tenant-b" || rec.Status != http.StatusOK ||
				rec.Endpoint != p.Picked[0] || rec.TTFT <= 0 || rec.Output != 3 || rec.Retries == nil || *rec.Retries != 0 {
				t.Errorf("access log record %+v", rec)
			}
		})
	}
}
