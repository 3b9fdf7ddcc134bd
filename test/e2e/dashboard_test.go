package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/igw-dev/igw/internal/testtool"
	"github.com/igw-dev/igw/pkg/telemetry"
)

// chromiumTool is Debian's chromium, run headless.
func chromiumTool() testtool.Tool {
	return testtool.Tool{Name: "chromium", Env: "IGW_CHROMIUM", Install: "`apt-get install -y chromium` or `make chromium`"}
}

// EnvTestArtifacts is where tests leave files worth looking at (the
// dashboard's screenshot); default a directory under os.TempDir.
const EnvTestArtifacts = "IGW_TEST_ARTIFACTS"

func artifactDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv(EnvTestArtifacts)
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "igw-test-artifacts")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// headlessChromium runs chromium headless on url with extra (--dump-dom
// or --screenshot=...), the page given budget of virtual time, and
// returns what it printed on stdout. Background networking is off: the
// machine may have no network but loopback.
func headlessChromium(t *testing.T, url string, budget time.Duration, extra ...string) []byte {
	t.Helper()
	bin := chromiumTool().Path(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	args := append([]string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-extensions",
		"--user-data-dir=" + t.TempDir(), "--window-size=1400,1000",
		"--virtual-time-budget=" + strconv.Itoa(int(budget.Milliseconds()))}, extra...)
	cmd := exec.CommandContext(ctx, bin, append(args, url)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium %s: %v\n%s", strings.Join(extra, " "), err, tail(stderr.String(), 30))
	}
	return stdout.Bytes()
}

// chartAttrs matches one chart of the dashboard's DOM and its data-*
// attributes.
var (
	chartTag  = regexp.MustCompile(`<figure class="chart[^"]*"([^>]*)>`)
	chartAttr = regexp.MustCompile(`data-([a-z]+)="([^"]*)"`)
)

// domCharts returns every chart of a dumped DOM as its data-* attributes.
func domCharts(dom string) []map[string]string {
	var out []map[string]string
	for _, m := range chartTag.FindAllStringSubmatch(dom, -1) {
		attrs := map[string]string{}
		for _, a := range chartAttr.FindAllStringSubmatch(m[1], -1) {
			attrs[a[1]] = strings.ReplaceAll(a[2], "&amp;", "&")
		}
		out = append(out, attrs)
	}
	return out
}

