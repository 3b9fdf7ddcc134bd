package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/igw-dev/igw/pkg/extproc"
	"github.com/igw-dev/igw/pkg/extproc/envoytest"
	"github.com/igw-dev/igw/pkg/sim"
)

type listening struct{ grpc, health, metrics string }

// startExtProc runs an ext_proc command on loopback ports until the test
// ends, and returns its addresses.
func startExtProc(t *testing.T, secure bool, run func(context.Context, *extprocFlags) error) listening {
	t.Helper()
	ch := make(chan listening, 1)
	f := &extprocFlags{
		address: "127.0.0.1", secure: secure, bodyMode: "FULL_DUPLEX_STREAMED", maxBody: extproc.DefaultMaxBodyBytes,
		logLevel: "warn", drain: 5 * time.Second, readyInterval: 20 * time.Millisecond,
		onListening: func(g, h, m string) { ch <- listening{g, h, m} },
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, f) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("command returned %v", err)
		}
	})
	select {
	case l := <-ch:
		return l
	case err := <-done:
		done <- nil // for the cleanup
		t.Fatalf("command ended before listening: %v", err)
	case <-time.After(15 * time.Second):
		t.Fatal("command did not listen")
	}
	return listening{}
}

func dial(t *testing.T, addr string, secure bool) *grpc.ClientConn {
	t.Helper()
	creds := insecure.NewCredentials()
	if secure {
		creds = credentials.NewTLS(&tls.Config{InsecureSkipVerify: true}) // the picker's self-signed certificate
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func healthStatus(t *testing.T, conn *grpc.ClientConn, service string) healthpb.HealthCheckResponse_ServingStatus {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: service})
	if err != nil {
		t.Fatalf("health %q: %v", service, err)
	}
	return r.GetStatus()
}

