package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/igw-dev/igw/internal/kubetest"
	"github.com/igw-dev/igw/internal/testtool"
)

// The outside programs of the ops-file tests: Debian's prometheus package
// ships both; `make prometheus` installs it and links them into bin/.
func prometheusTool() testtool.Tool {
	return testtool.Tool{Name: "prometheus", Env: "IGW_PROMETHEUS", Install: "`apt-get install -y prometheus` or `make prometheus`"}
}

func promtoolTool() testtool.Tool {
	return testtool.Tool{Name: "promtool", Env: "IGW_PROMTOOL", Install: "`apt-get install -y prometheus` or `make prometheus`"}
}

// opsFile is the path of a shipped file under config/.
func opsFile(t *testing.T, rel string) string {
	t.Helper()
	root, err := kubetest.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(root, "config", rel)
}

// TestOpsFiles_AlertRules checks the shipped alerting rules with promtool:
// they parse, and their unit tests (config/prometheus/igw-alerts_test.yaml)
// fire the alerts they should with the annotations they should.
func TestOpsFiles_AlertRules(t *testing.T) {
	promtool := promtoolTool().Path(t)
	rules := opsFile(t, "prometheus/igw-alerts.yaml")
	for _, args := range [][]string{{"check", "rules", rules}, {"test", "rules", opsFile(t, "prometheus/igw-alerts_test.yaml")}} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = filepath.Dir(rules)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	// promtool must be able to fail: a rule with a broken expression.
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("groups:\n- name: x\n  rules:\n  - alert: X\n    expr: rate(igw_requests_total[5m]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(promtool, "check", "rules", bad).CombinedOutput(); err == nil {
		t.Errorf("promtool accepted a broken rule:\n%s", out)
	}
}

// grafanaDashboard is the part of a Grafana dashboard JSON the test reads.
type grafanaDashboard struct {
	Panels     []grafanaPanel `json:"panels"`
	Templating struct {
		List []struct {
			Name  string `json:"name"`
			Type  string `json:"type"`
			Query any    `json:"query"`
		} `json:"list"`
	} `json:"templating"`
}

type grafanaPanel struct {
	Title   string         `json:"title"`
	Panels  []grafanaPanel `json:"panels"` // a collapsed row's
	Targets []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
}

// dashboardQuery is one PromQL expression of the dashboard, with where it
// came from.
type dashboardQuery struct{ where, expr string }

// dashboardQueries returns every expression of the dashboard at path, with
// Grafana's variables replaced as Grafana would with "All" selected, and
// each query variable's label_values(metric, label) as the PromQL that
// returns the same label values.
func dashboardQueries(t *testing.T, path string) []dashboardQuery {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var d grafanaDashboard
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	vars := map[string]string{"__rate_interval": "15s", "__interval": "1s"}
	var out []dashboardQuery
	labelValues := regexp.MustCompile(`^label_values\(\s*([^,]+?)\s*,\s*(\w+)\s*\)$`)
	for _, v := range d.Templating.List {
		switch v.Type {
		case "datasource":
		case "query":
			vars[v.Name] = ".+"
			q, _ := v.Query.(string)
			m := labelValues.FindStringSubmatch(q)
			if m == nil {
				t.Fatalf("variable %s: query %q is not label_values(metric, label)", v.Name, q)
			}
			out = append(out, dashboardQuery{"variable " + v.Name, fmt.Sprintf("count by (%s) (%s)", m[2], m[1])})
		default:
			t.Fatalf("variable %s of type %s: the test does not know how Grafana expands it", v.Name, v.Type)
		}
	}
	varRef := regexp.MustCompile(`\$\{?(\w+)\}?`)
	var walk func([]grafanaPanel)
	walk = func(ps []grafanaPanel) {
		for _, p := range ps {
			walk(p.Panels)
			for i, target := range p.Targets {
				expr := varRef.ReplaceAllStringFunc(target.Expr, func(ref string) string {
					name := varRef.FindStringSubmatch(ref)[1]
					v, ok := vars[name]
					if !ok {
						t.Errorf("panel %q: unknown variable %s", p.Title, ref)
					}
					return v
				})
				out = append(out, dashboardQuery{fmt.Sprintf("panel %q target %d", p.Title, i), expr})
			}
		}
	}
	walk(d.Panels)
	return out
}

// promVector is the answer of Prometheus's /api/v1/query to an instant
// vector query.
type promVector struct {
	Status string `json:"status"`
	Error  string `json:"error"`
	Data   struct {
		ResultType string `json:"resultType"`
		Result     []struct {
			Metric map[string]string `json:"metric"`
			Value  [2]any            `json:"value"`
		} `json:"result"`
	} `json:"data"`
}

