package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	k8sschema "k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	v1 "github.com/igw-dev/igw/api/v1"
	"github.com/igw-dev/igw/internal/kubetest"
	"github.com/igw-dev/igw/pkg/gatewayapi"
	"github.com/igw-dev/igw/pkg/sim"
)

// igw as the cluster's only gateway: `igw serve --kubernetes` against the
// real kube-apiserver with Gateway API's standard CRDs, the seed
// walk-through's manifests applied unchanged, pods whose status.podIP is a
// loopback address where `igw sim` replicas listen on the pool's target
// port 8000. The loopback range 127.0.18.0/24 is this file's alone, so the
// fixed port cannot collide with other tests.

const seedModel = "meta-llama/Llama-3.1-8B-Instruct"

// simsAt starts one simulated replica of model on ip:port per ip.
func simsAt(t *testing.T, model string, port int, ips ...string) {
	t.Helper()
	for _, ip := range ips {
		cfg := sim.DefaultConfig()
		cfg.Address, cfg.Port, cfg.Replicas, cfg.Model, cfg.TimeScale = ip, port, 1, model, 20
		f, err := sim.StartFleet(cfg, nil)
		if err != nil {
			t.Fatalf("sim on %s:%d: %v", ip, port, err)
		}
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = f.Close(ctx)
		})
	}
}

var kubeServeLine = regexp.MustCompile(`msg="igw gateway serving" address=(\S+) admin=(\S+)`)

// gatewayTest is one namespace with igw serving Gateway API in it.
type gatewayTest struct {
	*kubeTest
	admin    string // an administrator's kubeconfig, for kubectl
	api      string // the data plane's host:port
	adminURL string // its admin listener's base URL
}

func newGatewayTest(t *testing.T, listenIP string, extra ...string) *gatewayTest {
	env := kubetest.Require(t, kubeEnv)
	g := &gatewayTest{kubeTest: &kubeTest{t: t, env: env, ns: env.Namespace(t)}}
	var err error
	if g.admin, err = env.Kubeconfig(t.TempDir(), "igw-admin", "system:masters"); err != nil {
		t.Fatal(err)
	}
	// igw runs as the ServiceAccount of config/rbac/gateway.yaml, so the
	// ClusterRole is proven sufficient; the ClusterRole and binding are
	// cluster-wide, applied once per API server.
	manifest, err := os.ReadFile(filepath.Join(env.Root, "config", "rbac", "gateway.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := env.Apply(withTimeout(t, 30*time.Second), manifest, g.ns); err != nil {
		t.Fatalf("config/rbac/gateway.yaml: %v", err)
	}
	// The binding names the ServiceAccount of the first namespace it was
	// applied in; every test runs as that identity.
	var binding struct {
		Subjects []struct{ Namespace string } `json:"subjects"`
	}
	out := g.kubectl("get", "clusterrolebinding", "igw-gateway", "-o", "json")
	if err := json.Unmarshal([]byte(out), &binding); err != nil || len(binding.Subjects) != 1 {
		t.Fatalf("clusterrolebinding igw-gateway: %v %s", err, out)
	}
	user, groups := kubetest.ServiceAccountUser(binding.Subjects[0].Namespace, "igw-gateway")
	if g.kubeconfig, err = env.Kubeconfig(t.TempDir(), user, groups...); err != nil {
		t.Fatal(err)
	}
	args := append([]string{"serve", "--kubernetes", "--kubeconfig", g.kubeconfig, "--address", net.JoinHostPort(listenIP, "0"),
		"--admin-address", "127.0.0.1:0", "--gateway-address", listenIP, "--log-level", "debug"}, extra...)
	p := startProc(t, "igw serve --kubernetes", args...)
	m := p.waitOutput(t, kubeServeLine, 1, 60*time.Second)[0]
	g.api, g.adminURL = m[1], "http://"+m[2]
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("igw serve --kubernetes output:\n%s", tail(p.output(), 60))
		}
	})
	return g
}

