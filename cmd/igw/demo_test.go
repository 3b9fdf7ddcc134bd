package main

import (
	"bytes"
	"context"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer is a bytes.Buffer safe to read while the demo writes to it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// freePortRange finds n consecutive ports on 127.0.0.1 that are free now.
func freePortRange(t *testing.T, n int) int {
	t.Helper()
	for range 50 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		base := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		ok := base+n <= 65535
		for i := 1; ok && i < n; i++ {
			l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(base+i)))
			if err != nil {
				ok = false
				break
			}
			l.Close()
		}
		if ok {
			return base
		}
	}
	t.Fatal("no free port range")
	return 0
}

func TestDemo_AnswersThroughTheGateway(t *testing.T) {
	base := freePortRange(t, 4)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := &syncBuffer{}
	done := make(chan error, 1)
	go func() {
		done <- runDemo(ctx, out, demoOptions{replicas: 4, simPort: base, address: "127.0.0.1:0", admin: "127.0.0.1:0", timeScale: 20})
	}()
	deadline := time.After(20 * time.Second)
	for !strings.Contains(out.String(), "Serving until Ctrl-C") {
		select {
		case err := <-done:
			t.Fatalf("demo ended early: %v\n%s", err, out.String())
		case <-deadline:
			t.Fatalf("demo did not answer:\n%s", out.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	s := out.String()
	if !strings.Contains(s, "Answer (200 OK)") || !strings.Contains(s, `"object":"chat.completion"`) {
		t.Fatalf("demo output:\n%s", s)
	}
	if !strings.Contains(s, "The picker chose 127.0.0.1:") {
		t.Fatalf("no served endpoint in:\n%s", s)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestDemo_TakenDefaultPortsAreReplacedAndSaid: the demo's default ports
// taken by something else are replaced by free ones, and the demo says so;
// a taken port given with its flag is an error naming the flag.
func TestDemo_TakenDefaultPortsAreReplacedAndSaid(t *testing.T) {
	base := freePortRange(t, 2)
	sims, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(base))
	if err != nil {
		t.Fatal(err)
	}
	defer sims.Close()
	api, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer api.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := &syncBuffer{}
	done := make(chan error, 1)
	go func() {
		done <- runDemo(ctx, out, demoOptions{replicas: 2, simPort: base, address: api.Addr().String(), admin: "127.0.0.1:0", timeScale: 20})
	}()
	deadline := time.After(20 * time.Second)
	for !strings.Contains(out.String(), "Serving until Ctrl-C") {
		select {
		case err := <-done:
			t.Fatalf("demo ended early: %v\n%s", err, out.String())
		case <-deadline:
			t.Fatalf("demo did not answer:\n%s", out.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	s := out.String()
	for _, want := range []string{"are taken: the simulated replicas listen on free ports instead (choose with --sim-port)",
		api.Addr().String() + " is taken: the gateway's API listens on a free port instead (choose with --address)", "Answer (200 OK)"} {
		if !strings.Contains(s, want) {
			t.Errorf("no %q in:\n%s", want, s)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	err = runDemo(context.Background(), out, demoOptions{replicas: 2, simPort: base, address: "127.0.0.1:0", admin: "127.0.0.1:0",
		timeScale: 20, explicit: map[string]bool{"sim-port": true}})
	if err == nil || !strings.Contains(err.Error(), "--sim-port") {
		t.Fatalf("a taken --sim-port: %v", err)
	}
}
