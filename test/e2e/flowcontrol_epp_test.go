package e2e

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/igw-dev/igw/pkg/engine"
	"github.com/igw-dev/igw/pkg/extproc"
	"github.com/igw-dev/igw/pkg/extproc/envoytest"
	"github.com/igw-dev/igw/pkg/sim"
)

// Flow-control outcomes of igw epp: the same runtime `igw epp` builds
// (PoolRuntime, Picker, gRPC server) in process, driven through the
// Envoy-shaped client. The replica is saturated by requests sent to it
// directly, as other gateways' traffic would; the picker sees it in its
// scrapes.

// startEPP serves the only pool of raw over ext_proc on loopback and
// returns a connection to it and the runtime.
func startEPP(t *testing.T, raw []byte) (*grpc.ClientConn, *engine.Engine) {
	t.Helper()
	cfg, err := schema.Parse("e2e.yaml", raw)
	if err != nil {
		t.Fatalf("configuration:\n%s\n%v", raw, err)
	}
	rt, err := engine.New(cfg, engine.Options{Pool: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan struct{})
	go func() { defer close(ran); _ = rt.Run(ctx) }()
	picker, err := extproc.NewPicker(extproc.PickerOptions{Director: rt.Director(), Pool: rt.Pool()})
	if err != nil {
		t.Fatal(err)
	}
	srv := extproc.NewGRPCServer(picker, 0, nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Close()
		srv.Stop()
		cancel()
		<-ran
	})
	return conn, rt
}

// eppExchange sends one chat request through the picker with headers.
func eppExchange(t *testing.T, conn *grpc.ClientConn, headers map[string]string) *envoytest.Result {
	t.Helper()
	h := map[string]string{":method": "POST", ":path": "/v1/chat/completions", ":authority": "igw", "content-type": "application/json"}
	for k, v := range headers {
		h[k] = v
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := envoytest.Exchange(ctx, conn, &envoytest.Request{Headers: h, Body: chat{Model: testModel, User: "hi", MaxTokens: 4}.body()},
		&envoytest.Response{Status: 200, Headers: map[string]string{"content-type": "application/json"}, Chunks: [][]byte{[]byte(`{"usage":{"prompt_tokens":4,"completion_tokens":4}}`)}})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func TestFlowControlEPP(t *testing.T) {
	f := startFleet(t, 1, func(c *sim.Config) { c.MaxNumSeqs, c.TimeScale = 1, 1 })
	raw := renderConfig(t, gatewaySpec{
		Pools: []poolSpec{{Name: flowPool, Model: testModel, Addrs: f.Addrs()}},
		Extra: []string{flowPickerDoc("400ms"), objectiveDoc("sheddable", flowPool, -1)},
	})
	conn, rt := startEPP(t, raw)
	eventually(t, 10*time.Second, func() error {
		if p := rt.Store().Pool(rt.Pool()); p == nil || len(p.Endpoints) != 1 || p.Endpoints[0].Metrics() == nil || !p.Endpoints[0].Ready() {
			return fmt.Errorf("pool %s not scraped yet", rt.Pool())
		}
		return nil
	})

	// Headroom: straight through to the replica.
	res := eppExchange(t, conn, nil)
	if res.Immediate != nil {
		t.Fatalf("idle pool answered %d %s", res.Status(), res.Immediate.GetBody())
	}
	if got := res.RequestHeaders[extproc.HeaderDestinationEndpoint]; got != f.Addrs()[0] {
		t.Fatalf("destination %q, want %s", got, f.Addrs()[0])
	}

	// Saturate the replica directly: one request runs, one waits.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := newClient()
	direct := "http://" + f.Addrs()[0] + "/v1/chat/completions"
	for i := range 2 {
		go post(ctx, c, direct, longChat(i, 2000), nil)
	}
	eventually(t, 10*time.Second, func() error {
		m := rt.Store().Pool(rt.Pool()).Endpoints[0].Metrics()
		if m == nil || m.WaitingQueueSize < 1 {
			return fmt.Errorf("replica not saturated yet: %+v", m)
		}
		return nil
	})

	res = eppExchange(t, conn, map[string]string{"x-gateway-inference-objective": "sheddable"})
	if res.Status() != http.StatusTooManyRequests || res.ImmediateHeader("x-gateway-request-dropped-reason") != "rejected-saturated" {
		t.Errorf("sheddable while saturated: %d reason %q, want 429 rejected-saturated", res.Status(), res.ImmediateHeader("x-gateway-request-dropped-reason"))
	}

	start := time.Now()
	res = eppExchange(t, conn, nil)
	if res.Status() != http.StatusTooManyRequests || res.ImmediateHeader("x-gateway-request-dropped-reason") != "rejected-ttl-expired" {
		t.Errorf("queued past its TTL: %d reason %q, want 429 rejected-ttl-expired", res.Status(), res.ImmediateHeader("x-gateway-request-dropped-reason"))
	}
	if waited := time.Since(start); waited < 400*time.Millisecond {
		t.Errorf("answered after %v, before the 400ms TTL", waited)
	}
}

func TestFlowControlEPPPoolWithoutEndpoints(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	conn, _ := startEPP(t, renderConfig(t, gatewaySpec{Pools: []poolSpec{{Name: flowPool, Model: testModel, Addrs: []string{dead}}}}))
	res := eppExchange(t, conn, nil)
	if res.Status() != http.StatusServiceUnavailable || res.ImmediateHeader("x-gateway-request-dropped-reason") != "rejected-no-endpoints" {
		t.Errorf("pool without endpoints: %d reason %q, want 503 rejected-no-endpoints", res.Status(), res.ImmediateHeader("x-gateway-request-dropped-reason"))
	}
}