// kubectl runs bin/kubectl as the administrator (the client's view when
// bin/kubectl is missing is not what a user sees, so it is required).
func (g *gatewayTest) kubectl(args ...string) string {
	g.t.Helper()
	bin := filepath.Join(g.env.Root, "bin", "kubectl")
	if _, err := os.Stat(bin); err != nil {
		g.t.Skipf("bin/kubectl is missing: run `make test` (or make bin/kubectl)")
	}
	cmd := exec.Command(bin, append([]string{"--kubeconfig", g.admin, "-n", g.ns}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		g.t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// deleteRoutes deletes the test's routes of kind gvk by name.
func (g *gatewayTest) deleteRoutes(gvk k8sschema.GroupVersionKind, names ...string) {
	for _, name := range names {
		u := &unstructured.Unstructured{}
		u.SetGroupVersionKind(gvk)
		u.SetNamespace(g.ns)
		u.SetName(name)
		if err := g.env.Client.Delete(context.Background(), u); err != nil && !apierrors.IsNotFound(err) {
			g.t.Errorf("deleting %s %s: %v", gvk.Kind, name, err)
		}
	}
}

// servingPod creates a Ready pod at ip with labels.
func (g *gatewayTest) servingPod(name, ip string, labels map[string]string) *corev1.Pod {
	return g.pod(name, ip, true, labels)
}

// chat sends one chat completion for model through the Gateway at addr
// (the address its status gives) and returns the answer.
func (g *gatewayTest) chat(addr, model string) result {
	_, port, _ := net.SplitHostPort(g.api)
	body := chat{Model: model, User: "hello", MaxTokens: 4}.body()
	return post(withTimeout(g.t, 30*time.Second), newClient(), chatURL(net.JoinHostPort(addr, port)), body, nil)
}

// condition finds a condition's status in a list of conditions.
func conditionStatus(cs []metav1.Condition, t string) string {
	if c := meta.FindStatusCondition(cs, t); c != nil {
		return string(c.Status) + "/" + c.Reason
	}
	return "missing"
}

func TestGatewayAPI_SeedManifestsRouteThroughIGW(t *testing.T) {
	const ip1, ip2, ip3 = "127.0.18.1", "127.0.18.2", "127.0.18.3"
	simsAt(t, seedModel, 8000, ip1, ip2, ip3)
	g := newGatewayTest(t, "127.0.18.10")
	manifest, err := os.ReadFile("testdata/gateway-api-seed.yaml")
	if err != nil {
		t.Fatal(err)
	}
	ctx := withTimeout(t, 3*time.Minute)
	if _, err := g.env.Apply(ctx, manifest, g.ns); err != nil {
		t.Fatalf("the seed manifests do not apply: %v", err)
	}
	g.servingPod("vllm-0", ip1, map[string]string{"app": "vllm-llama3-8b-instruct"})
	g.servingPod("vllm-1", ip2, map[string]string{"app": "vllm-llama3-8b-instruct"})
	g.servingPod("canary-0", ip3, map[string]string{"app": "vllm-canary"})

	// The Gateway is programmed and says where to send requests.
	var addr string
	eventually(t, 30*time.Second, func() error {
		var gw gwv1.Gateway
		if err := g.env.Client.Get(ctx, client.ObjectKey{Namespace: g.ns, Name: "inference-gateway"}, &gw); err != nil {
			return err
		}
		if s := conditionStatus(gw.Status.Conditions, "Programmed"); s != "True/Programmed" {
			return fmt.Errorf("Gateway Programmed = %s", s)
		}
		addr = strings.Trim(g.kubectl("get", "gateway", "inference-gateway", "-o", "jsonpath={.status.addresses[0].value}"), "'")
		if addr == "" {
			return errors.New("no status.addresses")
		}
		return nil
	})
	if addr != "127.0.18.10" {
		t.Fatalf("status.addresses[0].value = %q, want 127.0.18.10", addr)
	}

	// Ready once the cluster's routes are applied.
	waitReady(t, strings.TrimPrefix(g.adminURL, "http://"))

	// Requests for the model reach the pool's pods, never the canary.
	eventually(t, 30*time.Second, func() error {
		r := g.chat(addr, seedModel)
		if r.Status != 200 {
			return fmt.Errorf("chat: %s", r)
		}
		return nil
	})
	seen := map[string]int{}
	for range 20 {
		r := g.chat(addr, seedModel)
		if r.Status != 200 {
			t.Fatalf("chat: %s", r)
		}
		seen[r.Served()]++
	}
	if seen[ip3+":8000"] > 0 || seen[ip1+":8000"]+seen[ip2+":8000"] != 20 {
		t.Errorf("served by %v, want only the pool's pods %s and %s", seen, ip1, ip2)
	}
	// A model no route matches is 404; the header the client sends does
	// not route (the model comes from the body).
	if r := g.chat(addr, "other-model"); r.Status != 404 {
		t.Errorf("unknown model: %s, want 404", r)
	}

	// Statuses, as kubectl shows them.
	eventually(t, 10*time.Second, func() error {
		yamlOut := g.kubectl("get", "httproute", "llm-route", "-o", "yaml")
		for _, want := range []string{"controllerName: igw.dev/gateway-controller", "reason: Accepted", "reason: ResolvedRefs"} {
			if !strings.Contains(yamlOut, want) {
				return fmt.Errorf("kubectl get httproute -o yaml lacks %q:\n%s", want, yamlOut)
			}
		}
		return nil
	})
	var gc gwv1.GatewayClass
	if err := g.env.Client.Get(ctx, client.ObjectKey{Name: "igw"}, &gc); err != nil {
		t.Fatal(err)
	}
	if s := conditionStatus(gc.Status.Conditions, "Accepted"); s != "True/Accepted" {
		t.Errorf("GatewayClass Accepted = %s", s)
	}
	eventually(t, 10*time.Second, func() error {
		var pool v1.InferencePool
		if err := g.env.Client.Get(ctx, client.ObjectKey{Namespace: g.ns, Name: "vllm-llama3-8b-instruct"}, &pool); err != nil {
			return err
		}
		if len(pool.Status.Parents) != 1 {
			return fmt.Errorf("pool status.parents = %+v", pool.Status.Parents)
		}
		p := pool.Status.Parents[0]
		if string(p.ParentRef.Name) != "inference-gateway" || string(p.ParentRef.Namespace) != g.ns || p.ControllerName != "igw.dev/gateway-controller" {
			return fmt.Errorf("pool parent = %+v", p)
		}
		if a, r := conditionStatus(p.Conditions, "Accepted"), conditionStatus(p.Conditions, "ResolvedRefs"); a != "True/Accepted" || r != "True/ResolvedRefs" {
			return fmt.Errorf("pool conditions Accepted=%s ResolvedRefs=%s", a, r)
		}
		return nil
	})
	poolYAML := g.kubectl("get", "inferencepool", "vllm-llama3-8b-instruct", "-o", "yaml")
	if !strings.Contains(poolYAML, "name: inference-gateway") {
		t.Errorf("kubectl get inferencepool -o yaml has no parent:\n%s", poolYAML)
	}

	// Weights move traffic: a second pool gets all of it.
	canary := &v1.InferencePool{ObjectMeta: metav1.ObjectMeta{Name: "vllm-canary"},
		Spec: v1.InferencePoolSpec{Selector: v1.LabelSelector{MatchLabels: map[string]string{"app": "vllm-canary"}}, TargetPorts: []v1.Port{{Number: 8000}}}}
	g.create(canary)
	var route gwv1.HTTPRoute
	if err := g.env.Client.Get(ctx, client.ObjectKey{Namespace: g.ns, Name: "llm-route"}, &route); err != nil {
		t.Fatal(err)
	}
	zero, all := int32(0), int32(100)
	group, kind := gwv1.Group("inference.networking.k8s.io"), gwv1.Kind("InferencePool")
	rule := &route.Spec.Rules[0]
	rule.BackendRefs[0].Weight = &zero
	rule.BackendRefs = append(rule.BackendRefs, gwv1.HTTPBackendRef{BackendRef: gwv1.BackendRef{Weight: &all,
		BackendObjectReference: gwv1.BackendObjectReference{Group: &group, Kind: &kind, Name: "vllm-canary"}}})
	g.update(&route)
	start := time.Now()
	eventually(t, 10*time.Second, func() error {
		if r := g.chat(addr, seedModel); r.Served() != ip3+":8000" {
			return fmt.Errorf("served by %q (%s), want the canary", r.Served(), r)
		}
		return nil
	})
	t.Logf("weights took effect after %v", time.Since(start).Round(time.Millisecond))
	for range 10 {
		if r := g.chat(addr, seedModel); r.Served() != ip3+":8000" {
			t.Fatalf("after the weight edit: served by %q (%s), want only the canary", r.Served(), r)
		}
	}

	// Deleting the route stops the traffic.
	g.delete(&route)
	eventually(t, 10*time.Second, func() error {
		if r := g.chat(addr, seedModel); r.Status != 404 {
			return fmt.Errorf("after deleting the route: %s, want 404", r)
		}
		return nil
	})
	eventually(t, 10*time.Second, func() error {
		var pool v1.InferencePool
		if err := g.env.Client.Get(ctx, client.ObjectKey{Namespace: g.ns, Name: "vllm-llama3-8b-instruct"}, &pool); err != nil {
			return err
		}
		if len(pool.Status.Parents) != 0 {
			return fmt.Errorf("pool status.parents after the route went = %+v", pool.Status.Parents)
		}
		return nil
	})
}

func TestGatewayAPI_AIGatewayRouteRoutesModelsToPoolsAndAService(t *testing.T) {
	const llamaIP, mistralIP = "127.0.18.21", "127.0.18.22"
	simsAt(t, seedModel, 8000, llamaIP)
	simsAt(t, "mistral:latest", 8000, mistralIP)
	// The Service's pod. The API server refuses loopback IPs in
	// EndpointSlices (it allows them as pod IPs), and a bare API server has
	// no EndpointSlice controller, so igw reads the Service's selector
	// here; TestTranslate_ServiceEndpointsFromEndpointSlices covers slices.
	const upstreamIP = "127.0.18.23"
	simsAt(t, "some-cool-self-hosted-model", 8000, upstreamIP)
	g := newGatewayTest(t, "127.0.18.20")
	manifest, err := os.ReadFile("testdata/aigatewayroute.yaml")
	if err != nil {
		t.Fatal(err)
	}
	ctx := withTimeout(t, 3*time.Minute)
	if _, err := g.env.Apply(ctx, manifest, g.ns); err != nil {
		t.Fatalf("the AIGatewayRoute manifests do not apply: %v", err)
	}
	// igw serves the Gateways of its class on one port, so routes of
	// different Gateways compete for a request; this test's go with it.
	t.Cleanup(func() { g.deleteRoutes(gatewayapi.AIGatewayRouteGVK(), "inference-routes", "openai-route") })
	g.servingPod("llama-0", llamaIP, map[string]string{"app": "vllm-llama3-8b-instruct"})
	g.servingPod("mistral-0", mistralIP, map[string]string{"app": "mistral"})
	g.servingPod("testupstream-0", upstreamIP, map[string]string{"app": "envoy-ai-gateway-basic-testupstream"})

	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("%s\n%s", g.kubectl("get", "aigatewayroute", "-o", "yaml"), g.kubectl("get", "gateway", "-o", "yaml"))
		}
	})
	want := map[string]string{seedModel: llamaIP + ":8000", "mistral:latest": mistralIP + ":8000", "some-cool-self-hosted-model": upstreamIP + ":8000"}
	for model, endpoint := range want {
		eventually(t, 30*time.Second, func() error {
			r := g.chat("127.0.18.20", model)
			if r.Status != 200 || r.Served() != endpoint {
				return fmt.Errorf("%s: served by %q (%s), want %s", model, r.Served(), r, endpoint)
			}
			return nil
		})
	}
	eventually(t, 10*time.Second, func() error {
		out := g.kubectl("get", "aigatewayroute", "inference-routes", "-o", "yaml")
		for _, s := range []string{"reason: Accepted", "reason: ResolvedRefs"} {
			if !strings.Contains(out, s) {
				return fmt.Errorf("kubectl get aigatewayroute -o yaml lacks %q:\n%s", s, out)
			}
		}
		return nil
	})
	// A backend of Envoy AI Gateway's default kind (an external provider)
	// is refused with a message that names the forms igw takes.
	var u unstructured.Unstructured
	u.SetGroupVersionKind(gatewayapi.AIGatewayRouteGVK())
	u.SetName("openai-route")
	if err := unstructured.SetNestedField(u.Object, map[string]any{
		"parentRefs": []any{map[string]any{"name": "ai-gateway"}},
		"rules": []any{map[string]any{
			"matches":     []any{map[string]any{"headers": []any{map[string]any{"type": "Exact", "name": "x-ai-eg-model", "value": "gpt-4o-mini"}}}},
			"backendRefs": []any{map[string]any{"name": "envoy-ai-gateway-openai"}},
		}},
	}, "spec"); err != nil {
		t.Fatal(err)
	}
	g.create(&u)
	eventually(t, 10*time.Second, func() error {
		out := g.kubectl("get", "aigatewayroute", "openai-route", "-o", "jsonpath={.status.conditions[?(@.type==\"ResolvedRefs\")].message}")
		if !strings.Contains(out, "AIServiceBackend") || !strings.Contains(out, "kind InferencePool") {
			return fmt.Errorf("ResolvedRefs message %q does not name the right form", out)
		}
		return nil
	})
}

