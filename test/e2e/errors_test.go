package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/igw-dev/igw/pkg/sim"
)

// TestGateway_BadInputGetsOpenAIErrorsAndServingContinues: malformed JSON
// and a missing model are 400, an unknown model 404, a body over
// maxRequestBodySize 413 (announced by Content-Length or not), an unknown
// path 404 — each with an OpenAI-shaped JSON error — and the gateway
// serves a good request afterwards.
func TestGateway_BadInputGetsOpenAIErrorsAndServingContinues(t *testing.T) {
	t.Parallel()
	fleet := startFleet(t, 2, nil)
	gw := startGateway(t, renderConfig(t, gatewaySpec{MaxBody: "1Ki", Pools: []poolSpec{{Name: "pool", Model: testModel, Addrs: fleet.Addrs()}}}))
	c := newClient()
	ctx := withTimeout(t, 30*time.Second)
	url := chatURL(gw.Addr())

	big := chat{Model: testModel, User: strings.Repeat("long ", 400), MaxTokens: 4}.body() // 2 KB
	cases := []struct {
		name string
		body []byte
		want int
	}{
		{"malformed JSON", []byte(`{"model": "` + testModel + `", "messages": [`), http.StatusBadRequest},
		{"not an object", []byte(`["model"]`), http.StatusBadRequest},
		{"missing model", []byte(`{"messages":[{"role":"user","content":"hi"}],"max_tokens":4}`), http.StatusBadRequest},
		{"unknown model", chat{Model: "no-such-model", User: "hi", MaxTokens: 4}.body(), http.StatusNotFound},
		{"body over the limit", big, http.StatusRequestEntityTooLarge},
	}
	for _, tc := range cases {
		r := post(ctx, c, url, tc.body, nil)
		checkOpenAIError(t, tc.name, r, tc.want)
		if r.Served() != "" {
			t.Errorf("%s: reached model server %s", tc.name, r.Served())
		}
	}

	// A body over the limit without Content-Length (chunked) is cut off
	// while it is read.
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, io.MultiReader(bytes.NewReader(big)))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if resp, err := c.Do(req); err != nil {
		t.Errorf("chunked body over the limit: %v", err)
	} else {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		checkOpenAIError(t, "chunked body over the limit", result{Status: resp.StatusCode, Header: resp.Header, Body: b}, http.StatusRequestEntityTooLarge)
	}

	resp, err := c.Get("http://" + gw.Addr() + "/v1/no-such-api")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	checkOpenAIError(t, "unknown path", result{Status: resp.StatusCode, Header: resp.Header, Body: b}, http.StatusNotFound)

	eventually(t, 5*time.Second, func() error {
		if r := post(ctx, c, url, chat{Model: testModel, User: "hi", MaxTokens: 4}.body(), nil); r.Status != http.StatusOK {
			return fmt.Errorf("good request after the bad ones: %s", r)
		}
		return nil
	})
}

