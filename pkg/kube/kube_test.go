package kube_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/igw-dev/igw/api/v1"
	"github.com/igw-dev/igw/api/v1alpha2"
	"github.com/igw-dev/igw/internal/kubetest"
	"github.com/igw-dev/igw/pkg/datastore"
	"github.com/igw-dev/igw/pkg/kube"
)

// testEnv is the package's API server; TestMain writes it once, before any
// test runs (nil when KUBEBUILDER_ASSETS is unset).
var testEnv *kubetest.Env

func TestMain(m *testing.M) { os.Exit(kubetest.Main(m, &testEnv)) }

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// eventually polls f until it returns nil, failing with its last error
// after timeout, and returns how long it took.
func eventually(t *testing.T, timeout time.Duration, f func() error) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		err := f()
		if err == nil {
			return time.Since(start)
		}
		if time.Since(start) > timeout {
			t.Fatalf("after %v: %v", timeout, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// rbacConfig applies config/rbac/<file> in ns and returns a rest.Config
// authenticated as its ServiceAccount, so the test also proves the Role is
// enough.
func rbacConfig(t *testing.T, env *kubetest.Env, ns, file, serviceAccount string) *rest.Config {
	t.Helper()
	manifest, err := os.ReadFile(filepath.Join(env.Root, "config", "rbac", file))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := env.Apply(ctxFor(t, 30*time.Second), manifest, ns); err != nil {
		t.Fatalf("applying config/rbac/%s: %v", file, err)
	}
	user, groups := kubetest.ServiceAccountUser(ns, serviceAccount)
	cfg, err := env.UserConfig(user, groups...)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// startDiscovery runs a Discovery until the test ends and waits for its
// caches to sync.
func startDiscovery(t *testing.T, o kube.Options) *kube.Discovery {
	t.Helper()
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	d, err := kube.New(o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("discovery: %v", err)
		}
	})
	eventually(t, 30*time.Second, func() error {
		if !d.Synced() {
			return errors.New("caches not synced")
		}
		return nil
	})
	return d
}

// createPod creates a pod with labels and, when ip is not empty, gives it
// that IP and a PodReady condition of ready, as a kubelet would.
func createPod(t *testing.T, c client.Client, ns, name, ip string, ready bool, labels map[string]string) *corev1.Pod {
	t.Helper()
	ctx := ctxFor(t, 30*time.Second)
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "model-server", Image: "vllm/vllm-openai"}}},
	}
	if err := c.Create(ctx, p); err != nil {
		t.Fatal(err)
	}
	if ip != "" {
		setPodStatus(t, c, p, ip, ready)
	}
	return p
}

// setPodStatus writes the pod's IP and PodReady condition.
func setPodStatus(t *testing.T, c client.Client, p *corev1.Pod, ip string, ready bool) {
	t.Helper()
	st := corev1.ConditionFalse
	if ready {
		st = corev1.ConditionTrue
	}
	p.Status = corev1.PodStatus{
		Phase: corev1.PodRunning, PodIP: ip, PodIPs: []corev1.PodIP{{IP: ip}},
		Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: st, LastTransitionTime: metav1.Now()}},
	}
	if err := c.Status().Update(ctxFor(t, 30*time.Second), p); err != nil {
		t.Fatal(err)
	}
}

// addresses lists the pool's endpoint addresses in the store.
func addresses(s *datastore.Store, pool string) []string {
	p := s.Pool(pool)
	if p == nil {
		return nil
	}
	var out []string
	for _, e := range p.Endpoints {
		out = append(out, e.Address)
	}
	slices.Sort(out)
	return out
}

// waitAddresses waits until the pool's endpoints are exactly want.
func waitAddresses(t *testing.T, s *datastore.Store, pool string, want ...string) time.Duration {
	t.Helper()
	slices.Sort(want)
	return eventually(t, 10*time.Second, func() error {
		if got := addresses(s, pool); !slices.Equal(got, want) {
			return fmt.Errorf("pool %s endpoints %v, want %v", pool, got, want)
		}
		return nil
	})
}

