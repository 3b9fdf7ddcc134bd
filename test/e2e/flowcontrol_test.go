package e2e

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/igw-dev/igw/pkg/gateway"
	"github.com/igw-dev/igw/pkg/sim"
)

// Flow-control outcomes of igw serve against the simulator. One replica
// with --max-num-seqs 1 at time scale 1 and queueDepthThreshold 1 is
// saturated as soon as one request is in flight (the in-flight estimate
// counts it before any scrape), so every saturated state below is reached
// deterministically; each test waits on gauges, with deadlines, rather than
// on sleeps.

// flowPool is the pool name the flow-control tests use, and its metric label.
const (
	flowPool      = "flow"
	flowPoolLabel = "default/flow"
)

// flowPickerDoc is an EndpointPickerConfig with only the admission
// sections: the default scheduling profile, saturation at one waiting
// request, and the given TTL.
func flowPickerDoc(ttl string) string {
	return fmt.Sprintf(`apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
saturationDetector:
  queueDepthThreshold: 1
  kvCacheUtilThreshold: 0.9
  metricsStalenessThreshold: 2s
flowControl:
  maxRequestsPerBand: 50
  maxBytesPerBand: 1048576
  ttl: %s`, ttl)
}

// flowGateway starts one slow replica (one sequence at a time, about 5 ms
// per output token) and igw serve in front of it, with objectives
// "interactive" (priority 10), "batch" (1) and "sheddable" (-1).
func flowGateway(t *testing.T, ttl string) (api, metrics string) {
	t.Helper()
	f := startFleet(t, 1, func(c *sim.Config) { c.MaxNumSeqs, c.TimeScale = 1, 1 })
	raw := renderConfig(t, gatewaySpec{
		Pools: []poolSpec{{Name: flowPool, Model: testModel, Addrs: f.Addrs()}},
		Extra: []string{flowPickerDoc(ttl), objectiveDoc("interactive", flowPool, 10), objectiveDoc("batch", flowPool, 1), objectiveDoc("sheddable", flowPool, -1)},
	})
	gw := startGateway(t, raw)
	return chatURL(gw.Addr()), "http://" + gw.AdminAddr() + "/metrics"
}

// longChat holds the replica for about tokens × 5 ms.
func longChat(i, tokens int) []byte {
	return chat{Model: testModel, User: fmt.Sprintf("Write essay %d.", i), MaxTokens: tokens, IgnoreEOS: true}.body()
}

// occupy saturates the replica for about tokens × 5 ms: one request runs
// and a second one waits in the replica's own queue (threshold 1), which
// the gateway sees in the replica's metrics. Both results arrive on the
// returned channel.
func occupy(t *testing.T, ctx context.Context, c *http.Client, url, metrics string, tokens int) <-chan result {
	t.Helper()
	done := make(chan result, 2)
	lbl := map[string]string{"pool": flowPoolLabel}
	go func() { done <- post(ctx, c, url, longChat(-1, tokens), nil) }()
	// Once a scrape shows the first one running, the replica has room
	// again until a second one waits behind it.
	waitMetric(t, c, metrics, "igw_pool_average_kv_cache_utilization", lbl, func(v float64) bool { return v > 0 })
	waitMetric(t, c, metrics, "igw_pool_saturation", lbl, func(v float64) bool { return v == 0 })
	go func() { done <- post(ctx, c, url, longChat(-2, tokens), nil) }()
	waitMetric(t, c, metrics, "igw_pool_average_queue_size", lbl, func(v float64) bool { return v >= 1 })
	waitMetric(t, c, metrics, "igw_pool_saturation", lbl, func(v float64) bool { return v == 1 })
	return done
}

// waitMetric polls metrics until the sum of name's samples with labels
// satisfies ok.
func waitMetric(t *testing.T, c *http.Client, metrics, name string, labels map[string]string, ok func(float64) bool) float64 {
	t.Helper()
	var v float64
	eventually(t, 10*time.Second, func() error {
		v = metricSum(scrape(t, c, metrics), name, labels)
		if !ok(v) {
			return fmt.Errorf("%s%v = %g", name, labels, v)
		}
		return nil
	})
	return v
}