func waitServing(t *testing.T, conn *grpc.ClientConn, service string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for healthStatus(t, conn, service) != healthpb.HealthCheckResponse_SERVING {
		if time.Now().After(deadline) {
			t.Fatalf("%q never SERVING", service)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// startSimEPP runs igw epp over TLS in front of two simulated replicas and
// returns its addresses and the replicas'.
func startSimEPP(t *testing.T) (listening, *sim.Fleet) {
	t.Helper()
	scfg := sim.DefaultConfig()
	scfg.Port, scfg.Replicas, scfg.TimeScale, scfg.Model = 0, 2, 20, demoModel
	fleet, err := sim.StartFleet(scfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = fleet.Close(ctx)
	})
	var ports []string
	for _, a := range fleet.Addrs() {
		_, p, _ := net.SplitHostPort(a)
		ports = append(ports, "  - number: "+p)
	}
	path := filepath.Join(t.TempDir(), "igw.yaml")
	yaml := fmt.Sprintf(`apiVersion: igw.dev/v1alpha1
kind: ModelServer
metadata: {name: sim, namespace: ai, labels: {app: llm}}
spec: {address: 127.0.0.1}
---
apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata: {name: llm, namespace: ai}
spec:
  selector: {matchLabels: {app: llm}}
  targetPorts:
%s
`, strings.Join(ports, "\n"))
	if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	l := startExtProc(t, true, func(ctx context.Context, f *extprocFlags) error {
		f.metricsEnabled = true
		return runEPP(ctx, f, &eppFlags{configFile: path, poolName: "llm", poolNamespace: "ai"})
	})
	return l, fleet
}

func TestEPPCommand_ServesThePoolOverTLS(t *testing.T) {
	l, fleet := startSimEPP(t)
	health := dial(t, l.health, false)
	for _, svc := range []string{"", "liveness"} {
		if st := healthStatus(t, health, svc); st != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("%q: %v", svc, st)
		}
	}
	waitServing(t, health, "readiness")
	waitServing(t, health, extproc.ServiceName)

	conn := dial(t, l.grpc, true)
	body := []byte(`{"model":"` + demoModel + `","messages":[{"role":"user","content":"hi"}]}`)
	res, err := envoytest.Exchange(context.Background(), conn, &envoytest.Request{
		Headers: map[string]string{":method": "POST", ":path": "/v1/chat/completions"}, Body: body,
	}, &envoytest.Response{Status: 200, Headers: map[string]string{"content-type": "application/json"}, Chunks: [][]byte{[]byte(`{"usage":{"prompt_tokens":4,"completion_tokens":2}}`)}})
	if err != nil {
		t.Fatal(err)
	}
	dest := res.RequestHeaders[extproc.HeaderDestinationEndpoint]
	if first, _, _ := strings.Cut(dest, ","); first != fleet.Addrs()[0] && first != fleet.Addrs()[1] {
		t.Fatalf("destination %q is not a replica of %v", dest, fleet.Addrs())
	}

	resp, err := http.Get("http://" + l.metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	text, _ := io.ReadAll(resp.Body)
	if !strings.Contains(string(text), `igw_tokens_total{model="`+demoModel+`",pool="ai/llm",type="output"} 2`) {
		t.Errorf("metrics lack the response's usage:\n%s", text)
	}
}

func TestEPPCommand_UnknownPool(t *testing.T) {
	path := filepath.Join(t.TempDir(), "igw.yaml")
	yaml := "apiVersion: igw.dev/v1alpha1\nkind: ModelServer\nmetadata: {name: s, labels: {app: a}}\nspec: {address: 127.0.0.1}\n---\n" +
		"apiVersion: inference.networking.k8s.io/v1\nkind: InferencePool\nmetadata: {name: a}\nspec:\n  selector: {matchLabels: {app: a}}\n  targetPorts: [{number: 1}]\n"
	if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	f := &extprocFlags{bodyMode: "FULL_DUPLEX_STREAMED", logLevel: "warn"}
	err := runEPP(context.Background(), f, &eppFlags{configFile: path, poolName: "b", poolNamespace: "default"})
	if err == nil || !strings.Contains(err.Error(), "no InferencePool default/b") {
		t.Fatalf("error %v", err)
	}
}

func TestBBRCommand_SetsHeadersAndReloadsAdapters(t *testing.T) {
	path := filepath.Join(t.TempDir(), "adapters.yaml")
	if err := os.WriteFile(path, []byte("- baseModel: base\n  adapters: [a1]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	l := startExtProc(t, false, func(ctx context.Context, f *extprocFlags) error { return runBBR(ctx, f, path, "", &kubeFlags{}, true) })
	waitServing(t, dial(t, l.health, false), "readiness")
	conn := dial(t, l.grpc, false)
	base := func(model string) (string, int) {
		res, err := envoytest.Exchange(context.Background(), conn, &envoytest.Request{
			Headers: map[string]string{":method": "POST", ":path": "/v1/completions"}, Body: []byte(`{"model":"` + model + `","prompt":"x"}`),
		}, nil)
		if err != nil {
			t.Fatal(err)
		}
		return res.RequestHeaders[extproc.HeaderBaseModelName], res.Status()
	}
	if b, _ := base("a1"); b != "base" {
		t.Fatalf("base of a1: %q", b)
	}
	if err := os.WriteFile(path, []byte("- baseModel: base\n  adapters: [a1, a2-new]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for b, _ := base("a2-new"); b != "base"; b, _ = base("a2-new") {
		if time.Now().After(deadline) {
			t.Fatal("adapter map not reloaded")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, st := base(""); st != http.StatusBadRequest {
		t.Errorf("empty model: status %d, want 400", st)
	}
}

func TestEPPCommand_KubernetesModeFlagErrors(t *testing.T) {
	dir := t.TempDir()
	serversOnly := filepath.Join(dir, "servers.yaml")
	if err := os.WriteFile(serversOnly, []byte("apiVersion: igw.dev/v1alpha1\nkind: ModelServer\nmetadata: {name: s, labels: {app: a}}\nspec: {address: 127.0.0.1}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		e    eppFlags
		want string
	}{
		{"no pool name", eppFlags{}, "--pool-name is required"},
		{"selector without ports", eppFlags{poolName: "p", endpointSelector: "app=a"}, "go together"},
		{"ports without selector", eppFlags{poolName: "p", endpointTargetPorts: []int32{8000}}, "go together"},
		{"bad port", eppFlags{poolName: "p", endpointSelector: "app=a", endpointTargetPorts: []int32{70000}}, "not a port number"},
		{"bad selector", eppFlags{poolName: "p", endpointSelector: "app", endpointTargetPorts: []int32{8000}}, "--endpoint-selector"},
		{"standalone kinds without a pool", eppFlags{poolName: "p", configFile: serversOnly}, "may hold only an EndpointPickerConfig"},
		{"missing kubeconfig", eppFlags{poolName: "p", kube: kubeFlags{kubeconfig: filepath.Join(dir, "none")}}, "kubeconfig"},
	} {
		f := &extprocFlags{bodyMode: "FULL_DUPLEX_STREAMED", logLevel: "warn"}
		tc.e.poolNamespace = "default"
		err := runEPP(context.Background(), f, &tc.e)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one containing %q", tc.name, err, tc.want)
		}
	}
}

// TestBBRCommand_SecureHealthServesHealthOverTLS: by default the health
// port is plaintext (Kubernetes' gRPC probes), with --secure-health it
// speaks TLS with the ext_proc port's certificate and refuses plaintext.
func TestBBRCommand_SecureHealthServesHealthOverTLS(t *testing.T) {
	path := filepath.Join(t.TempDir(), "adapters.yaml")
	if err := os.WriteFile(path, []byte("- baseModel: base\n  adapters: [a1]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	l := startExtProc(t, true, func(ctx context.Context, f *extprocFlags) error {
		f.secureHealth = true
		return runBBR(ctx, f, path, "", &kubeFlags{}, true)
	})
	waitServing(t, dial(t, l.health, true), "readiness")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if _, err := healthpb.NewHealthClient(dial(t, l.health, false)).Check(ctx, &healthpb.HealthCheckRequest{}); err == nil {
		t.Fatal("a plaintext health check succeeded on a TLS health port")
	}
}