func TestCRDs_SeedExamplesApplyUnchanged(t *testing.T) {
	env := kubetest.Require(t, testEnv)
	ns := env.Namespace(t)
	ctx := ctxFor(t, 30*time.Second)
	manifest, err := os.ReadFile("testdata/seed-examples.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := env.Apply(ctx, manifest, ns); err != nil {
		t.Fatalf("the seed examples do not apply: %v", err)
	}

	var pool v1.InferencePool
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "vllm-llama3-8b-instruct"}, &pool); err != nil {
		t.Fatal(err)
	}
	if pool.Spec.AppProtocol != v1.AppProtocolHTTP {
		t.Errorf("appProtocol defaulted to %q, want http", pool.Spec.AppProtocol)
	}
	ref := pool.Spec.EndpointPickerRef
	if ref == nil || ref.Name != "vllm-llama3-8b-instruct-epp" || ref.Port == nil || ref.Port.Number != 9002 || ref.FailureMode != v1.EndpointPickerFailClose || ref.Kind != "Service" {
		t.Errorf("endpointPickerRef = %+v", ref)
	}
	var obj v1alpha2.InferenceObjective
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "food-review"}, &obj); err != nil {
		t.Fatal(err)
	}
	if obj.Spec.EffectivePriority() != 1 || obj.Spec.PoolRef.Kind != v1alpha2.PoolKind || obj.Spec.PoolRef.Name != "vllm-llama3-8b-instruct" {
		t.Errorf("objective spec = %+v", obj.Spec)
	}
	var rw v1alpha2.InferenceModelRewrite
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "food-review-canary"}, &rw); err != nil {
		t.Fatal(err)
	}
	if rw.Spec.PoolRef.Group != v1alpha2.PoolGroup || len(rw.Spec.Rules) != 1 || len(rw.Spec.Rules[0].Targets) != 2 {
		t.Errorf("rewrite spec = %+v", rw.Spec)
	}

	// The schema validates, not just stores: REFERENCE §1 limits.
	bad := pool.DeepCopy()
	bad.ResourceVersion, bad.Name = "", "duplicate-ports"
	bad.Spec.TargetPorts = []v1.Port{{Number: 8000}, {Number: 8000}}
	if err := env.Client.Create(ctx, bad); !apierrors.IsInvalid(err) {
		t.Errorf("duplicate target ports: error %v, want Invalid", err)
	}
	bad.Spec.TargetPorts = []v1.Port{{Number: 8000}}
	bad.Spec.Selector.MatchLabels = nil
	if err := env.Client.Create(ctx, bad); !apierrors.IsInvalid(err) {
		t.Errorf("no matchLabels: error %v, want Invalid", err)
	}

	// kubectl get infpool works: the short name is served.
	dc, err := discovery.NewDiscoveryClientForConfig(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	res, err := dc.ServerResourcesForGroupVersion(v1.GroupVersion.String())
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, r := range res.APIResources {
		if r.Name == "inferencepools" && slices.Contains(r.ShortNames, "infpool") {
			found = true
		}
	}
	if !found {
		t.Errorf("inferencepools has no short name infpool: %+v", res.APIResources)
	}
}