// TestGateway_SheddableRequestRejectedWhileSaturated: while every replica
// has five or more requests waiting, a request of a negative-priority
// objective gets 429 with x-gateway-request-dropped-reason:
// rejected-saturated (and Retry-After), a request of a positive-priority
// objective is still admitted, and once the queues drain the sheddable
// objective is served again.
func TestGateway_SheddableRequestRejectedWhileSaturated(t *testing.T) {
	t.Parallel()
	fleet := startFleet(t, 2, func(c *sim.Config) { c.MaxNumSeqs, c.TimeScale = 1, 1 })
	gw := startGateway(t, renderConfig(t, gatewaySpec{
		Pools: []poolSpec{{Name: "pool", Model: testModel, Addrs: fleet.Addrs()}},
		Extra: []string{objectiveDoc("batch", "pool", -1), objectiveDoc("interactive", "pool", 10)},
	}))
	c := newClient()
	ctx := withTimeout(t, 60*time.Second)
	url := chatURL(gw.Addr())
	batch := map[string]string{hdrObjective: "batch"}

	// Saturate: 7 long requests straight to each replica (1 runs, 6 wait).
	load, stopLoad := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() { stopLoad(); wg.Wait() }()
	for _, a := range fleet.Addrs() {
		for i := range 7 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				post(load, c, chatURL(a), chat{Model: testModel, User: fmt.Sprintf("Write a long essay %d.", i), MaxTokens: 4000, IgnoreEOS: true}.body(), nil)
			}()
		}
	}
	// Wait until the gateway itself sees every replica saturated.
	eventually(t, 10*time.Second, func() error {
		for _, e := range gw.Director().Store().Pool("default/pool").Endpoints {
			if m := e.Metrics(); m == nil || m.WaitingQueueSize < 5 {
				return fmt.Errorf("%s: gateway's metrics %+v, want >= 5 waiting", e.Address, m)
			}
		}
		return nil
	})

	// The first sheddable request is rejected; the poll only absorbs a
	// snapshot that went stale in between on a loaded machine.
	var r result
	eventually(t, 10*time.Second, func() error {
		attempt, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		r = post(attempt, c, url, chat{Model: testModel, User: "Classify this.", MaxTokens: 4}.body(), batch)
		if r.Status != http.StatusTooManyRequests {
			return fmt.Errorf("sheddable request while saturated: %s, want 429", r)
		}
		return nil
	})
	checkOpenAIError(t, "sheddable request while saturated", r, http.StatusTooManyRequests)
	if got := r.Header.Get(hdrDropped); got != "rejected-saturated" {
		t.Errorf("%s = %q, want rejected-saturated", hdrDropped, got)
	}
	if r.Header.Get("Retry-After") == "" {
		t.Errorf("429 without Retry-After")
	}

	// A positive-priority request is admitted: it is not answered 429 at
	// once (it queues behind the long requests; we stop waiting after 1 s).
	short, cancel := context.WithTimeout(ctx, time.Second)
	ri := post(short, c, url, chat{Model: testModel, User: "Urgent.", MaxTokens: 4}.body(), map[string]string{hdrObjective: "interactive"})
	cancel()
	if ri.Status == http.StatusTooManyRequests {
		t.Errorf("interactive request while saturated: %s, want it admitted", ri)
	}

	stopLoad()
	wg.Wait()
	eventually(t, 10*time.Second, func() error {
		r := post(ctx, c, url, chat{Model: testModel, User: "Classify this.", MaxTokens: 4}.body(), batch)
		if r.Status != http.StatusOK {
			return fmt.Errorf("sheddable request after the load: %s", r)
		}
		return nil
	})
}

// TestGateway_NoReadyEndpointAnswers503: when every replica of the pool is
// down the gateway answers 503 with x-gateway-request-dropped-reason:
// rejected-no-endpoints and an OpenAI error, and it serves again as soon as
// a replica is back.
func TestGateway_NoReadyEndpointAnswers503(t *testing.T) {
	t.Parallel()
	// One fleet per replica, so each can be stopped and restarted alone.
	f0, f1 := startFleet(t, 1, nil), startFleet(t, 1, nil)
	addrs := []string{f0.Addrs()[0], f1.Addrs()[0]}
	gw := startGateway(t, onePool(t, addrs))
	c := newClient()
	ctx := withTimeout(t, 60*time.Second)
	url := chatURL(gw.Addr())
	body := chat{Model: testModel, User: "hi", MaxTokens: 4}.body()

	for _, f := range []*sim.Fleet{f0, f1} {
		stop, cancel := context.WithTimeout(ctx, 5*time.Second)
		_ = f.Close(stop)
		cancel()
	}
	var r result
	eventually(t, 10*time.Second, func() error {
		r = post(ctx, c, url, body, nil)
		if r.Status != http.StatusServiceUnavailable || r.Header.Get(hdrDropped) != "rejected-no-endpoints" {
			return fmt.Errorf("got %s (%s=%q), want 503 rejected-no-endpoints", r, hdrDropped, r.Header.Get(hdrDropped))
		}
		return nil
	})
	checkOpenAIError(t, "no ready endpoint", r, http.StatusServiceUnavailable)

	// Bring replica 0 back on its port; the gateway serves again.
	var back *sim.Fleet
	port := addrs[0][strings.LastIndexByte(addrs[0], ':')+1:]
	eventually(t, 5*time.Second, func() error {
		var err error
		back, err = startFleetOnPort(t, port)
		return err
	})
	eventually(t, 10*time.Second, func() error {
		r := post(ctx, c, url, body, nil)
		if r.Status != http.StatusOK {
			return fmt.Errorf("after the replica came back: %s", r)
		}
		if r.Served() != back.Addrs()[0] {
			return fmt.Errorf("served by %q, want %s", r.Served(), back.Addrs()[0])
		}
		return nil
	})
}