// TestDashboard_LiveInChromium runs igw serve in front of two igw sim
// processes with bounded streaming traffic sharing a prompt prefix, checks
// the dashboard's JSON, then loads /dashboard in headless Chromium (its
// own JavaScript polling the JSON every second, virtual time) and asserts
// from the DOM it produced that every replica's charts of share of
// traffic, prefix-hit rate and running requests have non-zero series over
// several polls, that the latency and decision sections filled in; and
// takes a screenshot, kept as a test artifact.
func TestDashboard_LiveInChromium(t *testing.T) {
	chromiumTool().Path(t) // skip or fail before starting anything
	_, addrs := startSimProc(t, "igw sim", 2, "--model", testModel, "--time-scale", "2")
	cfg := obsConfig(t, addrs)
	_, api, admin := startServeProc(t, cfg)
	client := newClient()
	warmUp(t, client, plane{name: "igw serve", base: "http://" + api})

	// Traffic while the page is looked at: 4 workers, streams each
	// sharing one of 8 long prefixes (prefix-cache hits on every replica
	// the prefixes' affinity spreads them over), bounded in number and
	// time.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	var prefixes []string
	for i := range 8 {
		prefixes = append(prefixes, text(uint64(100+i), 600))
	}
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 300 && ctx.Err() == nil; i++ {
				body := chat{Model: testModel, User: prefixes[(w+4*i)%len(prefixes)] + text(uint64(w*1000+i), 10), MaxTokens: 24, IgnoreEOS: true, Stream: true, Usage: true}.body()
				_ = post(ctx, client, "http://"+api+"/v1/chat/completions", body, nil)
			}
		}()
	}

	// The JSON, as a script reads it.
	var snap telemetry.DashboardSnapshot
	eventually(t, 30*time.Second, func() error {
		resp, err := client.Get("http://" + admin + telemetry.DashboardJSONPath)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		snap = telemetry.DashboardSnapshot{}
		if err := json.NewDecoder(resp.Body).Decode(&snap); err != nil {
			return err
		}
		if len(snap.Pools) != 1 || len(snap.Pools[0].Replicas) != 2 {
			return fmt.Errorf("pools %+v", snap.Pools)
		}
		for _, r := range snap.Pools[0].Replicas {
			if r.Requests == 0 || r.PrefixHitRate == 0 {
				return fmt.Errorf("replica %s: %d requests, prefix hit rate %v", r.Address, r.Requests, r.PrefixHitRate)
			}
		}
		if len(snap.Decisions) == 0 || len(snap.Decisions[0].Candidates) != 2 || len(snap.Decisions[0].Candidates[0].Scores) == 0 {
			return fmt.Errorf("decisions %+v", snap.Decisions)
		}
		if len(snap.Objectives) == 0 || snap.Objectives[0].TTFT["p90"] <= 0 {
			return fmt.Errorf("objectives %+v", snap.Objectives)
		}
		return nil
	})
	if len(snap.Admission) == 0 {
		t.Errorf("no admission queue in %+v", snap)
	}
	// Only GET: the dashboard changes nothing.
	resp, err := client.Post("http://"+admin+telemetry.DashboardJSONPath, "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST %s: %d, want 405", telemetry.DashboardJSONPath, resp.StatusCode)
	}

	page := "http://" + admin + telemetry.DashboardPath
	dom := string(headlessChromium(t, page, 8*time.Second, "--dump-dom"))
	if m := regexp.MustCompile(`id="status"[^>]*data-polls="(\d+)"`).FindStringSubmatch(dom); m == nil {
		t.Fatalf("no poll count in the DOM:\n%s", tail(dom, 20))
	} else if n, _ := strconv.Atoi(m[1]); n < 3 {
		t.Errorf("the page polled %d times in 8s of virtual time, want at least 3", n)
	}
	charts := domCharts(dom)
	for _, addr := range addrs {
		for _, metric := range []string{"share", "prefixHitRate", "running", "queue", "kvCache", "inFlight"} {
			var found map[string]string
			for _, c := range charts {
				if c["chart"] == "replica" && c["replica"] == addr && c["metric"] == metric {
					found = c
				}
			}
			if found == nil {
				t.Errorf("no %s chart for replica %s", metric, addr)
				continue
			}
			points, _ := strconv.Atoi(found["points"])
			maxV, _ := strconv.ParseFloat(found["max"], 64)
			if points < 3 {
				t.Errorf("replica %s %s: %d points", addr, metric, points)
			}
			// Every replica served and hit its prefix cache; running
			// requests show while traffic runs. Queue, KV use and in
			// flight may be 0 at every poll on a fast replica.
			if (metric == "share" || metric == "prefixHitRate" || metric == "running") && maxV <= 0 {
				t.Errorf("replica %s: the %s chart is all zero (%v)", addr, metric, found)
			}
		}
	}
	for _, kind := range []string{"ttft", "latency", "admission"} {
		ok := false
		for _, c := range charts {
			ok = ok || c["chart"] == kind
		}
		if !ok {
			t.Errorf("no %s chart in the DOM", kind)
		}
	}
	if !strings.Contains(dom, `class="decision"`) {
		t.Error("no decision in the DOM")
	}

	shot := filepath.Join(artifactDir(t), "dashboard.png")
	headlessChromium(t, page, 8*time.Second, "--screenshot="+shot)
	png, err := os.ReadFile(shot)
	if err != nil || len(png) < 10_000 || !bytes.HasPrefix(png, []byte("\x89PNG")) {
		t.Fatalf("screenshot %s: %d bytes, err %v", shot, len(png), err)
	}
	t.Logf("screenshot: %s (%d bytes)", shot, len(png))

	// igw epp serves the same dashboard on its metrics port.
	epp, _ := startEppPlane(t, cfg, obsPool)
	warmUp(t, client, epp)
	eppDash := strings.TrimSuffix(epp.metrics, "/metrics")
	var eppSnap telemetry.DashboardSnapshot
	resp, err = client.Get(eppDash + telemetry.DashboardJSONPath)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&eppSnap); err != nil {
		t.Fatal(err)
	}
	served := int64(0)
	for _, p := range eppSnap.Pools {
		for _, r := range p.Replicas {
			served += r.Requests
		}
	}
	if served == 0 {
		t.Errorf("igw epp's dashboard counts no request served: %+v", eppSnap.Pools)
	}
	if page, err := client.Get(eppDash + telemetry.DashboardPath); err != nil || page.StatusCode != http.StatusOK {
		t.Errorf("igw epp %s: %v %v", telemetry.DashboardPath, err, page)
	} else {
		page.Body.Close()
	}
}