func TestPoolEndpoints_FollowPodReadinessLabelsAndDeletion(t *testing.T) {
	env := kubetest.Require(t, testEnv)
	ns := env.Namespace(t)
	c := env.Client
	ctx := ctxFor(t, 2*time.Minute)
	pool := &v1.InferencePool{
		ObjectMeta: metav1.ObjectMeta{Name: "llama", Namespace: ns},
		Spec: v1.InferencePoolSpec{
			Selector:    v1.LabelSelector{MatchLabels: map[string]string{"app": "llama"}},
			TargetPorts: []v1.Port{{Number: 8000}, {Number: 8001}},
		},
	}
	if err := c.Create(ctx, pool); err != nil {
		t.Fatal(err)
	}
	store := datastore.NewStore(nil)
	key := ns + "/llama"
	startDiscovery(t, kube.Options{
		Config: rbacConfig(t, env, ns, "epp.yaml", "igw-epp"), Namespace: ns,
		Pool: &kube.PoolSource{Name: "llama", Store: store},
	})

	llama := map[string]string{"app": "llama"}
	a := createPod(t, c, ns, "a", "127.0.1.1", true, llama)
	createPod(t, c, ns, "b", "127.0.1.2", true, map[string]string{"app": "llama", "inference.networking.k8s.io/engine-type": "sglang"})
	createPod(t, c, ns, "not-ready", "127.0.1.3", false, llama)
	createPod(t, c, ns, "no-ip", "", false, llama)
	createPod(t, c, ns, "other-app", "127.0.1.4", true, map[string]string{"app": "other"})
	took := waitAddresses(t, store, key, "127.0.1.1:8000", "127.0.1.1:8001", "127.0.1.2:8000", "127.0.1.2:8001")
	t.Logf("endpoints of two ready pods visible %v after the last pod write", took)
	for _, e := range store.Pool(key).Endpoints {
		want := datastore.EngineVLLM
		if strings.HasPrefix(e.Name, "b:") {
			want = datastore.EngineSGLang
		}
		if e.Engine != want || e.Pool != key || e.Labels["app"] != "llama" {
			t.Errorf("endpoint %s: engine %s pool %s labels %v", e.Name, e.Engine, e.Pool, e.Labels)
		}
	}

	// Readiness lost: the pod leaves at once.
	setPodStatus(t, c, a, "127.0.1.1", false)
	t.Logf("unready pod gone after %v", waitAddresses(t, store, key, "127.0.1.2:8000", "127.0.1.2:8001"))
	setPodStatus(t, c, a, "127.0.1.1", true)
	waitAddresses(t, store, key, "127.0.1.1:8000", "127.0.1.1:8001", "127.0.1.2:8000", "127.0.1.2:8001")

	// A label change takes the pod out of the selector.
	a.Labels = map[string]string{"app": "retired"}
	if err := c.Update(ctx, a); err != nil {
		t.Fatal(err)
	}
	waitAddresses(t, store, key, "127.0.1.2:8000", "127.0.1.2:8001")

	// A terminating pod (still Ready, held by a finalizer) drains.
	var b corev1.Pod
	if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "b"}, &b); err != nil {
		t.Fatal(err)
	}
	b.Finalizers = []string{"igw.dev/test-hold"}
	if err := c.Update(ctx, &b); err != nil {
		t.Fatal(err)
	}
	if err := c.Delete(ctx, &b); err != nil {
		t.Fatal(err)
	}
	waitAddresses(t, store, key)
	if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "b"}, &b); err != nil || b.DeletionTimestamp == nil {
		t.Fatalf("pod b should be terminating: %v %v", err, b.DeletionTimestamp)
	}
	b.Finalizers = nil
	if err := c.Update(ctx, &b); err != nil {
		t.Fatal(err)
	}

	// Editing the pool's selector and ports takes effect like a pod change.
	createPod(t, c, ns, "c", "127.0.1.5", true, llama)
	waitAddresses(t, store, key, "127.0.1.5:8000", "127.0.1.5:8001")
	if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "llama"}, pool); err != nil {
		t.Fatal(err)
	}
	pool.Spec.Selector.MatchLabels = map[string]string{"app": "retired"}
	pool.Spec.TargetPorts = []v1.Port{{Number: 9000}}
	if err := c.Update(ctx, pool); err != nil {
		t.Fatal(err)
	}
	waitAddresses(t, store, key, "127.0.1.1:9000")

	// Deleting a pod and then the pool empties the store.
	if err := c.Delete(ctx, a); err != nil {
		t.Fatal(err)
	}
	waitAddresses(t, store, key)
	if err := c.Delete(ctx, pool); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, func() error {
		if store.Pool(key) != nil {
			return errors.New("pool still in the store after its deletion")
		}
		return nil
	})
}

func TestEndpointSelector_NeedsNoInferencePool(t *testing.T) {
	env := kubetest.Require(t, testEnv)
	ns := env.Namespace(t)
	store := datastore.NewStore(nil)
	startDiscovery(t, kube.Options{
		Config: env.Config, Namespace: ns,
		Pool: &kube.PoolSource{Name: "sel", Selector: map[string]string{"app": "sel"}, TargetPorts: []int32{8000}, Store: store},
	})
	createPod(t, env.Client, ns, "p", "127.0.2.1", true, map[string]string{"app": "sel", "tier": "gpu"})
	createPod(t, env.Client, ns, "q", "127.0.2.2", true, map[string]string{"app": "other"})
	waitAddresses(t, store, ns+"/sel", "127.0.2.1:8000")
}

