package charttest

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/tools/clientcmd"
)

// liveCase is one installation of the chart that igw epp must run from.
type liveCase struct {
	name, namespace string
	values          []string // beside the ports, selector and address the test sets
	leaderElection  bool     // replicas > 1: the picker must hold the Lease
}

func liveCases() []liveCase {
	return []liveCase{
		{name: "two replicas, default EndpointPickerConfig", namespace: "live-ha",
			values: []string{"--set", "inferenceExtension.replicas=2"}, leaderElection: true},
		{name: "one replica, values-custom.yaml", namespace: "live-custom",
			values: []string{"--values", filepath.Join("testdata", "values-custom.yaml")}},
	}
}

// checkPickerRuns installs the chart for real (no dry run) in a fresh
// namespace and runs bin/igw with exactly the Deployment's arguments, as
// the chart's ServiceAccount (impersonated, so the API server enforces the
// chart's Role), with the ConfigMap's EndpointPickerConfig at the mounted
// path's content. The picker must come up live and not ready, and turn
// ready once a Ready pod matching the pool's selector serves metrics on the
// pool's target port (an `igw sim` on loopback stands in for vLLM; the
// pod's status is written as a kubelet would). With leader election it must
// hold the Lease; without, no Lease may exist. Nothing in its log may say
// "forbidden".
func (tl *tools) checkPickerRuns(t *testing.T, lc liveCase) {
	ns, release := lc.namespace, "llama"
	ports := freePorts(t, 4)
	simPort, grpcPort, healthPort, metricsPort := ports[0], ports[1], ports[2], ports[3]

	sim := tl.startProcess(t, "igw sim", tl.igw, "sim", "--address", "127.0.0.1", "--port", strconv.Itoa(simPort), "--model", "llama")
	waitFor(t, 30*time.Second, "igw sim /health", func() error {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/health", simPort))
		if err != nil {
			return err
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	}, sim)

	tl.mustKubectl(t, "", "create", "namespace", ns)
	r := tl.render(t, release, ns, append(lc.values,
		"--set-json", `inferencePool.modelServers.matchLabels={"app":"sim-llama"}`,
		"--set-json", fmt.Sprintf(`inferencePool.targetPorts=[{"number":%d}]`, simPort),
		"--set", fmt.Sprintf("inferenceExtension.extProcPort=%d", grpcPort),
		"--set", fmt.Sprintf("inferenceExtension.grpcHealthPort=%d", healthPort),
		"--set", fmt.Sprintf("inferenceExtension.metricsPort=%d", metricsPort),
		"--set", "inferenceExtension.flags.address=127.0.0.1", // loopback only, through the flags passthrough
	))
	tl.mustKubectl(t, r.text, "apply", "--server-side", "--field-manager", fieldManager, "-f", "-")

	// The container's command line, with the ConfigMap's file where the pod
	// would see it, as the ServiceAccount would run it.
	eppName := release + "-epp"
	path, content := configFile(t, r, eppName)
	dir := t.TempDir()
	local := filepath.Join(dir, filepath.Base(path))
	if err := os.WriteFile(local, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	args, _, _ := unstructured.NestedStringSlice(container(t, r.get(t, "Deployment", eppName)), "args")
	for i := range args {
		if args[i] == path {
			args[i] = local
		}
	}
	sa, _, _ := unstructured.NestedString(r.get(t, "Deployment", eppName).Object, "spec", "template", "spec", "serviceAccountName")
	args = append(args, "--kubeconfig", tl.impersonatingKubeconfig(t, dir, ns, sa))
	epp := tl.startProcess(t, "igw epp", tl.igw, args...)

	health := dialHealth(t, healthPort)
	waitFor(t, 30*time.Second, "igw epp liveness SERVING", func() error { return wantHealth(health, "liveness", true) }, epp)
	if err := wantHealth(health, "readiness", false); err != nil {
		t.Errorf("before any model-server pod exists: %v", err)
	}

	pod := fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: sim-llama-0
  namespace: %s
  labels:
    app: sim-llama
    inference.networking.k8s.io/engine-type: vllm
spec:
  containers:
  - name: sim
    image: igw
    ports:
    - containerPort: %d
`, ns, simPort)
	tl.mustKubectl(t, pod, "apply", "--server-side", "--field-manager", fieldManager, "-f", "-")
	tl.mustKubectl(t, "", "patch", "pod", "sim-llama-0", "--namespace", ns, "--subresource=status", "--type=merge", "--patch",
		`{"status":{"phase":"Running","podIP":"127.0.0.1","podIPs":[{"ip":"127.0.0.1"}],"conditions":[{"type":"Ready","status":"True"}]}}`)
	waitFor(t, 30*time.Second, "igw epp readiness SERVING once the pool has a Ready pod", func() error { return wantHealth(health, "readiness", true) }, epp)

	leases := strings.TrimSpace(tl.mustKubectl(t, "", "get", "leases", "--namespace", ns,
		"-o", `jsonpath={range .items[*]}{.metadata.name}={.spec.holderIdentity}{"\n"}{end}`))
	name, holder, _ := strings.Cut(leases, "=")
	switch {
	case lc.leaderElection && (name != "igw-epp-"+release || holder == ""):
		t.Errorf("leases %q, want igw-epp-%s with a holder", leases, release)
	case !lc.leaderElection && leases != "":
		t.Errorf("leases %q without leader election, want none", leases)
	}
	t.Logf("igw epp %s: ready as the chart's ServiceAccount %s/%s; leases: %q", strings.Join(args, " "), ns, sa, leases)
	if log := epp.output(); strings.Contains(strings.ToLower(log), "forbidden") {
		t.Errorf("igw epp, as the chart's ServiceAccount, was refused something; the Role is not enough:\n%s", log)
	}
}

// impersonatingKubeconfig writes a copy of the admin kubeconfig that acts
// as the ServiceAccount ns/name, with the groups a service-account token
// carries, so the API server authorizes every call against the chart's RBAC.
func (tl *tools) impersonatingKubeconfig(t *testing.T, dir, ns, name string) string {
	t.Helper()
	cfg, err := clientcmd.LoadFromFile(tl.kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	for _, auth := range cfg.AuthInfos {
		auth.Impersonate = "system:serviceaccount:" + ns + ":" + name
		auth.ImpersonateGroups = []string{"system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"}
	}
	path := filepath.Join(dir, "kubeconfig-"+name)
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// process is a child process whose combined output is kept for failure
// messages.
type process struct {
	name string
	cmd  *exec.Cmd
	mu   sync.Mutex
	out  bytes.Buffer
	done chan struct{}
	err  error
}

func (p *process) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.Write(b)
}

func (p *process) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// exited reports the process's end, if it has ended.
func (p *process) exited() error {
	select {
	case <-p.done:
		return fmt.Errorf("%s exited: %v\n%s", p.name, p.err, p.output())
	default:
		return nil
	}
}

func (tl *tools) startProcess(t *testing.T, name, bin string, args ...string) *process {
	t.Helper()
	p := &process{name: name, cmd: exec.Command(bin, args...), done: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = p, p
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Signal(os.Interrupt)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("%s output:\n%s", name, p.output())
		}
	})
	return p
}

// waitFor polls check every 100 ms until it succeeds, failing the test
// after timeout or as soon as one of procs exits.
func waitFor(t *testing.T, timeout time.Duration, what string, check func() error, procs ...*process) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil {
			return
		}
		for _, p := range procs {
			if perr := p.exited(); perr != nil {
				t.Fatalf("%s: %v", what, perr)
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after %s: %v", what, timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	var lns []net.Listener
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	for _, ln := range lns {
		_ = ln.Close()
	}
	return ports
}

func dialHealth(t *testing.T, port int) healthpb.HealthClient {
	t.Helper()
	conn, err := grpc.NewClient(fmt.Sprintf("127.0.0.1:%d", port), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return healthpb.NewHealthClient(conn)
}

// wantHealth asks the gRPC health service the kubelet's probe asks.
func wantHealth(c healthpb.HealthClient, service string, serving bool) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	resp, err := c.Check(ctx, &healthpb.HealthCheckRequest{Service: service})
	if err != nil {
		return fmt.Errorf("health %q: %w", service, err)
	}
	if got := resp.GetStatus() == healthpb.HealthCheckResponse_SERVING; got != serving {
		return fmt.Errorf("health %q is %v", service, resp.GetStatus())
	}
	return nil
}
