package e2e

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/igw-dev/igw/internal/kubetest"
)

// badConfigBase is a valid configuration of four documents; the cases of
// TestServe_BadConfigExitsNamingFileDocumentAndField break one of them.
const badConfigBase = `apiVersion: igw.dev/v1alpha1
kind: Gateway
metadata:
  name: igw
spec:
  address: "127.0.0.1:0"
  adminAddress: "127.0.0.1:0"
---
apiVersion: igw.dev/v1alpha1
kind: ModelServer
metadata:
  name: s0
  labels: {app: p}
spec:
  address: 127.0.0.1
---
apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata:
  name: p
spec:
  selector:
    matchLabels: {app: p}
  targetPorts:
  - number: 8001
---
apiVersion: igw.dev/v1alpha1
kind: Route
metadata:
  name: r
spec:
  backends:
  - pool: p
`

// TestServe_BadConfigExitsNamingFileDocumentAndField: `igw serve` with an
// invalid file exits non-zero at once, and its error names the file, the
// document and the field.
func TestServe_BadConfigExitsNamingFileDocumentAndField(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		edit func(string) string
		want []string // substrings of stderr besides the file's path
	}{
		{
			name: "unknown field",
			edit: func(s string) string {
				return strings.Replace(s, `  adminAddress: "127.0.0.1:0"`, "  adminAddress: \"127.0.0.1:0\"\n  adress: \"127.0.0.1:1\"", 1)
			},
			want: []string{`document 1 (Gateway "igw")`, "spec.adress", "unknown field"},
		},
		{
			name: "targetPorts number out of range",
			edit: func(s string) string { return strings.Replace(s, "number: 8001", "number: 70000", 1) },
			want: []string{`document 3 (InferencePool "p")`, "spec.targetPorts[0].number"},
		},
		{
			name: "targetPorts number not a number",
			edit: func(s string) string { return strings.Replace(s, "number: 8001", `number: "eighty"`, 1) },
			want: []string{`document 3 (InferencePool "p")`, "spec.targetPorts[0].number"},
		},
		{
			name: "route to a missing pool",
			edit: func(s string) string { return strings.Replace(s, "  - pool: p", "  - pool: nope", 1) },
			want: []string{`document 4 (Route "r")`, "spec.backends[0].pool", `"nope"`},
		},
		{
			name: "unknown scheduling plugin",
			edit: func(s string) string {
				return s + "---\n" + strings.ReplaceAll(pickerConfigDoc(2, 2, 3, 0), "queue-scorer", "no-such-scorer")
			},
			want: []string{"document 5 (EndpointPickerConfig)", "plugins[0]", "no-such-scorer"},
		},
	}
	dir := t.TempDir()
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(dir, fmt.Sprintf("bad-%d.yaml", i))
			if err := os.WriteFile(path, []byte(tc.edit(badConfigBase)), 0o644); err != nil {
				t.Fatal(err)
			}
			p := startProc(t, "igw serve", "serve", "--config", path)
			err := p.waitExit(t, 10*time.Second)
			if err == nil {
				t.Fatalf("igw serve exited 0 with an invalid configuration")
			}
			stderr := p.stderr.String()
			for _, w := range append([]string{path}, tc.want...) {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr does not name %q:\n%s", w, stderr)
				}
			}
			if strings.Contains(stderr, "igw gateway serving") {
				t.Errorf("igw serve started serving with an invalid configuration")
			}
		})
	}
}