func TestObjectivesAndRewrites_FollowTheCluster(t *testing.T) {
	env := kubetest.Require(t, testEnv)
	ns := env.Namespace(t)
	c := env.Client
	ctx := ctxFor(t, time.Minute)
	store := datastore.NewStore(nil)
	key := ns + "/llama"
	startDiscovery(t, kube.Options{
		Config: rbacConfig(t, env, ns, "epp.yaml", "igw-epp"), Namespace: ns,
		Pool: &kube.PoolSource{Name: "llama", Store: store},
	})
	prio := func(p int32) *int32 { return &p }
	critical := &v1alpha2.InferenceObjective{
		ObjectMeta: metav1.ObjectMeta{Name: "critical", Namespace: ns},
		Spec:       v1alpha2.InferenceObjectiveSpec{Priority: prio(10), PoolRef: v1alpha2.PoolObjectReference{Name: "llama"}},
	}
	other := &v1alpha2.InferenceObjective{
		ObjectMeta: metav1.ObjectMeta{Name: "elsewhere", Namespace: ns},
		Spec:       v1alpha2.InferenceObjectiveSpec{Priority: prio(5), PoolRef: v1alpha2.PoolObjectReference{Name: "other-pool"}},
	}
	for _, o := range []*v1alpha2.InferenceObjective{critical, other} {
		if err := c.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 10*time.Second, func() error {
		if got := store.Priority(key, "critical"); got != 10 {
			return fmt.Errorf("priority of critical = %d", got)
		}
		return nil
	})
	if got := store.Priority(key, "elsewhere"); got != 0 {
		t.Errorf("an objective of another pool applies here: %d", got)
	}
	critical.Spec.Priority = prio(-1)
	if err := c.Update(ctx, critical); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, func() error {
		if got := store.Priority(key, "critical"); got != -1 {
			return fmt.Errorf("priority of critical = %d after the update", got)
		}
		return nil
	})
	if err := c.Delete(ctx, critical); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, func() error {
		if got := store.Priority(key, "critical"); got != 0 {
			return fmt.Errorf("priority of deleted objective = %d", got)
		}
		return nil
	})

	weight := func(w int32) *int32 { return &w }
	rewrite := func(name string, rules ...v1alpha2.InferenceModelRewriteRule) *v1alpha2.InferenceModelRewrite {
		return &v1alpha2.InferenceModelRewrite{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
			Spec:       v1alpha2.InferenceModelRewriteSpec{PoolRef: v1alpha2.PoolObjectReference{Name: "llama"}, Rules: rules},
		}
	}
	exact := func(model string, targets ...v1alpha2.TargetModel) v1alpha2.InferenceModelRewriteRule {
		return v1alpha2.InferenceModelRewriteRule{Matches: []v1alpha2.Match{{Model: v1alpha2.ModelMatch{Type: v1alpha2.MatchExact, Value: model}}}, Targets: targets}
	}
	catchAll := v1alpha2.InferenceModelRewriteRule{Targets: []v1alpha2.TargetModel{{ModelRewrite: "fallback"}}}
	canary := rewrite("canary", exact("food-review",
		v1alpha2.TargetModel{ModelRewrite: "food-review-v1", Weight: weight(90)},
		v1alpha2.TargetModel{ModelRewrite: "food-review-v2", Weight: weight(10)}))
	if err := c.Create(ctx, rewrite("everything", catchAll)); err != nil {
		t.Fatal(err)
	}
	if err := c.Create(ctx, canary); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, func() error {
		low, _ := store.Rewrite(key, "food-review", 0.05)
		high, src := store.Rewrite(key, "food-review", 0.95)
		other, _ := store.Rewrite(key, "anything", 0.5)
		if low != "food-review-v1" || high != "food-review-v2" || src != ns+"/canary" || other != "fallback" {
			return fmt.Errorf("rewrites: food-review → %s / %s (rule %s), anything → %s", low, high, src, other)
		}
		return nil
	})
	if err := c.Delete(ctx, canary); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, func() error {
		if got, _ := store.Rewrite(key, "food-review", 0.05); got != "fallback" {
			return fmt.Errorf("food-review → %s after the canary's deletion", got)
		}
		return nil
	})
}