func TestFlowControlPassesStraightThroughWithHeadroom(t *testing.T) {
	f := startFleet(t, 2, nil)
	// Generous staleness: a late scrape on a loaded machine must not make
	// this idle pool look saturated.
	raw := renderConfig(t, gatewaySpec{Pools: []poolSpec{{Name: flowPool, Model: testModel, Addrs: f.Addrs()}},
		Extra: []string{"apiVersion: inference.networking.x-k8s.io/v1alpha1\nkind: EndpointPickerConfig\nsaturationDetector: {metricsStalenessThreshold: 5s}"}})
	gw := startGateway(t, raw)
	c, metrics := newClient(), "http://"+gw.AdminAddr()+"/metrics"
	for i := range 5 {
		if r := post(context.Background(), c, chatURL(gw.Addr()), chat{Model: testModel, User: fmt.Sprintf("hi %d", i), MaxTokens: 4}.body(), nil); r.Status != http.StatusOK {
			t.Fatalf("request %d: %s", i, r)
		}
	}
	page := scrape(t, c, metrics)
	lbl := map[string]string{"pool": flowPoolLabel}
	if n := metricSum(page, "igw_flow_control_outcomes_total", map[string]string{"pool": flowPoolLabel, "outcome": "dispatched"}); n != 5 {
		t.Errorf("dispatched outcomes = %g, want 5", n)
	}
	if n := metricSum(page, "igw_flow_control_wait_seconds_count", lbl); n != 0 {
		t.Errorf("%g requests waited in a queue on an idle pool, want 0", n)
	}
	if n := metricSum(page, "igw_pool_ready_endpoints", lbl); n != 2 {
		t.Errorf("igw_pool_ready_endpoints = %g, want 2", n)
	}
	if s := metricSum(page, "igw_pool_saturation", lbl); s != 0 {
		t.Errorf("igw_pool_saturation = %g on an idle pool, want 0", s)
	}
	for _, name := range []string{"igw_pool_average_queue_size", "igw_pool_average_kv_cache_utilization"} {
		if !containsMetric(page, name, flowPoolLabel) {
			t.Errorf("%s missing for pool %s", name, flowPoolLabel)
		}
	}
}

// containsMetric reports whether page has a sample of name for pool.
func containsMetric(page, name, pool string) bool {
	return strings.Contains(page, name+`{pool="`+pool+`"}`)
}

// startGatewayNoEndpoints is startGateway for a configuration whose pool
// never has a ready endpoint: it waits for readiness only.
func startGatewayNoEndpoints(t *testing.T, raw []byte) (api string) {
	t.Helper()
	cfg, err := schema.Parse("e2e.yaml", raw)
	if err != nil {
		t.Fatalf("configuration:\n%s\n%v", raw, err)
	}
	gw, err := gateway.New(cfg, gateway.Options{})
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
	})
	waitReady(t, gw.AdminAddr())
	return gw.Addr()
}

func TestFlowControlQueuesWhileSaturatedAndDispatchesWithHeadroom(t *testing.T) {
	url, metrics := flowGateway(t, "30s")
	c := newClient()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	busy := occupy(t, ctx, c, url, metrics, 200)
	const queued = 3
	var wg sync.WaitGroup
	results := make([]result, queued)
	for i := range queued {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = post(ctx, c, url, longChat(i+1, 20), map[string]string{hdrObjective: "batch"})
		}()
	}
	waitMetric(t, c, metrics, "igw_flow_control_queue_size", map[string]string{"pool": flowPoolLabel, "priority": "1"}, func(v float64) bool { return v >= 1 })
	for range 2 {
		if r := <-busy; r.Status != http.StatusOK {
			t.Fatalf("occupying request: %s", r)
		}
	}
	wg.Wait()
	for i, r := range results {
		if r.Status != http.StatusOK {
			t.Errorf("queued request %d: %s, want 200 once the replica had room", i, r)
		}
	}
	page := scrape(t, c, metrics)
	if n := metricSum(page, "igw_flow_control_wait_seconds_count", map[string]string{"pool": flowPoolLabel, "priority": "1"}); n < 1 {
		t.Errorf("queue wait histogram has %g samples, want ≥ 1", n)
	}
	if n := metricSum(page, "igw_flow_control_queue_size", map[string]string{"pool": flowPoolLabel}); n != 0 {
		t.Errorf("igw_flow_control_queue_size = %g after all completed, want 0", n)
	}
	if n := metricSum(page, "igw_flow_control_outcomes_total", map[string]string{"pool": flowPoolLabel, "outcome": "dispatched"}); n != queued+2 {
		t.Errorf("dispatched outcomes = %g, want %d", n, queued+2)
	}
}

func TestFlowControlShedsSheddableWhileSaturated(t *testing.T) {
	url, metrics := flowGateway(t, "30s")
	c := newClient()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	occupy(t, ctx, c, url, metrics, 2000)
	start := time.Now()
	r := post(context.Background(), c, url, longChat(1, 4), map[string]string{hdrObjective: "sheddable"})
	checkOpenAIError(t, "sheddable while saturated", r, http.StatusTooManyRequests)
	if got := r.Header.Get(hdrDropped); got != "rejected-saturated" {
		t.Errorf("reason header %q, want rejected-saturated", got)
	}
	if r.Header.Get("Retry-After") == "" {
		t.Error("no Retry-After on a shed request")
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("shedding took %v; it must not wait in a queue", took)
	}
	if n := metricSum(scrape(t, c, metrics), "igw_flow_control_outcomes_total", map[string]string{"pool": flowPoolLabel, "priority": "-1", "outcome": "rejected-saturated"}); n != 1 {
		t.Errorf("rejected-saturated outcomes = %g, want 1", n)
	}
}

