package extproc_test

import (
	"bufio"
	"bytes"
	"context"
	"flag"
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
	"google.golang.org/grpc/credentials/insecure"

	"github.com/igw-dev/igw/pkg/engine"
	"github.com/igw-dev/igw/pkg/extproc"
	"github.com/igw-dev/igw/pkg/extproc/envoytest"
	"github.com/igw-dev/igw/pkg/sim"
)

var update = flag.Bool("update", false, "rewrite golden files")

const (
	baseModel = "meta-llama/Llama-3.1-8B-Instruct"
	alias     = "chat" // rewritten to baseModel by the test pool's InferenceModelRewrite
)

// poolYAML is the standalone configuration of the test pool: the fleet's
// replicas, a sheddable objective and a model rewrite.
const poolYAML = `apiVersion: igw.dev/v1alpha1
kind: ModelServer
metadata:
  name: sim
  labels: {app: llm}
spec:
  address: 127.0.0.1
  engine: vllm
---
apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata:
  name: llm
spec:
  selector:
    matchLabels: {app: llm}
  targetPorts:
%s
---
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceObjective
metadata:
  name: batch
spec:
  priority: -1
  poolRef: {name: llm}
---
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceModelRewrite
metadata:
  name: alias
spec:
  poolRef: {name: llm}
  rules:
  - matches:
    - model: {type: Exact, value: ` + alias + `}
    targets:
    - modelRewrite: ` + baseModel + `
`

// pickerEnv is a picker in front of a simulated fleet, served over
// loopback gRPC.
type pickerEnv struct {
	fleet *sim.Fleet
	rt    *engine.Engine
	conn  *grpc.ClientConn
	addrs []string
}

type envOptions struct {
	replicas int
	mode     extproc.BodyMode
	maxAge   time.Duration // of metrics (default: the datastore's)
}

func configFor(addrs []string) string {
	var ports strings.Builder
	for _, a := range addrs {
		_, p, _ := net.SplitHostPort(a)
		fmt.Fprintf(&ports, "  - number: %s\n", p)
	}
	return fmt.Sprintf(poolYAML, strings.TrimSuffix(ports.String(), "\n"))
}

func newPickerEnv(tb testing.TB, o envOptions) *pickerEnv {
	tb.Helper()
	if o.replicas == 0 {
		o.replicas = 3
	}
	scfg := sim.DefaultConfig()
	scfg.Port, scfg.Replicas, scfg.TimeScale, scfg.Model = 0, o.replicas, 20, baseModel
	fleet, err := sim.StartFleet(scfg, nil)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = fleet.Close(ctx)
	})
	cfg, err := engine.Schema().Parse("pool.yaml", []byte(configFor(fleet.Addrs())))
	if err != nil {
		tb.Fatal(err)
	}
	rt, err := engine.New(cfg, engine.Options{Pool: true, MetricsMaxAge: o.maxAge})
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = rt.Run(ctx) }()
	tb.Cleanup(func() { cancel(); <-done })

	p, err := extproc.NewPicker(extproc.PickerOptions{Director: rt.Director(), Pool: rt.Pool(), DefaultBodyMode: o.mode})
	if err != nil {
		tb.Fatal(err)
	}
	e := &pickerEnv{fleet: fleet, rt: rt, addrs: fleet.Addrs()}
	e.conn = serveGRPC(tb, extproc.NewGRPCServer(p, 0, nil))
	waitFor(tb, "every endpoint schedulable", func() bool { return schedulable(rt) == o.replicas })
	return e
}

// schedulable counts the pool's endpoints with fresh metrics.
func schedulable(rt *engine.Engine) int {
	n := 0
	for _, ep := range rt.Store().Pool(rt.Pool()).Endpoints {
		if ep.Ready() && ep.Metrics().Fresh(time.Now(), 200*time.Millisecond) {
			n++
		}
	}
	return n
}

// serveGRPC serves s on a loopback port and returns a client connection.
func serveGRPC(tb testing.TB, s *grpc.Server) *grpc.ClientConn {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	go func() { _ = s.Serve(ln) }()
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(32<<20)))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = conn.Close(); s.Stop() })
	return conn
}

func waitFor(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// inFlight sums the pool's in-flight counts.
func (e *pickerEnv) inFlight() int64 {
	var n int64
	for _, ep := range e.rt.Store().Pool(e.rt.Pool()).Endpoints {
		n += ep.InFlight()
	}
	return n
}

func chatRequest(model, content string, stream bool, extra ...string) []byte {
	s := fmt.Sprintf(`{"model":%q,"messages":[{"role":"user","content":%q}],"max_tokens":8`, model, content)
	if stream {
		s += `,"stream":true,"stream_options":{"include_usage":true}`
	}
	for _, x := range extra {
		s += "," + x
	}
	return []byte(s + "}")
}

func chatHeaders(extra ...string) map[string]string {
	h := map[string]string{":method": "POST", ":path": "/v1/chat/completions", ":authority": "gw", "content-type": "application/json"}
	for i := 0; i+1 < len(extra); i += 2 {
		h[extra[i]] = extra[i+1]
	}
	return h
}

// forward does what Envoy's ORIGINAL_DST cluster does with the decision:
// sends the forwarded request to the first endpoint in the destination
// header and returns the model server's response, its body cut into the
// chunks the reads returned.
func forward(tb testing.TB, res *envoytest.Result, path string) *envoytest.Response {
	tb.Helper()
	dest, _, _ := strings.Cut(res.RequestHeaders[extproc.HeaderDestinationEndpoint], ",")
	req, err := http.NewRequest(http.MethodPost, "http://"+dest+path, bytes.NewReader(res.Body))
	if err != nil {
		tb.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	out := &envoytest.Response{Status: resp.StatusCode, Headers: map[string]string{"content-type": resp.Header.Get("Content-Type")}}
	br := bufio.NewReaderSize(resp.Body, 64<<10)
	for {
		buf := make([]byte, 4096)
		n, err := br.Read(buf)
		if n > 0 {
			out.Chunks = append(out.Chunks, buf[:n])
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			tb.Fatal(err)
		}
	}
	return out
}

// golden compares got with testdata/<name>.golden, rewriting it under
// -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if string(want) != got {
		t.Errorf("%s differs from the golden file (run with -update after review):\n--- want\n%s\n--- got\n%s", path, want, got)
	}
}
