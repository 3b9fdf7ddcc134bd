package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/igw-dev/igw/api/v1"
	"github.com/igw-dev/igw/api/v1alpha2"
	"github.com/igw-dev/igw/internal/kubetest"
	"github.com/igw-dev/igw/pkg/extproc"
	"github.com/igw-dev/igw/pkg/extproc/envoytest"
	"github.com/igw-dev/igw/pkg/sim"
)

// Kubernetes mode end to end: `igw epp` and `igw bbr` processes against a
// real kube-apiserver (TestMain starts one when KUBEBUILDER_ASSETS is set),
// authenticated as the ServiceAccounts of config/rbac so the Roles are
// proven sufficient. Pods are API objects only (no kubelet): the test
// writes their status, and their status.podIP is a loopback address where a
// simulated model server listens, so the picker scrapes and routes to real
// servers.

// kubeEnv is the package's API server, written only by TestMain (nil when
// KUBEBUILDER_ASSETS is unset).
var kubeEnv *kubetest.Env

// podSims starts one simulated replica of testModel on each loopback ip,
// all on one port (a pool's pods share their target port), and returns the
// port.
func podSims(t *testing.T, ips ...string) int {
	t.Helper()
	for attempt := 0; ; attempt++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		_ = ln.Close()
		var fleets []*sim.Fleet
		var failed error
		for _, ip := range ips {
			cfg := sim.DefaultConfig()
			cfg.Address, cfg.Port, cfg.Replicas, cfg.Model, cfg.TimeScale = ip, port, 1, testModel, 20
			f, err := sim.StartFleet(cfg, nil)
			if err != nil {
				failed = err
				break
			}
			fleets = append(fleets, f)
		}
		closeAll := func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			for _, f := range fleets {
				_ = f.Close(ctx)
			}
		}
		if failed == nil {
			t.Cleanup(closeAll)
			return port
		}
		closeAll()
		if attempt == 5 {
			t.Fatalf("no common free port on %v: %v", ips, failed)
		}
	}
}

// kubeTest is one test's namespace with the epp RBAC applied.
type kubeTest struct {
	t          *testing.T
	env        *kubetest.Env
	ns         string
	kubeconfig string // the igw-epp ServiceAccount's identity
}

func newKubeTest(t *testing.T, rbacFile, serviceAccount string) *kubeTest {
	env := kubetest.Require(t, kubeEnv)
	k := &kubeTest{t: t, env: env, ns: env.Namespace(t)}
	manifest, err := os.ReadFile(filepath.Join(env.Root, "config", "rbac", rbacFile))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := env.Apply(withTimeout(t, 30*time.Second), manifest, k.ns); err != nil {
		t.Fatalf("config/rbac/%s: %v", rbacFile, err)
	}
	user, groups := kubetest.ServiceAccountUser(k.ns, serviceAccount)
	if k.kubeconfig, err = env.Kubeconfig(t.TempDir(), user, groups...); err != nil {
		t.Fatal(err)
	}
	return k
}

func (k *kubeTest) create(obj client.Object) {
	k.t.Helper()
	obj.SetNamespace(k.ns)
	if err := k.env.Client.Create(withTimeout(k.t, 30*time.Second), obj); err != nil {
		k.t.Fatalf("creating %s: %v", obj.GetName(), err)
	}
}

func (k *kubeTest) update(obj client.Object) {
	k.t.Helper()
	if err := k.env.Client.Update(withTimeout(k.t, 30*time.Second), obj); err != nil {
		k.t.Fatalf("updating %s: %v", obj.GetName(), err)
	}
}

func (k *kubeTest) delete(obj client.Object) {
	k.t.Helper()
	if err := k.env.Client.Delete(withTimeout(k.t, 30*time.Second), obj); err != nil {
		k.t.Fatalf("deleting %s: %v", obj.GetName(), err)
	}
}

// pod creates a model-server pod at ip with labels, Ready or not.
func (k *kubeTest) pod(name, ip string, ready bool, labels map[string]string) *corev1.Pod {
	k.t.Helper()
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "vllm", Image: "vllm/vllm-openai"}}},
	}
	k.create(p)
	k.setReady(p, ip, ready)
	return p
}