// startFleetOnPort starts one replica of testModel on 127.0.0.1:port,
// closed when the test ends.
func startFleetOnPort(t *testing.T, port string) (*sim.Fleet, error) {
	cfg := sim.DefaultConfig()
	cfg.Address, cfg.Replicas, cfg.Model, cfg.TimeScale = "127.0.0.1", 1, testModel, 20
	if _, err := fmt.Sscan(port, &cfg.Port); err != nil {
		return nil, err
	}
	f, err := sim.StartFleet(cfg, nil)
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = f.Close(ctx)
	})
	return f, nil
}

// TestGateway_ClientCannotChooseTheEndpoint: routing headers sent by the
// client (x-gateway-destination-endpoint, its subset hint, the served
// header) do not steer requests: naming a server outside the pool never
// reaches it, and naming a pool member does not pull requests whose prefix
// is cached on another member.
func TestGateway_ClientCannotChooseTheEndpoint(t *testing.T) {
	t.Parallel()
	fleet := startFleet(t, 4, nil)
	outsider := startFleet(t, 1, nil).Addrs()[0] // same model, not in the pool
	gw := startGateway(t, onePool(t, fleet.Addrs()))
	c := newClient()
	ctx := withTimeout(t, 30*time.Second)
	url := chatURL(gw.Addr())
	var stale staleRejections
	defer stale.report(t)
	steer := func(addr string) map[string]string {
		return map[string]string{hdrDestination: addr, hdrSubset: addr, hdrServed: addr}
	}

	for i := range 10 {
		r := postTolerant(ctx, c, url, chat{Model: testModel, User: fmt.Sprintf("Hello %d.", i), MaxTokens: 2}.body(), steer(outsider), &stale)
		if r.Status != http.StatusOK || r.Served() == outsider || !slices.Contains(fleet.Addrs(), r.Served()) {
			t.Errorf("request naming %s (outside the pool): %s served by %q, want 200 from the pool", outsider, r, r.Served())
		}
	}
	if n := metricSum(scrape(t, c, "http://"+outsider+"/metrics"), "vllm:request_success_total", nil); n != 0 {
		t.Errorf("the server outside the pool finished %v requests", n)
	}

	system := text(3, 6000)
	warm := postTolerant(ctx, c, url, chat{Model: testModel, System: system, User: "Warm up.", MaxTokens: 2}.body(), nil, &stale)
	if warm.Status != http.StatusOK {
		t.Fatalf("warm-up: %s", warm)
	}
	owner := warm.Served()
	other := fleet.Addrs()[0]
	if other == owner {
		other = fleet.Addrs()[1]
	}
	const n = 20
	got := counts{}
	for i := range n {
		r := postTolerant(ctx, c, url, chat{Model: testModel, System: system, User: fmt.Sprintf("Question %d?", i), MaxTokens: 2}.body(), steer(other), &stale)
		if r.Status != http.StatusOK {
			t.Fatalf("request %d: %s", i, r)
		}
		got[r.Served()]++
	}
	t.Logf("prefix cached on %s, client asked for %s: %v", owner, other, got)
	// Obeying the header would send all 20 to other.
	if got[other] > n/10 || got[owner] < n*8/10 {
		t.Errorf("requests naming %s with a prefix cached on %s went to %v; want >= 80%% on %s", other, owner, got, owner)
	}
}
