package extproc_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/igw-dev/igw/pkg/extproc"
)

// TestClient_PicksRewritesAndReleases drives the real picker through the
// client: a decision among the fleet's endpoints, the rewritten body for an
// aliased model (a body over several chunks), and the response phase that
// releases the in-flight count.
func TestClient_PicksRewritesAndReleases(t *testing.T) {
	e := newPickerEnv(t, envOptions{})
	c := extproc.NewClient(e.conn, 5*time.Second)
	body := chatRequest(alias, strings.Repeat("long prompt ", 20000), false) // ~240 KB: 4 chunks
	x, err := c.Pick(context.Background(), &extproc.PickRequest{Headers: chatHeaders(), Body: body})
	if err != nil {
		t.Fatal(err)
	}
	if x.Immediate != nil {
		t.Fatalf("rejected: %d %s", x.Immediate.Status, x.Immediate.Body)
	}
	if len(x.Endpoints) == 0 || !slices.Contains(e.addrs, x.Endpoints[0]) {
		t.Fatalf("endpoints %v, want the fleet's %v", x.Endpoints, e.addrs)
	}
	if got := x.SetHeaders[extproc.HeaderDestinationEndpoint]; got != strings.Join(x.Endpoints, ",") {
		t.Errorf("destination header %q, endpoints %v", got, x.Endpoints)
	}
	var parsed struct{ Model string }
	if err := json.Unmarshal(x.Body, &parsed); err != nil || parsed.Model != baseModel {
		t.Fatalf("forwarded body model %q (%v), want the rewrite %q", parsed.Model, err, baseModel)
	}
	if n := e.inFlight(); n != 1 {
		t.Errorf("in flight during the request: %d, want 1", n)
	}

	// Forward to the chosen endpoint and mirror the response, chunk by chunk.
	resp, err := http.Post("http://"+x.Endpoints[0]+"/v1/chat/completions", "application/json", bytes.NewReader(x.Body))
	if err != nil {
		t.Fatal(err)
	}
	x.ResponseHeaders(resp.StatusCode, map[string]string{"content-type": resp.Header.Get("Content-Type")}, x.Endpoints[0], false)
	buf := make([]byte, 64)
	for {
		n, err := resp.Body.Read(buf)
		x.ResponseBody(buf[:n], err != nil)
		if err != nil {
			break
		}
	}
	resp.Body.Close()
	x.Close()
	select {
	case <-x.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the response phase did not end")
	}
	waitFor(t, "in-flight released", func() bool { return e.inFlight() == 0 })
}

// TestClient_ImmediateResponse: a refusal comes back as status, headers and
// an OpenAI-style body.
func TestClient_ImmediateResponse(t *testing.T) {
	e := newPickerEnv(t, envOptions{replicas: 1})
	x, err := extproc.NewClient(e.conn, 0).Pick(context.Background(), &extproc.PickRequest{Headers: chatHeaders(), Body: []byte(`{"messages":[]}`)})
	if err != nil {
		t.Fatal(err)
	}
	if x.Immediate == nil || x.Immediate.Status != http.StatusBadRequest || !bytes.Contains(x.Immediate.Body, []byte(`"error"`)) {
		t.Fatalf("want a 400 with an OpenAI error, got %+v", x.Immediate)
	}
	x.Close()
}

// TestClient_SubsetHintEmptyIs503: an empty subset hint leaves no
// candidate.
func TestClient_SubsetHintEmptyIs503(t *testing.T) {
	e := newPickerEnv(t, envOptions{replicas: 1})
	x, err := extproc.NewClient(e.conn, 0).Pick(context.Background(), &extproc.PickRequest{Headers: chatHeaders(), Body: chatRequest(baseModel, "hi", false), Subset: []string{}})
	if err != nil {
		t.Fatal(err)
	}
	if x.Immediate == nil || x.Immediate.Status != http.StatusServiceUnavailable {
		t.Fatalf("want 503, got %+v", x.Immediate)
	}
}

// TestClient_AbandonedResponseReleases: a response that never completes
// (client gone) still releases the picker's in-flight count on Close.
func TestClient_AbandonedResponseReleases(t *testing.T) {
	e := newPickerEnv(t, envOptions{replicas: 1})
	x, err := extproc.NewClient(e.conn, 0).Pick(context.Background(), &extproc.PickRequest{Headers: chatHeaders(), Body: chatRequest(baseModel, "hi", true)})
	if err != nil || x.Immediate != nil {
		t.Fatalf("pick: %v %+v", err, x)
	}
	x.ResponseHeaders(200, map[string]string{"content-type": "text/event-stream"}, x.Endpoints[0], false)
	x.ResponseBody([]byte("data: {}\n\n"), false)
	x.Close()
	waitFor(t, "in-flight released", func() bool { return e.inFlight() == 0 })
}

// silentPicker accepts streams and never answers.
type silentPicker struct {
	extprocv3.UnimplementedExternalProcessorServer
}

func (silentPicker) Process(s extprocv3.ExternalProcessor_ProcessServer) error {
	<-s.Context().Done()
	return nil
}

// TestClient_TimeoutAndUnreachable: a picker that does not answer, and one
// that is not there, are errors within the timeout, not hangs.
func TestClient_TimeoutAndUnreachable(t *testing.T) {
	gs := grpc.NewServer()
	extprocv3.RegisterExternalProcessorServer(gs, silentPicker{})
	conn := serveGRPC(t, gs)
	start := time.Now()
	if _, err := extproc.NewClient(conn, 100*time.Millisecond).Pick(context.Background(), &extproc.PickRequest{Headers: chatHeaders(), Body: []byte(`{}`)}); err == nil {
		t.Fatal("a silent picker gave a decision")
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("timeout of 100ms took %s", d)
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	dead, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer dead.Close()
	if _, err := extproc.NewClient(dead, time.Second).Pick(context.Background(), &extproc.PickRequest{Headers: chatHeaders(), Body: []byte(`{}`)}); err == nil {
		t.Fatal("an unreachable picker gave a decision")
	}
}