func TestGatewayAPI_LLMDGroupAndInferenceModelHeader(t *testing.T) {
	const ip = "127.0.18.31"
	simsAt(t, seedModel, 8000, ip)
	g := newGatewayTest(t, "127.0.18.30", "--model-header", "x-gateway-inference-model")
	manifest, err := os.ReadFile("testdata/gateway-api-llmd.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.env.Apply(withTimeout(t, time.Minute), manifest, g.ns); err != nil {
		t.Fatalf("the llm-d.ai manifests do not apply: %v", err)
	}
	t.Cleanup(func() {
		g.deleteRoutes(k8sschema.GroupVersionKind{Group: gwv1.GroupName, Version: "v1", Kind: "HTTPRoute"}, "food-review")
	})
	g.servingPod("vllm-0", ip, map[string]string{"app": "vllm-llama3-8b-instruct"})
	eventually(t, 30*time.Second, func() error {
		r := g.chat("127.0.18.30", "food-review")
		if r.Status != 200 || r.Served() != ip+":8000" {
			return fmt.Errorf("food-review: served by %q (%s), want %s:8000 with the model rewritten", r.Served(), r, ip)
		}
		return nil
	})
	eventually(t, 10*time.Second, func() error {
		if out := g.kubectl("get", "httproute", "food-review", "-o", "yaml"); !strings.Contains(out, "reason: Accepted") {
			return fmt.Errorf("route status:\n%s", out)
		}
		return nil
	})
}