func TestAdapters_FollowBBRManagedConfigMaps(t *testing.T) {
	env := kubetest.Require(t, testEnv)
	ns := env.Namespace(t)
	c := env.Client
	ctx := ctxFor(t, time.Minute)
	maps := make(chan *datastore.AdapterMap, 16)
	startDiscovery(t, kube.Options{
		Config: rbacConfig(t, env, ns, "bbr.yaml", "igw-bbr"), Namespace: ns,
		Adapters: func(m *datastore.AdapterMap) { maps <- m },
	})
	var current *datastore.AdapterMap
	waitBase := func(model, want string) {
		t.Helper()
		eventually(t, 10*time.Second, func() error {
			for {
				select {
				case m := <-maps:
					current = m
					continue
				default:
				}
				break
			}
			if got, _ := current.BaseModel(model); got != want {
				return fmt.Errorf("base model of %s = %q, want %q", model, got, want)
			}
			return nil
		})
	}
	managed := map[string]string{kube.BBRManagedLabel: "true"}
	llama := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "llama-adapters", Namespace: ns, Labels: managed},
		Data:       map[string]string{"baseModel": "meta-llama/Llama-3.1-8B-Instruct", "adapters": "- food-review\n- sql-lora\n"},
	}
	unmanaged := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "unrelated", Namespace: ns},
		Data:       map[string]string{"baseModel": "ignored", "adapters": "[ghost]"},
	}
	for _, cm := range []*corev1.ConfigMap{llama, unmanaged} {
		if err := c.Create(ctx, cm); err != nil {
			t.Fatal(err)
		}
	}
	waitBase("food-review", "meta-llama/Llama-3.1-8B-Instruct")
	if b, ok := current.BaseModel("ghost"); ok {
		t.Errorf("an unlabelled ConfigMap was read: ghost → %s", b)
	}
	llama.Data["adapters"] = "[sql-lora, support-bot]"
	if err := c.Update(ctx, llama); err != nil {
		t.Fatal(err)
	}
	waitBase("support-bot", "meta-llama/Llama-3.1-8B-Instruct")
	if _, ok := current.BaseModel("food-review"); ok {
		t.Error("a removed adapter is still mapped")
	}
	if err := c.Delete(ctx, llama); err != nil {
		t.Fatal(err)
	}
	waitBase("sql-lora", "")
}

func TestLeaderElection_FollowerTakesOverWhenLeaderStops(t *testing.T) {
	env := kubetest.Require(t, testEnv)
	ns := env.Namespace(t)
	cfg := rbacConfig(t, env, ns, "epp.yaml", "igw-epp")
	le := &kube.LeaderElection{LeaseName: "igw-epp-llama", LeaseDuration: 2 * time.Second, RenewDeadline: 1500 * time.Millisecond, RetryPeriod: 200 * time.Millisecond}
	start := func() (*kube.Discovery, func() error) {
		d, err := kube.New(kube.Options{Config: cfg, Namespace: ns, LeaderElection: le,
			Pool: &kube.PoolSource{Name: "llama", Selector: map[string]string{"app": "llama"}, TargetPorts: []int32{8000}, Store: datastore.NewStore(nil)}})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- d.Run(ctx) }()
		stop := sync.OnceValue(func() error { cancel(); return <-done })
		t.Cleanup(func() { _ = stop() })
		return d, stop
	}
	first, stopFirst := start()
	eventually(t, 30*time.Second, func() error {
		if !first.Leader() {
			return errors.New("first replica is not leading")
		}
		return nil
	})
	second, _ := start()
	eventually(t, 30*time.Second, func() error {
		if !second.Synced() {
			return errors.New("second replica not synced")
		}
		return nil
	})
	time.Sleep(3 * le.RetryPeriod) // the follower has tried the held Lease
	if second.Leader() {
		t.Fatal("two leaders")
	}
	if err := stopFirst(); err != nil {
		t.Fatalf("first replica: %v", err)
	}
	took := eventually(t, 30*time.Second, func() error {
		if !second.Leader() {
			return errors.New("second replica did not take over")
		}
		return nil
	})
	t.Logf("follower leading %v after the leader released the Lease", took)
}

