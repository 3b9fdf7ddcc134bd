package e2e

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// eppServingLine is igw epp's (and igw bbr's) "listening" log line, with
// the ext_proc, health and metrics addresses.
var eppServingLine = regexp.MustCompile(`msg="serving ext_proc" grpc=(\S+) health=(\S+) metrics=(\S*)`)

// freePort is a loopback port nothing listens on right now.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// remotePicker is `igw epp` serving pool "pool" of a config file, on
// fixed ports so it can be killed and restarted where igw serve expects it.
type remotePicker struct {
	config                    string
	grpc, health, metricsPort int
}

func (rp *remotePicker) start(t *testing.T) *proc {
	t.Helper()
	p := startProc(t, "igw epp", "epp", "--config-file", rp.config, "--pool-name", "pool", "--address", "127.0.0.1",
		"--grpc-port", strconv.Itoa(rp.grpc), "--grpc-health-port", strconv.Itoa(rp.health), "--metrics-port", strconv.Itoa(rp.metricsPort))
	p.waitOutput(t, eppServingLine, 1, 15*time.Second)
	return p
}

// startRemotePickerSetup runs igw sim (3 replicas), igw epp over them (TLS
// with its self-signed certificate, the default) and igw serve whose pool
// names the picker in spec.endpointPickerRef with failureMode.
func startRemotePickerSetup(t *testing.T, failureMode string) (rp *remotePicker, picker *proc, api string) {
	t.Helper()
	_, addrs := startSimProc(t, "igw sim", 3, "--model", testModel, "--time-scale", "20")
	rp = &remotePicker{grpc: freePort(t), health: freePort(t), metricsPort: freePort(t)}
	raw := string(renderConfig(t, gatewaySpec{Pools: []poolSpec{{Name: "pool", Model: testModel, Addrs: addrs}}}))
	ref := fmt.Sprintf("kind: InferencePool\nmetadata:\n  name: pool\n  annotations: {igw.dev/endpoint-picker-timeout: 1s}\nspec:\n"+
		"  endpointPickerRef: {name: 127.0.0.1, port: {number: %d}, failureMode: %s}\n", rp.grpc, failureMode)
	withRef := strings.Replace(raw, "kind: InferencePool\nmetadata:\n  name: pool\nspec:\n", ref, 1)
	if withRef == raw {
		t.Fatal("could not add endpointPickerRef to the rendered pool")
	}
	rp.config = filepath.Join(t.TempDir(), "igw.yaml")
	if err := os.WriteFile(rp.config, []byte(withRef), 0o644); err != nil {
		t.Fatal(err)
	}
	picker = rp.start(t)
	_, api, _ = startServeProc(t, rp.config)
	waitServedViaPicker(t, api)
	return rp, picker, api
}

// waitServedViaPicker waits until a request through igw serve succeeds (the
// picker has scraped the fleet and igw serve's connection to it is up).
func waitServedViaPicker(t *testing.T, api string) {
	t.Helper()
	c := newClient()
	ctx := withTimeout(t, 30*time.Second)
	eventually(t, 20*time.Second, func() error {
		r := post(ctx, c, chatURL(api), chat{Model: testModel, User: "warm up", MaxTokens: 2}.body(), nil)
		if r.Status != http.StatusOK {
			return fmt.Errorf("%s", r)
		}
		return nil
	})
}

// loadWithKill sends n requests, workers at a time, and SIGKILLs the
// picker once killAfter of them are answered. It returns the results in
// request order.
func loadWithKill(t *testing.T, api string, picker *proc, n, workers, killAfter int) []result {
	t.Helper()
	c := newClient()
	ctx := withTimeout(t, 90*time.Second)
	results := make([]result, n)
	next := make(chan int)
	var done atomic.Int64
	var once sync.Once
	var wg sync.WaitGroup
	// The picker's own transient "503 rejected-no-endpoints" on a loaded
	// machine (see postTolerant) is not what these tests are about.
	var stale staleRejections
	defer stale.report(t)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				results[i] = postTolerant(ctx, c, chatURL(api), chat{Model: testModel, System: text(uint64(i%4), 300), User: fmt.Sprintf("Question %d?", i), MaxTokens: 8}.body(), nil, &stale)
				if done.Add(1) >= int64(killAfter) {
					once.Do(picker.kill)
				}
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	once.Do(picker.kill)
	return results
}

// TestRemotePicker_FailOpenKillPickerUnderLoad: igw serve → igw epp →
// igw sim; the picker is SIGKILLed a quarter into 200 requests (8
// concurrent) and no client sees a failure: decisions fall back to
// round-robin over the pool, responses already streaming keep streaming.
func TestRemotePicker_FailOpenKillPickerUnderLoad(t *testing.T) {
	t.Parallel()
	_, picker, api := startRemotePickerSetup(t, "FailOpen")
	results := loadWithKill(t, api, picker, 200, 8, 50)
	for i, r := range results {
		if r.Status != http.StatusOK {
			t.Errorf("request %d: %s (headers %v)", i, r, r.Header)
		}
	}
}

// TestRemotePicker_FailCloseKillPickerThenRestart: with FailClose, killing
// the picker under load gives only successes and clean 503s carrying the
// reason header and an OpenAI error; once it restarts on the same port,
// igw serve uses it again by itself.
func TestRemotePicker_FailCloseKillPickerThenRestart(t *testing.T) {
	t.Parallel()
	rp, picker, api := startRemotePickerSetup(t, "FailClose")
	results := loadWithKill(t, api, picker, 200, 8, 50)
	ok, rejected := 0, 0
	for i, r := range results {
		switch {
		case r.Status == http.StatusOK:
			ok++
		case r.Status == http.StatusServiceUnavailable && r.Header.Get(hdrDropped) == "endpoint-picker-unavailable":
			checkOpenAIError(t, fmt.Sprintf("request %d", i), r, http.StatusServiceUnavailable)
			rejected++
		default:
			t.Errorf("request %d: %s (headers %v)", i, r, r.Header)
		}
	}
	if ok < 50 || rejected == 0 {
		t.Errorf("%d served, %d rejected: want the first 50 served and rejections after the kill", ok, rejected)
	}
	t.Logf("%d served, %d rejected while the picker was down", ok, rejected)

	// Still down: every request is a clean 503.
	c := newClient()
	ctx := withTimeout(t, 30*time.Second)
	if r := post(ctx, c, chatURL(api), chat{Model: testModel, User: "down?", MaxTokens: 2}.body(), nil); r.Status != http.StatusServiceUnavailable || r.Header.Get(hdrDropped) != "endpoint-picker-unavailable" {
		t.Fatalf("picker down: %s", r)
	}
	rp.start(t)
	waitServedViaPicker(t, api)
	for i := range 20 {
		if r := post(ctx, c, chatURL(api), chat{Model: testModel, User: fmt.Sprintf("back %d", i), MaxTokens: 2}.body(), nil); r.Status != http.StatusOK {
			t.Fatalf("after the restart, request %d: %s", i, r)
		}
	}
}