// Two replicas with leader election: both reconcile and serve the same
// routes (the follower is warm, not waiting to be elected), one holds the
// Lease, and the statuses are written (by it).
func TestGatewayAPI_LeaderElectionFollowerServesWarm(t *testing.T) {
	const ip = "127.0.18.51"
	simsAt(t, seedModel, 8000, ip)
	g := newGatewayTest(t, "127.0.18.50", "--ha-enable-leader-election", "--ha-lease-name", "igw-gateway-ha", "--ha-lease-namespace", "default")
	second := startProc(t, "igw serve --kubernetes (second)", "serve", "--kubernetes", "--kubeconfig", g.kubeconfig,
		"--address", "127.0.18.52:0", "--admin-address", "127.0.0.1:0", "--gateway-address", "127.0.18.52",
		"--ha-enable-leader-election", "--ha-lease-name", "igw-gateway-ha", "--ha-lease-namespace", "default", "--log-level", "debug")
	m := second.waitOutput(t, kubeServeLine, 1, 60*time.Second)[0]
	manifest, err := os.ReadFile("testdata/gateway-api-seed.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.env.Apply(withTimeout(t, time.Minute), manifest, g.ns); err != nil {
		t.Fatal(err)
	}
	g.servingPod("vllm-0", ip, map[string]string{"app": "vllm-llama3-8b-instruct"})
	for _, api := range []string{g.api, m[1]} {
		eventually(t, 30*time.Second, func() error {
			r := post(withTimeout(t, 30*time.Second), newClient(), chatURL(api), chat{Model: seedModel, User: "hi", MaxTokens: 2}.body(), nil)
			if r.Status != 200 || r.Served() != ip+":8000" {
				return fmt.Errorf("replica %s: %s served by %q", api, r, r.Served())
			}
			return nil
		})
	}
	eventually(t, 30*time.Second, func() error {
		if holder := g.kubectl("get", "lease", "igw-gateway-ha", "-n", "default", "-o", "jsonpath={.spec.holderIdentity}"); holder == "" {
			return errors.New("no Lease holder")
		}
		var gw gwv1.Gateway
		if err := g.env.Client.Get(withTimeout(t, 10*time.Second), client.ObjectKey{Namespace: g.ns, Name: "inference-gateway"}, &gw); err != nil {
			return err
		}
		if s := conditionStatus(gw.Status.Conditions, "Programmed"); s != "True/Programmed" {
			return fmt.Errorf("Gateway Programmed = %s", s)
		}
		return nil
	})
}