// TestServe_ReloadUnderLoadFailsNoRequest runs `igw serve` in front of two
// simulator processes and, while 300 requests flow 8 at a time, rewrites
// its file (new EndpointPickerConfig weights, a second pool and route) and
// sends SIGHUP, then writes a broken file and sends SIGHUP again. No
// request fails; the new route serves after the first reload and keeps
// serving after the broken edit.
func TestServe_ReloadUnderLoadFailsNoRequest(t *testing.T) {
	t.Parallel()
	const model2 = "e2e-model-2"
	_, addrs := startSimProc(t, "igw sim (pool)", 4, "--model", testModel, "--time-scale", "20")
	_, addrs2 := startSimProc(t, "igw sim (pool2)", 1, "--model", model2, "--time-scale", "20")
	v1 := renderConfig(t, gatewaySpec{
		Pools: []poolSpec{{Name: "pool", Model: testModel, Addrs: addrs}},
		Extra: []string{pickerConfigDoc(2, 2, 3, 0)},
	})
	v2 := renderConfig(t, gatewaySpec{
		Pools: []poolSpec{{Name: "pool", Model: testModel, Addrs: addrs}, {Name: "pool2", Model: model2, Addrs: addrs2}},
		Extra: []string{pickerConfigDoc(3, 1, 2, 0)},
	})
	broken := strings.Replace(string(v2), "kind: InferencePool", "kind: InferencePool\nspec_typo: true", 1)
	path := filepath.Join(t.TempDir(), "igw.yaml")
	writeFileAtomic(t, path, v1)
	serve, api, _ := startServeProc(t, path)
	c := newClient()
	ctx := withTimeout(t, 60*time.Second)
	var stale staleRejections
	model2Request := func() result {
		return postTolerant(ctx, c, chatURL(api), chat{Model: model2, User: "hi", MaxTokens: 4}.body(), nil, &stale)
	}
	if r := model2Request(); r.Status != http.StatusNotFound {
		t.Fatalf("%s before the reload: %s, want 404", model2, r)
	}

	// The load: 300 requests, 8 at a time. Requests from #100 on wait for
	// the reload to be applied and from #200 on for the broken edit to be
	// rejected, so both happen while requests are in flight.
	const n, workers = 300, 8
	var (
		done              atomic.Int64
		reloaded, refused = make(chan struct{}), make(chan struct{})
		results           = make([]result, n)
		wg                sync.WaitGroup
		next              = make(chan int)
	)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				switch {
				case i >= 200:
					<-refused
				case i >= 100:
					<-reloaded
				}
				shared := text(uint64(10+i%5), 2000) // five prefix groups
				results[i] = postTolerant(ctx, c, chatURL(api), chat{Model: testModel, System: shared, User: fmt.Sprintf("Question %d?", i), MaxTokens: 16}.body(), nil, &stale)
				done.Add(1)
			}
		}()
	}
	go func() {
		defer close(next)
		for i := range n {
			select {
			case next <- i:
			case <-ctx.Done():
				return
			}
		}
	}()
	waitDone := func(k int64) {
		t.Helper()
		eventually(t, 30*time.Second, func() error {
			if d := done.Load(); d < k {
				return fmt.Errorf("%d of %d requests done", d, k)
			}
			return nil
		})
	}
	// Whatever happens, release the workers before the test ends.
	t.Cleanup(func() { closeIfOpen(reloaded); closeIfOpen(refused); wg.Wait() })

	waitDone(60)
	writeFileAtomic(t, path, v2)
	serve.signal(t, syscall.SIGHUP)
	serve.waitOutput(t, regexp.MustCompile(`msg="configuration applied".*pools=2 routes=2`), 1, 10*time.Second)
	close(reloaded)
	// The new pool's server is scraped for the first time after the reload.
	eventually(t, 10*time.Second, func() error {
		if r := model2Request(); r.Status != http.StatusOK || r.Served() != addrs2[0] {
			return fmt.Errorf("%s after the reload: %s served by %q, want 200 from %s", model2, r, r.Served(), addrs2[0])
		}
		return nil
	})

	waitDone(160)
	writeFileAtomic(t, path, []byte(broken))
	serve.signal(t, syscall.SIGHUP)
	serve.waitOutput(t, regexp.MustCompile(`configuration reload failed; keeping the previous configuration`), 1, 10*time.Second)
	close(refused)
	if r := model2Request(); r.Status != http.StatusOK || r.Served() != addrs2[0] {
		t.Errorf("%s after the broken edit: %s served by %q, want 200 from %s", model2, r, r.Served(), addrs2[0])
	}

	wg.Wait()
	failed := 0
	served := counts{}
	for i, r := range results {
		if r.Status != http.StatusOK {
			failed++
			if failed <= 5 {
				t.Errorf("request %d: %s", i, r)
			}
			continue
		}
		served[r.Served()]++
		if !slices.Contains(addrs, r.Served()) {
			t.Errorf("request %d for %s served by %q, not by its pool %v", i, testModel, r.Served(), addrs)
		}
	}
	if failed > 0 {
		t.Errorf("%d of %d requests failed across the reloads", failed, n)
	}
	stale.report(t)
	t.Logf("%d requests across two reloads: %v", n, served)
}