func TestFlowControlTTLExpiry(t *testing.T) {
	url, metrics := flowGateway(t, "300ms")
	c := newClient()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	occupy(t, ctx, c, url, metrics, 2000)
	r := post(context.Background(), c, url, longChat(1, 4), nil)
	checkOpenAIError(t, "queued past its TTL", r, http.StatusTooManyRequests)
	if got := r.Header.Get(hdrDropped); got != "rejected-ttl-expired" {
		t.Errorf("reason header %q, want rejected-ttl-expired", got)
	}
	if n := metricSum(scrape(t, c, metrics), "igw_flow_control_outcomes_total", map[string]string{"pool": flowPoolLabel, "outcome": "rejected-ttl-expired"}); n != 1 {
		t.Errorf("rejected-ttl-expired outcomes = %g, want 1", n)
	}
}

func TestFlowControlClientLeavingQueueLeavesAtOnce(t *testing.T) {
	url, metrics := flowGateway(t, "30s")
	c := newClient()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	occupy(t, ctx, c, url, metrics, 2000)
	qctx, qcancel := context.WithCancel(context.Background())
	left := make(chan result, 1)
	go func() { left <- post(qctx, c, url, longChat(1, 4), map[string]string{hdrObjective: "batch"}) }()
	lbl := map[string]string{"pool": flowPoolLabel, "priority": "1"}
	waitMetric(t, c, metrics, "igw_flow_control_queue_size", lbl, func(v float64) bool { return v == 1 })
	qcancel()
	if r := <-left; r.Err == nil {
		t.Fatalf("canceled request answered %s", r)
	}
	// The replica is still busy (its request runs for seconds), so only the
	// disconnect can have emptied the queue.
	waitMetric(t, c, metrics, "igw_flow_control_queue_size", lbl, func(v float64) bool { return v == 0 })
	waitMetric(t, c, metrics, "igw_flow_control_outcomes_total", map[string]string{"pool": flowPoolLabel, "outcome": "canceled"}, func(v float64) bool { return v == 1 })
}

func TestFlowControlPoolWithoutEndpoints(t *testing.T) {
	// A port nothing listens on: the endpoint is never ready.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	gw := startGatewayNoEndpoints(t, renderConfig(t, gatewaySpec{Pools: []poolSpec{{Name: flowPool, Model: testModel, Addrs: []string{dead}}}}))
	c := newClient()
	r := post(context.Background(), c, chatURL(gw), chat{Model: testModel, User: "hi", MaxTokens: 4}.body(), nil)
	checkOpenAIError(t, "pool without endpoints", r, http.StatusServiceUnavailable)
	if got := r.Header.Get(hdrDropped); got != "rejected-no-endpoints" {
		t.Errorf("reason header %q, want rejected-no-endpoints", got)
	}
}

func TestFlowControlReloadSwapsSaturationThresholds(t *testing.T) {
	f := startFleet(t, 1, func(c *sim.Config) { c.MaxNumSeqs, c.TimeScale = 1, 1 })
	render := func(picker string) []byte {
		return renderConfig(t, gatewaySpec{
			Pools: []poolSpec{{Name: flowPool, Model: testModel, Addrs: f.Addrs()}},
			Extra: []string{picker, objectiveDoc("sheddable", flowPool, -1)},
		})
	}
	gw := startGateway(t, render(flowPickerDoc("30s")))
	url, metrics := chatURL(gw.Addr()), "http://"+gw.AdminAddr()+"/metrics"
	c := newClient()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	occupy(t, ctx, c, url, metrics, 2000)

	reload := func(raw []byte) error {
		cfg, err := schema.Parse("e2e.yaml", raw)
		if err != nil {
			t.Fatal(err)
		}
		return gw.Reload(cfg)
	}
	// A bad value is refused, naming the field; the running thresholds stay.
	err := reload(render(strings.Replace(flowPickerDoc("30s"), "queueDepthThreshold: 1", "queueDepthThreshold: -1", 1)))
	if err == nil || !strings.Contains(err.Error(), "saturationDetector.queueDepthThreshold") {
		t.Fatalf("reload with queueDepthThreshold -1: %v, want an error naming saturationDetector.queueDepthThreshold", err)
	}
	if r := post(context.Background(), c, url, longChat(1, 4), map[string]string{hdrObjective: "sheddable"}); r.Status != http.StatusTooManyRequests {
		t.Fatalf("sheddable after a refused reload: %s, want 429", r)
	}
	// One waiting request is headroom under a threshold of 10.
	if err := reload(render(strings.Replace(flowPickerDoc("30s"), "queueDepthThreshold: 1", "queueDepthThreshold: 10", 1))); err != nil {
		t.Fatal(err)
	}
	waitMetric(t, c, metrics, "igw_pool_saturation", map[string]string{"pool": flowPoolLabel}, func(v float64) bool { return v == 0 })
	qctx, qcancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer qcancel()
	// Admitted now: it goes to the busy replica and waits there, so the
	// client gives up first; what matters is that it was not shed.
	r := post(qctx, c, url, longChat(2, 4), map[string]string{hdrObjective: "sheddable"})
	if r.Status == http.StatusTooManyRequests {
		t.Fatalf("sheddable after raising the threshold: %s, want it admitted", r)
	}
}