// promQuery evaluates expr now on the Prometheus at base; it returns the
// number of series and how many of them have a finite value.
func promQuery(ctx context.Context, c *http.Client, base, expr string) (series, finite int, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/api/v1/query?query="+url.QueryEscape(expr), nil)
	if err != nil {
		return 0, 0, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	var v promVector
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		return 0, 0, fmt.Errorf("decoding the answer (HTTP %d): %w", resp.StatusCode, err)
	}
	if v.Status != "success" {
		return 0, 0, fmt.Errorf("query failed: %s", v.Error)
	}
	for _, s := range v.Data.Result {
		text, _ := s.Value[1].(string)
		if f, err := strconv.ParseFloat(text, 64); err == nil && !math.IsNaN(f) && !math.IsInf(f, 0) {
			finite++
		}
	}
	return len(v.Data.Result), finite, nil
}

// startPrometheus runs a real Prometheus on a loopback port, scraping the
// gateway's admin address as job igw and the model servers as job
// model-servers every second, with the shipped alerting rules loaded.
func startPrometheus(t *testing.T, admin string, modelServers []string) string {
	t.Helper()
	bin := prometheusTool().Path(t)
	dir := t.TempDir()
	quoted := func(addrs []string) string {
		q := make([]string, len(addrs))
		for i, a := range addrs {
			q[i] = strconv.Quote(a)
		}
		return strings.Join(q, ", ")
	}
	cfg := fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files: [%q]
scrape_configs:
- job_name: igw
  static_configs: [{targets: [%q]}]
- job_name: model-servers
  static_configs: [{targets: [%s]}]
`, opsFile(t, "prometheus/igw-alerts.yaml"), admin, quoted(modelServers))
	cfgPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", testtool.FreePort(t))
	p := testtool.Start(t, dir, bin, "--config.file="+cfgPath, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--storage.tsdb.retention.time=1h", "--log.level=warn")
	base := "http://" + addr
	client := newClient()
	p.WaitUntil(t, 60*time.Second, func() error {
		resp, err := client.Get(base + "/-/ready")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("/-/ready: %s", resp.Status)
		}
		return nil
	})
	return base
}

// TestOpsFiles_DashboardOnRealPrometheus runs igw serve in front of igw sim
// processes, a real Prometheus scraping them every second with the shipped
// alerting rules, and bounded traffic; then it evaluates every expression of
// the shipped Grafana dashboard (and every variable's query) on that
// Prometheus and requires each to return at least one series with a finite
// value, and every alerting rule to evaluate without error.
func TestOpsFiles_DashboardOnRealPrometheus(t *testing.T) {
	queries := dashboardQueries(t, opsFile(t, "grafana/igw-dashboard.json"))
	if len(queries) < 20 {
		t.Fatalf("only %d expressions in the dashboard", len(queries))
	}
	_, addrs := startSimProc(t, "igw sim", 2, "--model", testModel, "--time-scale", "20")
	_, api, admin := startServeProc(t, obsConfig(t, addrs))
	prom := startPrometheus(t, admin, addrs)
	client := newClient()
	warmUp(t, client, plane{name: "igw serve", base: "http://" + api})

	// Traffic for as long as the queries run, bounded in number and time:
	// rates over the last 15s need requests in the last 15s. Every tenth
	// request is too long for the model server (a ModelServerError); the
	// others share a prefix, so the model servers' prefix caches hit.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		prefix := text(7, 300)
		for i := 0; i < 1200 && ctx.Err() == nil; i++ {
			body := chat{Model: testModel, User: prefix + text(uint64(i), 20), MaxTokens: 8, IgnoreEOS: true, Stream: i%2 == 0, Usage: true}.body()
			if i%10 == 9 {
				body = chat{Model: testModel, User: "hi", MaxTokens: 100_000_000}.body()
			}
			_ = post(ctx, client, "http://"+api+"/v1/chat/completions", body, map[string]string{hdrFairness: "tenant-a"})
			select {
			case <-ctx.Done():
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()

	// The first expressions wait for the first scrapes; once they have
	// data the others have it at once, or never.
	deadline := time.Now().Add(30 * time.Second)
	withData := 0
	for _, q := range queries {
		var series, finite int
		var err error
		for {
			qctx, qcancel := context.WithTimeout(ctx, 5*time.Second)
			series, finite, err = promQuery(qctx, client, prom, q.expr)
			qcancel()
			if err == nil && finite > 0 {
				withData++
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("%s: %s returned %d series, %d of them finite (err %v)", q.where, q.expr, series, finite, err)
				break
			}
			time.Sleep(500 * time.Millisecond)
		}
	}
	t.Logf("%d of %d dashboard expressions returned data", withData, len(queries))

	// Every alerting rule evaluated on live data without error.
	var rules struct {
		Data struct {
			Groups []struct {
				Rules []struct {
					Name, Health, LastError string
				} `json:"rules"`
			} `json:"groups"`
		} `json:"data"`
	}
	resp, err := client.Get(prom + "/api/v1/rules")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&rules); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, g := range rules.Data.Groups {
		for _, r := range g.Rules {
			n++
			if r.Health != "ok" {
				t.Errorf("rule %s: health %q (%s)", r.Name, r.Health, r.LastError)
			}
		}
	}
	if n == 0 {
		t.Error("Prometheus loaded no alerting rule")
	}
}
