package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"

	"github.com/igw-dev/igw/pkg/extproc"
	"github.com/igw-dev/igw/pkg/extproc/envoytest"
	"github.com/igw-dev/igw/pkg/sim"
)

// registryPage renders reg as a Prometheus text page, for metricSum.
func registryPage(t *testing.T, reg prometheus.Gatherer) string {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, f := range fams {
		if _, err := expfmt.MetricFamilyToText(&b, f); err != nil {
			t.Fatal(err)
		}
	}
	return b.String()
}

// TestFlowControlEPPQueueDisconnectDispatch: through igw epp, a request
// that arrives while the pool is saturated waits in the queue (visible in
// the picker's metrics); when Envoy cancels its stream (the client left)
// it leaves the queue at once; a queued request is answered with its
// routing decision as soon as the replica has room again.
func TestFlowControlEPPQueueDisconnectDispatch(t *testing.T) {
	f := startFleet(t, 1, func(c *sim.Config) { c.MaxNumSeqs, c.TimeScale = 1, 1 })
	raw := renderConfig(t, gatewaySpec{
		Pools: []poolSpec{{Name: flowPool, Model: testModel, Addrs: f.Addrs()}},
		Extra: []string{flowPickerDoc("30s")},
	})
	conn, rt := startEPP(t, raw)
	reg := rt.Metrics().Registry
	lbl := map[string]string{"pool": flowPoolLabel, "priority": "0"}
	waitPicker := func(name string, labels map[string]string, want float64) {
		t.Helper()
		eventually(t, 10*time.Second, func() error {
			if v := metricSum(registryPage(t, reg), name, labels); v != want {
				return fmt.Errorf("%s%v = %g, want %g", name, labels, v, want)
			}
			return nil
		})
	}
	eventually(t, 10*time.Second, func() error {
		if p := rt.Store().Pool(rt.Pool()); p == nil || len(p.Endpoints) != 1 || p.Endpoints[0].Metrics() == nil || !p.Endpoints[0].Ready() {
			return fmt.Errorf("pool %s not scraped yet", rt.Pool())
		}
		return nil
	})

	// Saturate the replica directly, as another gateway's traffic would:
	// one request runs, one waits.
	busyCtx, release := context.WithCancel(context.Background())
	defer release()
	c := newClient()
	direct := "http://" + f.Addrs()[0] + "/v1/chat/completions"
	for i := range 2 {
		go post(busyCtx, c, direct, longChat(i, 2000), nil)
	}
	eventually(t, 10*time.Second, func() error {
		if m := rt.Store().Pool(rt.Pool()).Endpoints[0].Metrics(); m == nil || m.WaitingQueueSize < 1 {
			return fmt.Errorf("replica not saturated yet: %+v", m)
		}
		return nil
	})

	headers := map[string]string{":method": "POST", ":path": "/v1/chat/completions", ":authority": "igw", "content-type": "application/json"}
	request := &envoytest.Request{Headers: headers, Body: chat{Model: testModel, User: "hi", MaxTokens: 4}.body()}

	// Queued, then the client leaves: Envoy cancels the stream.
	leaveCtx, leave := context.WithCancel(context.Background())
	left := make(chan error, 1)
	go func() {
		_, err := envoytest.Start(leaveCtx, conn, request)
		left <- err
	}()
	waitPicker("igw_flow_control_queue_size", lbl, 1)
	leave()
	if err := <-left; err == nil {
		t.Fatal("a cancelled stream got a decision")
	}
	waitPicker("igw_flow_control_queue_size", lbl, 0)
	waitPicker("igw_flow_control_outcomes_total", map[string]string{"pool": flowPoolLabel, "outcome": "canceled"}, 1)

	// Queued, then the replica frees up: the decision follows.
	decided := make(chan *envoytest.Result, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		s, err := envoytest.Start(ctx, conn, request)
		if err != nil {
			t.Error(err)
		}
		decided <- s.Result()
		_ = s.Close()
	}()
	waitPicker("igw_flow_control_queue_size", lbl, 1)
	select {
	case r := <-decided:
		t.Fatalf("answered while the replica was saturated: %d %s", r.Status(), r.Immediate.GetBody())
	case <-time.After(300 * time.Millisecond):
	}
	release() // the direct requests end; the replica has room
	select {
	case r := <-decided:
		if r.Immediate != nil {
			t.Fatalf("queued request rejected: %d %s", r.Status(), r.Immediate.GetBody())
		}
		if got := r.RequestHeaders[extproc.HeaderDestinationEndpoint]; got != f.Addrs()[0] {
			t.Errorf("destination %q, want %s", got, f.Addrs()[0])
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the queued request was never dispatched")
	}
	page := registryPage(t, reg)
	if n := metricSum(page, "igw_flow_control_wait_seconds_count", lbl); n != 2 {
		t.Errorf("queue wait observations %g, want 2 (the one that left, the one dispatched)", n)
	}
	if n := metricSum(page, "igw_flow_control_queue_size", lbl); n != 0 {
		t.Errorf("queue size %g after dispatch, want 0", n)
	}
}