// setReady writes the pod's status as a kubelet would.
func (k *kubeTest) setReady(p *corev1.Pod, ip string, ready bool) {
	k.t.Helper()
	st := corev1.ConditionFalse
	if ready {
		st = corev1.ConditionTrue
	}
	p.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip, PodIPs: []corev1.PodIP{{IP: ip}},
		Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: st, LastTransitionTime: metav1.Now()}}}
	if err := k.env.Client.Status().Update(withTimeout(k.t, 30*time.Second), p); err != nil {
		k.t.Fatalf("pod %s status: %v", p.Name, err)
	}
}

// eppProc is a running `igw epp` with connections to its ports.
type eppProc struct {
	*proc
	grpc, health *grpc.ClientConn
	metrics      string
}

// startKubeEPP runs `igw epp` in Kubernetes mode for pool in the test's
// namespace, on ephemeral loopback ports.
func (k *kubeTest) startKubeEPP(name, pool string, extra ...string) *eppProc {
	k.t.Helper()
	args := append([]string{"epp", "--pool-name", pool, "--pool-namespace", k.ns, "--kubeconfig", k.kubeconfig,
		"--address", "127.0.0.1", "--grpc-port", "0", "--grpc-health-port", "0", "--metrics-port", "0",
		"--secure-serving=false", "--log-level", "debug"}, extra...)
	p := startProc(k.t, name, args...)
	m := p.waitOutput(k.t, eppServingLine, 1, 60*time.Second)[0]
	dial := func(addr string) *grpc.ClientConn {
		c, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			k.t.Fatal(err)
		}
		k.t.Cleanup(func() { c.Close() })
		return c
	}
	return &eppProc{proc: p, grpc: dial(m[1]), health: dial(m[2]), metrics: m[3]}
}

// ready is the picker's readiness on its gRPC health port.
func (e *eppProc) ready() bool {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	r, err := healthpb.NewHealthClient(e.health).Check(ctx, &healthpb.HealthCheckRequest{Service: "readiness"})
	return err == nil && r.GetStatus() == healthpb.HealthCheckResponse_SERVING
}

func (e *eppProc) waitReady(t *testing.T, timeout time.Duration) {
	t.Helper()
	eventually(t, timeout, func() error {
		if !e.ready() {
			return fmt.Errorf("%s not ready", e.name)
		}
		return nil
	})
}

// routed is one request through the picker and, unless rejected, to the
// model server it chose.
type routed struct {
	status   int    // the picker's rejection status, else the model server's
	endpoint string // the primary endpoint chosen
	all      []string
	body     []byte // the model server's answer
}

