// Regression tests for three bugs the end-to-end suite found: a hot shared
// prefix piling every request onto one replica, LoRA requests reaching
// replicas without the adapter, and late metrics making healthy replicas
// refuse requests.

package e2e

import (
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"testing"
	"time"

	"github.com/igw-dev/igw/pkg/sim"
)

// TestGateway_QueueingLoadSpreadsDespiteSharedPrefix: with the default
// profile (queue 2, KV 2, prefix 3), when 64 concurrent long requests share
// a prefix and each replica runs only 4 sequences at a time, queue depth
// outweighs prefix affinity and every replica takes a share.
// The prefix-cache scorer's maxQueueImbalance makes this hold: the queue
// scorer alone is min-max normalized and cannot outweigh prefix affinity.
func TestGateway_QueueingLoadSpreadsDespiteSharedPrefix(t *testing.T) {
	t.Parallel()
	addrs, api := startPoolProcs(t, 4, []string{"--max-num-seqs", "4"})
	got, warm := sharedPrefixBurst(t, api)
	t.Logf("64 concurrent shared-prefix requests (prefix first cached on %s): %v", warm, got)
	for _, a := range addrs {
		if got[a] < 64/16 {
			t.Errorf("replica %s served %d of 64 requests, want >= 4: %v", a, got[a], got)
		}
	}
}

// TestGateway_LoRARequestsGoToReplicasServingTheAdapter: with an adapter
// loaded on two of four replicas and the lora-affinity-scorer in the
// profile, every request for the adapter is served by one of those two (the
// others answer 404) and none fails.
// The scraper learns loaded adapters from /v1/models (idle ones included),
// and the Director only offers the servers that serve the model.
func TestGateway_LoRARequestsGoToReplicasServingTheAdapter(t *testing.T) {
	t.Parallel()
	const adapter = "e2e-sql-lora"
	fleet := startFleet(t, 4, func(c *sim.Config) { c.LoRAModules = []string{"e2e-other-lora"} })
	c := newClient()
	ctx := withTimeout(t, 60*time.Second)
	with := fleet.Addrs()[:2]
	for _, a := range with {
		r := post(ctx, c, "http://"+a+"/v1/load_lora_adapter", []byte(`{"lora_name":"`+adapter+`","lora_path":"/adapters/sql"}`), nil)
		if r.Status != http.StatusOK {
			t.Fatalf("loading %s on %s: %s", adapter, a, r)
		}
	}
	gw := startGateway(t, renderConfig(t, gatewaySpec{
		Pools: []poolSpec{{Name: "pool", Model: testModel, Addrs: fleet.Addrs()}},
		Extra: []string{pickerConfigDoc(2, 2, 3, 1), routeDoc("adapter", adapter, "pool")},
	}))

	const n = 24
	results := runConcurrently(ctx, c, n, 4, nil, func(int) string { return chatURL(gw.Addr()) }, func(i int) ([]byte, map[string]string) {
		return chat{Model: adapter, User: fmt.Sprintf("Write SQL for question %d.", i), MaxTokens: 8}.body(), nil
	})
	got := counts{}
	for i, r := range results {
		if r.Status != http.StatusOK {
			t.Errorf("adapter request %d: %s (served by %q)", i, r, r.Served())
			continue
		}
		got[r.Served()]++
	}
	t.Logf("adapter requests: %v (adapter on %v)", got, with)
	for a := range got {
		if a != with[0] && a != with[1] {
			t.Errorf("adapter request served by %s, which does not have the adapter (it is on %v)", a, with)
		}
	}
}

// routeDoc is a Route sending model to pool.
func routeDoc(name, model, pool string) string {
	return fmt.Sprintf(`apiVersion: igw.dev/v1alpha1
kind: Route
metadata:
  name: %s
spec:
  matches:
  - model: {value: "%s"}
  backends:
  - pool: %s`, name, model, pool)
}

// TestGateway_SlowMetricsEndpointKeepsServing: model servers whose
// /metrics takes 300 ms to answer (a busy vLLM API server can be that slow)
// are healthy and must keep receiving requests.
// When no endpoint has fresh metrics the Director routes on recent ones
// (stale counts as saturated for admission) instead of refusing with 503.
func TestGateway_SlowMetricsEndpointKeepsServing(t *testing.T) {
	t.Parallel()
	fleet := startFleet(t, 4, nil)
	var addrs []string
	for _, a := range fleet.Addrs() {
		addrs = append(addrs, slowMetricsProxy(t, a, 300*time.Millisecond))
	}
	gw := startGateway(t, onePool(t, addrs))
	c := newClient()
	ctx := withTimeout(t, 30*time.Second)
	failed := 0
	for i := range 40 {
		r := post(ctx, c, chatURL(gw.Addr()), chat{Model: testModel, User: fmt.Sprintf("Ping %d.", i), MaxTokens: 1}.body(), nil)
		if r.Status != http.StatusOK {
			failed++
			t.Logf("request %d: %s (%s=%q)", i, r, hdrDropped, r.Header.Get(hdrDropped))
		}
		time.Sleep(25 * time.Millisecond)
	}
	if failed > 0 {
		t.Errorf("%d of 40 requests to healthy servers with a slow /metrics failed", failed)
	}
}

// slowMetricsProxy is a reverse proxy on 127.0.0.1 in front of target that
// delays every /metrics answer by delay. It returns its address.
func slowMetricsProxy(t *testing.T, target string, delay time.Duration) string {
	t.Helper()
	rp := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: target})
	rp.Transport = &http.Transport{Proxy: nil}
	rp.ErrorLog = log.New(io.Discard, "", 0) // clients that stop waiting are expected
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/metrics" {
			time.Sleep(delay)
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}
