package e2e

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/igw-dev/igw/api/v1"
	"github.com/igw-dev/igw/api/v1alpha2"
	"github.com/igw-dev/igw/pkg/extproc"
	"github.com/igw-dev/igw/pkg/extproc/envoytest"
)

// routeInPool is one request through a picker serving several pools, the
// stream naming pool in its gRPC metadata as Envoy's per-route
// grpc_initial_metadata would; it returns the endpoint chosen and the
// model server's status (or the picker's rejection status).
func routeInPool(t *testing.T, e *eppProc, pool, model, objective string) (string, int, error) {
	t.Helper()
	ctx := withTimeout(t, 30*time.Second)
	if pool != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, extproc.PoolMetadataKey, pool)
	}
	h := map[string]string{":method": "POST", ":path": "/v1/chat/completions", ":authority": "igw", "content-type": "application/json"}
	if objective != "" {
		h["x-gateway-inference-objective"] = objective
	}
	s, err := envoytest.Start(ctx, e.grpc, &envoytest.Request{Headers: h, Body: chat{Model: model, User: "hello " + pool, MaxTokens: 2}.body()})
	if err != nil {
		return "", 0, err
	}
	res := s.Result()
	if res.Immediate != nil {
		_ = s.Close()
		return "", res.Status(), nil
	}
	dest := strings.Split(res.SetRequestHeaders["x-gateway-destination-endpoint"], ",")[0]
	resp, err := http.Post(chatURL(dest), "application/json", bytes.NewReader(res.Body))
	if err != nil {
		t.Fatalf("forwarding to %s: %v", dest, err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err := s.Respond(&envoytest.Response{Status: resp.StatusCode, Headers: map[string]string{"content-type": resp.Header.Get("content-type")}, Chunks: [][]byte{body}}); err != nil {
		t.Fatalf("response phase: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("closing the stream: %v", err)
	}
	return dest, resp.StatusCode, nil
}

// One igw epp, two InferencePools with different models and objectives:
// each stream goes to the pool its metadata names, each pool's endpoints and
// metrics stay its own, and a stream naming no pool is refused.
func TestKubeEPP_OnePickerServesTwoPools(t *testing.T) {
	k := newKubeTest(t, "epp.yaml", "igw-epp")
	const ipA, ipB = "127.0.18.41", "127.0.18.42"
	simsAt(t, "model-a", 8000, ipA)
	simsAt(t, "model-b", 8000, ipB)
	for _, p := range []struct{ name, app string }{{"pool-a", "a"}, {"pool-b", "b"}} {
		k.create(&v1.InferencePool{ObjectMeta: metav1.ObjectMeta{Name: p.name},
			Spec: v1.InferencePoolSpec{Selector: v1.LabelSelector{MatchLabels: map[string]string{"app": p.app}}, TargetPorts: []v1.Port{{Number: 8000}}}})
	}
	high, low := int32(10), int32(-1)
	k.create(&v1alpha2.InferenceObjective{ObjectMeta: metav1.ObjectMeta{Name: "interactive"},
		Spec: v1alpha2.InferenceObjectiveSpec{Priority: &high, PoolRef: v1alpha2.PoolObjectReference{Name: "pool-a"}}})
	k.create(&v1alpha2.InferenceObjective{ObjectMeta: metav1.ObjectMeta{Name: "batch"},
		Spec: v1alpha2.InferenceObjectiveSpec{Priority: &low, PoolRef: v1alpha2.PoolObjectReference{Name: "pool-b"}}})
	k.pod("a-0", ipA, true, map[string]string{"app": "a"})
	k.pod("b-0", ipB, true, map[string]string{"app": "b"})

	epp := k.startKubeEPP("igw epp (two pools)", "pool-a,pool-b")
	epp.waitReady(t, 60*time.Second)
	a, b := net.JoinHostPort(ipA, "8000"), net.JoinHostPort(ipB, "8000")
	for _, tc := range []struct{ pool, model, objective, want string }{
		{"pool-a", "model-a", "interactive", a}, {k.ns + "/pool-b", "model-b", "batch", b}, {"pool-b", "model-b", "batch", b},
	} {
		for range 4 {
			dest, code, err := routeInPool(t, epp, tc.pool, tc.model, tc.objective)
			if err != nil || code != 200 || dest != tc.want {
				t.Fatalf("%s %s: endpoint %q status %d err %v, want %s and 200", tc.pool, tc.model, dest, code, err, tc.want)
			}
		}
	}
	for _, pool := range []string{"", "pool-c"} {
		_, _, err := routeInPool(t, epp, pool, "model-a", "")
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), extproc.PoolMetadataKey) {
			t.Errorf("pool %q: %v, want InvalidArgument naming %s", pool, err, extproc.PoolMetadataKey)
		}
	}
	// Each pool's series, from its own engine.
	page := scrape(t, newClient(), "http://"+epp.metrics+"/metrics")
	for _, pool := range []string{"pool-a", "pool-b"} {
		if v := metricSum(page, "inference_pool_ready_pods", map[string]string{"name": pool}); v != 1 {
			t.Errorf("inference_pool_ready_pods{name=%q} = %v, want 1", pool, v)
		}
	}
	// Each pool's objective gave its requests their priority, and only
	// there: interactive (10) in pool-a, batch (-1) in pool-b.
	const queued = "inference_extension_flow_control_request_queue_duration_seconds_count"
	if metricSum(page, queued, map[string]string{"inference_pool": "pool-a", "priority": "10"}) != 4 ||
		metricSum(page, queued, map[string]string{"inference_pool": "pool-b", "priority": "-1"}) != 8 ||
		metricSum(page, queued, map[string]string{"inference_pool": "pool-b", "priority": "10"}) != 0 {
		t.Errorf("priorities by pool:\n%s", grepLines(page, queued))
	}
}