// TestWithoutCRDs_EndpointSelectorStillRoutes runs on a cluster without
// igw's CRDs (removed for the test, reinstalled after): --endpoint-selector
// mode works and leaves objectives and rewrites alone, and pool mode fails
// at once with a message saying what to install.
func TestWithoutCRDs_EndpointSelectorStillRoutes(t *testing.T) {
	env := kubetest.Require(t, testEnv)
	ns := env.Namespace(t)
	cfg := rbacConfig(t, env, ns, "epp.yaml", "igw-epp")
	err := env.WithoutCRDs(ctxFor(t, 2*time.Minute), func() {
		_, err := kube.New(kube.Options{Config: cfg, Namespace: ns, Pool: &kube.PoolSource{Name: "llama", Store: datastore.NewStore(nil)}})
		if err == nil || !strings.Contains(err.Error(), "does not serve InferencePool") {
			t.Errorf("pool mode without the CRD: error %v", err)
		}
		store := datastore.NewStore(nil)
		startDiscovery(t, kube.Options{
			Config: cfg, Namespace: ns,
			Pool: &kube.PoolSource{Name: "sel", Selector: map[string]string{"app": "sel"}, TargetPorts: []int32{8000}, Store: store},
		})
		createPod(t, env.Client, ns, "p", "127.0.4.1", true, map[string]string{"app": "sel"})
		waitAddresses(t, store, ns+"/sel", "127.0.4.1:8000")
	})
	if err != nil {
		t.Fatal(err)
	}
}

// The llm-d.ai group (REFERENCE.md §8) feeds the store exactly like the
// seeds' group: an objective and a rewrite applied as llm-d manifests.
func TestObjectivesAndRewrites_LLMDGroup(t *testing.T) {
	env := kubetest.Require(t, testEnv)
	ns := env.Namespace(t)
	store := datastore.NewStore(nil)
	key := ns + "/llama"
	startDiscovery(t, kube.Options{
		Config: rbacConfig(t, env, ns, "epp.yaml", "igw-epp"), Namespace: ns,
		Pool: &kube.PoolSource{Name: "llama", Store: store},
	})
	manifest := `apiVersion: llm-d.ai/v1alpha2
kind: InferenceObjective
metadata:
  name: batch
spec:
  priority: -3
  poolRef:
    name: llama
---
apiVersion: llm-d.ai/v1alpha2
kind: InferenceModelRewrite
metadata:
  name: canary
spec:
  poolRef:
    name: llama
  rules:
  - matches:
    - model: {type: Exact, value: food-review}
    targets:
    - modelRewrite: food-review-2
`
	if _, err := env.Apply(ctxFor(t, 30*time.Second), []byte(manifest), ns); err != nil {
		t.Fatalf("the llm-d.ai manifests do not apply: %v", err)
	}
	eventually(t, 10*time.Second, func() error {
		if got := store.Priority(key, "batch"); got != -3 {
			return fmt.Errorf("priority of the llm-d.ai objective = %d", got)
		}
		if got, _ := store.Rewrite(key, "food-review", 0.5); got != "food-review-2" {
			return fmt.Errorf("llm-d.ai rewrite of food-review = %q", got)
		}
		return nil
	})
}

// An InferenceObjective written as inference.networking.k8s.io/v1alpha1 (as
// some walk-throughs do) is refused by the API server with a message that
// names the forms igw reads (config/crd/compat), not with "no matches for
// kind"; the same object under the right group applies.
func TestObjectives_WrongGroupIsRefusedNamingTheRightForm(t *testing.T) {
	env := kubetest.Require(t, testEnv)
	ns := env.Namespace(t)
	manifest := `apiVersion: inference.networking.k8s.io/v1alpha1
kind: InferenceObjective
metadata:
  name: chat
spec:
  priority: 10
  poolRef:
    name: llama
`
	_, err := env.Apply(ctxFor(t, 30*time.Second), []byte(manifest), ns)
	if err == nil || !strings.Contains(err.Error(), "inference.networking.x-k8s.io/v1alpha2") || !strings.Contains(err.Error(), "llm-d.ai/v1alpha2") {
		t.Fatalf("the wrong group: %v, want a refusal naming inference.networking.x-k8s.io/v1alpha2 and llm-d.ai/v1alpha2", err)
	}
	right := strings.Replace(manifest, "inference.networking.k8s.io/v1alpha1", "inference.networking.x-k8s.io/v1alpha2", 1)
	if _, err := env.Apply(ctxFor(t, 30*time.Second), []byte(right), ns); err != nil {
		t.Fatalf("the same objective under the right group: %v", err)
	}
}