// closeIfOpen closes ch unless it is already closed; it must not race with
// another close of ch.
func closeIfOpen(ch chan struct{}) {
	select {
	case <-ch:
	default:
		close(ch)
	}
}

// TestServe_StandaloneExampleRoutesModelsToTheirPools runs
// examples/standalone.yaml (its ports replaced by free ones) with the two
// simulator processes its header comment describes, and checks that each
// model is served by its own pool.
func TestServe_StandaloneExampleRoutesModelsToTheirPools(t *testing.T) {
	t.Parallel()
	root, err := kubetest.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	example, err := os.ReadFile(filepath.Join(root, "examples", "standalone.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	_, llama := startSimProc(t, "igw sim (llama)", 2, "--model", "llama-3.1-8b", "--lora-modules", "llama-3.1-8b-canary", "--time-scale", "20")
	_, qwen := startSimProc(t, "igw sim (qwen)", 2, "--model", "qwen2.5-7b", "--time-scale", "20")
	ports := map[string]string{}
	for i, a := range append(slices.Clone(llama), qwen...) {
		_, p, _ := net.SplitHostPort(a)
		ports[fmt.Sprint(8001+i)] = p
	}
	cfg := regexp.MustCompile(`\b800[1-4]\b`).ReplaceAllStringFunc(string(example), func(p string) string { return ports[p] })
	for _, l := range []string{`":8080"`, `":9090"`} {
		if !strings.Contains(cfg, l) {
			t.Fatalf("examples/standalone.yaml no longer listens on %s; update this test", l)
		}
	}
	cfg = strings.NewReplacer(`":8080"`, `"127.0.0.1:0"`, `":9090"`, `"127.0.0.1:0"`).Replace(cfg)
	path := filepath.Join(t.TempDir(), "standalone.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	_, api, _ := startServeProc(t, path)
	c := newClient()
	ctx := withTimeout(t, 30*time.Second)
	var stale staleRejections
	defer stale.report(t)

	// Both pools' replicas are scraped before traffic is judged: retry the
	// first request of each model until it succeeds.
	for _, model := range []string{"llama-3.1-8b", "qwen2.5-7b"} {
		eventually(t, 10*time.Second, func() error {
			if r := post(ctx, c, chatURL(api), chat{Model: model, User: "hi", MaxTokens: 2}.body(), nil); r.Status != http.StatusOK {
				return fmt.Errorf("%s: %s", model, r)
			}
			return nil
		})
	}
	for _, tc := range []struct {
		model string
		pool  []string
	}{{"llama-3.1-8b", llama}, {"qwen2.5-7b", qwen}} {
		got := counts{}
		for i := range 20 {
			r := postTolerant(ctx, c, chatURL(api), chat{Model: tc.model, System: text(uint64(500+i), 300), User: "hi", MaxTokens: 4}.body(), nil, &stale)
			if r.Status != http.StatusOK {
				t.Errorf("%s request %d: %s", tc.model, i, r)
				continue
			}
			got[r.Served()]++
			if !slices.Contains(tc.pool, r.Served()) {
				t.Errorf("%s request %d served by %q, not by its pool %v", tc.model, i, r.Served(), tc.pool)
			}
		}
		t.Logf("%s: %v", tc.model, got)
	}
}