// route sends a chat request for model through the picker the way Envoy
// would, then forwards the (possibly rewritten) body to the endpoint the
// picker chose and plays the answer back through the picker.
func route(t *testing.T, conn *grpc.ClientConn, model, prompt string, headers map[string]string) routed {
	t.Helper()
	h := map[string]string{":method": "POST", ":path": "/v1/chat/completions", ":authority": "igw", "content-type": "application/json"}
	for k, v := range headers {
		h[k] = v
	}
	ctx := withTimeout(t, 30*time.Second)
	s, err := envoytest.Start(ctx, conn, &envoytest.Request{Headers: h, Body: chat{Model: model, User: prompt, MaxTokens: 2}.body()})
	if err != nil {
		t.Fatalf("ext_proc: %v", err)
	}
	res := s.Result()
	if res.Immediate != nil {
		_ = s.Close()
		return routed{status: res.Status()}
	}
	dest := res.SetRequestHeaders["x-gateway-destination-endpoint"]
	if dest == "" || dest != res.MetadataString("envoy.lb", "x-gateway-destination-endpoint") {
		t.Fatalf("destination header %q and metadata %q", dest, res.MetadataString("envoy.lb", "x-gateway-destination-endpoint"))
	}
	all := strings.Split(dest, ",")
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, chatURL(all[0]), bytes.NewReader(res.Body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("content-type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("forwarding to %s: %v", all[0], err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Respond(&envoytest.Response{Status: resp.StatusCode, Headers: map[string]string{"content-type": resp.Header.Get("content-type")}, Chunks: [][]byte{body}}); err != nil {
		t.Fatalf("response phase: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("closing the stream: %v", err)
	}
	return routed{status: resp.StatusCode, endpoint: all[0], all: all, body: body}
}

// routesOnlyTo sends n requests with distinct prompts and checks that
// every one was answered by a model server of want (primary and
// fallbacks alike), returning the primaries seen.
func routesOnlyTo(t *testing.T, conn *grpc.ClientConn, n int, want ...string) map[string]int {
	t.Helper()
	seen := map[string]int{}
	for i := range n {
		r := route(t, conn, testModel, fmt.Sprintf("request %d %s", i, text(uint64(i), 20)), nil)
		if r.status != http.StatusOK {
			t.Fatalf("request %d: status %d %s", i, r.status, r.body)
		}
		for _, a := range r.all {
			if !slices.Contains(want, a) {
				t.Fatalf("request %d routed to %v, want only %v", i, r.all, want)
			}
		}
		seen[r.endpoint]++
	}
	return seen
}

// waitRoutesOnlyTo polls until a batch of requests goes only to want (the
// picker follows the cluster within its reconcile and scrape), then checks
// a second batch.
func waitRoutesOnlyTo(t *testing.T, conn *grpc.ClientConn, want ...string) {
	t.Helper()
	start := time.Now()
	eventually(t, 15*time.Second, func() error {
		for i := range 6 {
			r := route(t, conn, testModel, fmt.Sprintf("probe %d %d", i, time.Now().UnixNano()), nil)
			if r.status != http.StatusOK {
				return fmt.Errorf("status %d %s", r.status, r.body)
			}
			for _, a := range r.all {
				if !slices.Contains(want, a) {
					return fmt.Errorf("routed to %v, want only %v", r.all, want)
				}
			}
		}
		return nil
	})
	t.Logf("routing only to %v after %v", want, time.Since(start).Round(time.Millisecond))
	routesOnlyTo(t, conn, 6, want...)
}

func TestKubeEPP_RoutingFollowsPodsObjectivesAndRewrites(t *testing.T) {
	k := newKubeTest(t, "epp.yaml", "igw-epp")
	port := podSims(t, "127.0.0.2", "127.0.0.3")
	a, b := net.JoinHostPort("127.0.0.2", strconv.Itoa(port)), net.JoinHostPort("127.0.0.3", strconv.Itoa(port))
	labels := map[string]string{"app": "llama"}
	k.create(&v1.InferencePool{
		ObjectMeta: metav1.ObjectMeta{Name: "llama"},
		Spec:       v1.InferencePoolSpec{Selector: v1.LabelSelector{MatchLabels: labels}, TargetPorts: []v1.Port{{Number: v1.PortNumber(port)}}},
	})
	podA := k.pod("llama-a", "127.0.0.2", true, labels)
	podB := k.pod("llama-b", "127.0.0.3", false, labels)

	epp := k.startKubeEPP("igw epp", "llama")
	epp.waitReady(t, 30*time.Second)
	routesOnlyTo(t, epp.grpc, 6, a)

	// b turns ready: it joins; a turns unready: it leaves.
	k.setReady(podB, "127.0.0.3", true)
	eventually(t, 15*time.Second, func() error {
		if seen := routesOnlyTo(t, epp.grpc, 4, a, b); seen[b] == 0 {
			return fmt.Errorf("b not chosen yet: %v", seen)
		}
		return nil
	})
	k.setReady(podA, "127.0.0.2", false)
	waitRoutesOnlyTo(t, epp.grpc, b)
	k.setReady(podA, "127.0.0.2", true)
	eventually(t, 15*time.Second, func() error {
		if seen := routesOnlyTo(t, epp.grpc, 4, a, b); seen[a] == 0 {
			return fmt.Errorf("a not chosen again yet: %v", seen)
		}
		return nil
	})

	// A label change takes b out of the pool; deleting a leaves nothing.
	podB.Labels = map[string]string{"app": "moved"}
	k.update(podB)
	waitRoutesOnlyTo(t, epp.grpc, a)
	k.delete(podA)
	eventually(t, 15*time.Second, func() error {
		if r := route(t, epp.grpc, testModel, "anyone?", nil); r.status != http.StatusServiceUnavailable {
			return fmt.Errorf("status %d with no pods, want 503", r.status)
		}
		return nil
	})
	eventually(t, 15*time.Second, func() error {
		if epp.ready() {
			return errors.New("picker still ready with no endpoints")
		}
		return nil
	})
	podB.Labels = labels
	k.update(podB)
	waitRoutesOnlyTo(t, epp.grpc, b)

	// An InferenceModelRewrite: a model name the server does not serve is
	// rewritten to one it serves, so the forwarded request succeeds.
	if r := route(t, epp.grpc, "llama-latest", "before the rewrite", nil); r.status != http.StatusNotFound {
		t.Fatalf("unknown model before the rewrite: status %d %s", r.status, r.body)
	}
	k.create(&v1alpha2.InferenceModelRewrite{
		ObjectMeta: metav1.ObjectMeta{Name: "latest"},
		Spec: v1alpha2.InferenceModelRewriteSpec{PoolRef: v1alpha2.PoolObjectReference{Name: "llama"}, Rules: []v1alpha2.InferenceModelRewriteRule{{
			Matches: []v1alpha2.Match{{Model: v1alpha2.ModelMatch{Type: v1alpha2.MatchExact, Value: "llama-latest"}}},
			Targets: []v1alpha2.TargetModel{{ModelRewrite: testModel}},
		}}},
	})
	eventually(t, 15*time.Second, func() error {
		if r := route(t, epp.grpc, "llama-latest", "after the rewrite", nil); r.status != http.StatusOK {
			return fmt.Errorf("rewritten model: status %d %s", r.status, r.body)
		}
		return nil
	})

	// An InferenceObjective: requests naming it are admitted at its
	// priority, which flow control reports per priority.
	prio := int32(7)
	k.create(&v1alpha2.InferenceObjective{
		ObjectMeta: metav1.ObjectMeta{Name: "critical"},
		Spec:       v1alpha2.InferenceObjectiveSpec{Priority: &prio, PoolRef: v1alpha2.PoolObjectReference{Name: "llama"}},
	})
	c := newClient()
	want := map[string]string{"pool": k.ns + "/llama", "priority": "7", "outcome": "dispatched"}
	eventually(t, 15*time.Second, func() error {
		if r := route(t, epp.grpc, testModel, "important", map[string]string{hdrObjective: "critical"}); r.status != http.StatusOK {
			return fmt.Errorf("status %d", r.status)
		}
		if n := metricSum(scrape(t, c, "http://"+epp.metrics+"/metrics"), "igw_flow_control_outcomes_total", want); n == 0 {
			return errors.New("no request dispatched at priority 7 yet")
		}
		return nil
	})
}

func TestKubeEPP_EndpointSelectorWithoutInferencePool(t *testing.T) {
	k := newKubeTest(t, "epp.yaml", "igw-epp")
	port := podSims(t, "127.0.0.4")
	k.pod("sel-a", "127.0.0.4", true, map[string]string{"app": "sel"})
	k.pod("sel-other", "127.0.0.5", true, map[string]string{"app": "other"})
	// In Kubernetes mode --config-file holds only the EndpointPickerConfig,
	// as for the upstream picker (and the Helm chart's ConfigMap).
	epc := filepath.Join(t.TempDir(), "plugins.yaml")
	if err := os.WriteFile(epc, []byte(pickerConfigDoc(2, 2, 3, 0)), 0o644); err != nil {
		t.Fatal(err)
	}
	epp := k.startKubeEPP("igw epp", "sel", "--endpoint-selector", "app=sel", "--endpoint-target-ports", strconv.Itoa(port), "--config-file", epc)
	epp.waitReady(t, 30*time.Second)
	routesOnlyTo(t, epp.grpc, 4, net.JoinHostPort("127.0.0.4", strconv.Itoa(port)))
}

func TestKubeEPP_LeaderFailover(t *testing.T) {
	k := newKubeTest(t, "epp.yaml", "igw-epp")
	port := podSims(t, "127.0.0.6")
	labels := map[string]string{"app": "ha"}
	k.create(&v1.InferencePool{
		ObjectMeta: metav1.ObjectMeta{Name: "ha"},
		Spec:       v1.InferencePoolSpec{Selector: v1.LabelSelector{MatchLabels: labels}, TargetPorts: []v1.Port{{Number: v1.PortNumber(port)}}},
	})
	k.pod("ha-a", "127.0.0.6", true, labels)
	const lease = 3 * time.Second
	ha := []string{"--ha-enable-leader-election", "--ha-lease-duration", lease.String(), "--ha-renew-deadline", "2s", "--ha-retry-period", "250ms"}
	first := k.startKubeEPP("igw epp 1", "ha", ha...)
	first.waitReady(t, 30*time.Second)
	second := k.startKubeEPP("igw epp 2", "ha", ha...)
	second.waitOutput(t, regexp.MustCompile(`Kubernetes caches synced`), 1, 30*time.Second)
	// The follower's datastore is warm: once it has scraped the model
	// server it routes (were Envoy to ask it) although it reports not ready.
	eventually(t, 15*time.Second, func() error {
		if r := route(t, second.grpc, testModel, "follower", nil); r.status != http.StatusOK {
			return fmt.Errorf("follower: status %d", r.status)
		}
		return nil
	})
	routesOnlyTo(t, second.grpc, 2, net.JoinHostPort("127.0.0.6", strconv.Itoa(port)))
	for range 4 {
		if second.ready() {
			t.Fatal("the follower reports ready while the leader holds the Lease")
		}
		time.Sleep(250 * time.Millisecond)
	}
	first.kill() // no chance to release the Lease
	killed := time.Now()
	second.waitReady(t, lease+10*time.Second) // generous: two busy cores
	took := time.Since(killed)
	t.Logf("follower ready %v after the leader was killed (lease duration %v)", took.Round(time.Millisecond), lease)
}

func TestKubeBBR_AdaptersFromConfigMaps(t *testing.T) {
	k := newKubeTest(t, "bbr.yaml", "igw-bbr")
	k.create(&corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "llama-adapters", Labels: map[string]string{"inference.networking.k8s.io/bbr-managed": "true"}},
		Data:       map[string]string{"baseModel": "meta-llama/Llama-3.1-8B-Instruct", "adapters": "- food-review\n"},
	})
	p := startProc(t, "igw bbr", "bbr", "--namespace", k.ns, "--kubeconfig", k.kubeconfig, "--address", "127.0.0.1",
		"--grpc-port", "0", "--grpc-health-port", "0", "--secure-serving=false", "--log-level", "debug")
	m := p.waitOutput(t, eppServingLine, 1, 60*time.Second)[0]
	conn, err := grpc.NewClient(m[1], grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	baseOf := func(model string) string {
		ctx := withTimeout(t, 10*time.Second)
		res, err := envoytest.Exchange(ctx, conn, &envoytest.Request{
			Headers: map[string]string{":method": "POST", ":path": "/v1/chat/completions", ":authority": "igw", "content-type": "application/json"},
			Body:    chat{Model: model, User: "hi"}.body(),
		}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := res.SetRequestHeaders[strings.ToLower(extproc.HeaderModelName)]; got != model {
			t.Fatalf("%s = %q, want %q", extproc.HeaderModelName, got, model)
		}
		return res.SetRequestHeaders[strings.ToLower(extproc.HeaderBaseModelName)]
	}
	eventually(t, 30*time.Second, func() error {
		if got := baseOf("food-review"); got != "meta-llama/Llama-3.1-8B-Instruct" {
			return fmt.Errorf("base model of food-review = %q", got)
		}
		return nil
	})
	var cm corev1.ConfigMap
	if err := k.env.Client.Get(withTimeout(t, 10*time.Second), client.ObjectKey{Namespace: k.ns, Name: "llama-adapters"}, &cm); err != nil {
		t.Fatal(err)
	}
	cm.Data["adapters"] = "[sql-lora]"
	k.update(&cm)
	eventually(t, 15*time.Second, func() error {
		if got := baseOf("sql-lora"); got != "meta-llama/Llama-3.1-8B-Instruct" {
			return fmt.Errorf("base model of sql-lora = %q after the update", got)
		}
		if got := baseOf("food-review"); got != "" {
			return fmt.Errorf("removed adapter food-review still maps to %q", got)
		}
		return nil
	})
}