// igw epp, when only the picker, writes its pool's status.parents: one entry
// per Gateway whose HTTPRoutes send to the pool, under its own
// controllerName, leaving other controllers' entries alone.
func TestPoolStatus_PickerWritesParentsOfRoutesToThePool(t *testing.T) {
	env := kubetest.Require(t, testEnv)
	ns := env.Namespace(t)
	ctx := ctxFor(t, time.Minute)
	c := env.Client
	pool := &v1.InferencePool{ObjectMeta: metav1.ObjectMeta{Name: "llama", Namespace: ns},
		Spec: v1.InferencePoolSpec{Selector: v1.LabelSelector{MatchLabels: map[string]string{"app": "llama"}}, TargetPorts: []v1.Port{{Number: 8000}},
			EndpointPickerRef: &v1.EndpointPickerRef{Name: "llama-epp", Port: &v1.Port{Number: 9002}}}}
	if err := c.Create(ctx, pool); err != nil {
		t.Fatal(err)
	}
	// Another controller's entry, which must survive.
	group := v1.Group("gateway.networking.k8s.io")
	pool.Status.Parents = []v1.ParentStatus{{ParentRef: v1.ParentReference{Group: &group, Kind: "Gateway", Name: "envoy-gw", Namespace: v1.Namespace(ns)},
		ControllerName: "example.com/envoy", Conditions: []metav1.Condition{{Type: "Accepted", Status: metav1.ConditionTrue, Reason: "Accepted", Message: "ok", LastTransitionTime: metav1.Now()}}}}
	if err := c.Status().Update(ctx, pool); err != nil {
		t.Fatal(err)
	}
	startDiscovery(t, kube.Options{
		Config: rbacConfig(t, env, ns, "epp.yaml", "igw-epp"), Namespace: ns,
		Pool: &kube.PoolSource{Name: "llama", Store: datastore.NewStore(nil)},
	})
	manifest := `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: llama
spec:
  parentRefs:
  - name: envoy-gw
  rules:
  - backendRefs:
    - group: inference.networking.k8s.io
      kind: InferencePool
      name: llama
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: unrelated
spec:
  parentRefs:
  - name: other-gw
  rules:
  - backendRefs:
    - name: some-service
      port: 80
`
	objs, err := env.Apply(ctx, []byte(manifest), ns)
	if err != nil {
		t.Fatal(err)
	}
	mine := func() (*v1.ParentStatus, int, error) {
		var got v1.InferencePool
		if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "llama"}, &got); err != nil {
			return nil, 0, err
		}
		var p *v1.ParentStatus
		for i := range got.Status.Parents {
			if got.Status.Parents[i].ControllerName == kube.PickerControllerName {
				p = &got.Status.Parents[i]
			}
		}
		return p, len(got.Status.Parents), nil
	}
	eventually(t, 10*time.Second, func() error {
		p, n, err := mine()
		if err != nil {
			return err
		}
		if p == nil || n != 2 || p.ParentRef.Name != "envoy-gw" || len(p.Conditions) != 2 {
			return fmt.Errorf("parents: igw's %+v, %d in all; want igw's for envoy-gw beside the other controller's", p, n)
		}
		for _, cond := range p.Conditions {
			if cond.Status != metav1.ConditionTrue || (cond.Reason != "Accepted" && cond.Reason != "ResolvedRefs") {
				return fmt.Errorf("condition %+v", cond)
			}
		}
		return nil
	})
	// The route goes: igw's entry goes, the other controller's stays.
	if err := c.Delete(ctx, objs[0]); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, func() error {
		p, n, err := mine()
		if err != nil {
			return err
		}
		if p != nil || n != 1 {
			return fmt.Errorf("after the route went: igw's entry %+v, %d in all", p, n)
		}
		return nil
	})
}
