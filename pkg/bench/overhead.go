package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// OverheadOptions configure MeasureOverhead: the same requests sent to a
// gateway and straight to the model server behind it, to see what the
// gateway adds.
type OverheadOptions struct {
	// Gateway and Direct are base URLs; requests go to URL +
	// "/v1/chat/completions".
	Gateway, Direct string
	// Bodies are complete streaming chat request bodies, sent in turn (the
	// i-th request of the run, whichever path it takes, sends
	// Bodies[i % len]).
	Bodies [][]byte
	// Concurrency is the number of requests in flight in a phase (a closed
	// loop: each finished request starts the next).
	Concurrency int
	// Requests bounds the measured requests per path; Block is how many
	// requests a phase sends to one path before the other path's turn.
	Requests, Block int
	// Duration bounds the measured run: no request starts after it (the
	// ones in flight finish, within Timeout).
	Duration time.Duration
	// Warmup requests are sent to each path first and not measured
	// (connections, the gateway's first scrapes of the server).
	Warmup int
	// Timeout bounds one request.
	Timeout time.Duration
	// Idle, if positive and Probe is set, is how long the gateway is
	// watched with no load before the run, to know what it spends without
	// requests (its scrapes of the model servers, the probe's reads).
	Idle time.Duration
	// Probe, if set, reads the gateway process's counters: at the start of
	// the idle window, at the start of the measured run and at its end.
	// Reading only at the run's ends (rather than around every gateway
	// phase) keeps the error of a coarse counter (/proc counts CPU in 10 ms
	// ticks) to one tick per run, and the probe's own cost (a /metrics
	// scrape allocates in the gateway) to one read per run.
	Probe func(context.Context) (ProcessReading, error)
	// HTTPClient, if set, replaces the two clients built on NewTransport
	// (one per path, so neither reuses the other's connections).
	HTTPClient *http.Client
}

// ProcessReading is one read of a process's cumulative counters.
type ProcessReading struct {
	// CPU is the CPU time (user + system) used so far, if HasCPU.
	CPU    time.Duration
	HasCPU bool
	// AllocBytes is the heap bytes allocated so far, if HasAlloc.
	AllocBytes float64
	HasAlloc   bool
}

// OverheadPath is what one path measured.
type OverheadPath struct {
	// Sent counts requests started; OK those answered 200 with a stream
	// that ended in [DONE]; Failed the rest.
	Sent   int `json:"sent"`
	OK     int `json:"ok"`
	Failed int `json:"failed"`
	// TTFB is the time from sending a request to its first response body
	// byte (the first SSE event: for a chat stream, the role chunk), E2E to
	// the stream's end, in seconds, over the OK requests.
	TTFB       Dist   `json:"ttfbSeconds"`
	E2E        Dist   `json:"e2eSeconds"`
	FirstError string `json:"firstError,omitempty"`
}

// OverheadResult is MeasureOverhead's answer.
type OverheadResult struct {
	Gateway OverheadPath `json:"gateway"`
	Direct  OverheadPath `json:"direct"`
	// Phases counts the measured phases of both paths.
	Phases int `json:"phases"`
	// AddedTTFB is the gateway's TTFB percentile minus the direct path's,
	// in seconds (a difference of percentiles: the paths' requests are not
	// paired).
	AddedTTFB Added `json:"addedTTFBSeconds"`
	// Elapsed is the measured run's wall time, GatewayTime the part of it
	// spent in gateway phases. GatewayCPU and GatewayAllocBytes are what
	// the gateway process used over the whole run (its idle work in the
	// direct phases included), if HasCPU and HasAlloc;
	// IdleCPUPerSecond and IdleAllocBytesPerSecond the rates it used with
	// no load, over the Idle window.
	Elapsed                 time.Duration `json:"elapsedNanos"`
	GatewayTime             time.Duration `json:"gatewayPhaseNanos"`
	GatewayCPU              time.Duration `json:"gatewayCPUNanos,omitempty"`
	GatewayAllocBytes       float64       `json:"gatewayAllocBytes,omitempty"`
	HasCPU                  bool          `json:"hasCPU"`
	HasAlloc                bool          `json:"hasAlloc"`
	IdleCPUPerSecond        time.Duration `json:"idleCPUNanosPerSecond,omitempty"`
	IdleAllocBytesPerSecond float64       `json:"idleAllocBytesPerSecond,omitempty"`
}

// Added is a distribution's difference between two paths, in seconds.
type Added struct {
	P50 float64 `json:"p50"`
	P90 float64 `json:"p90"`
	P99 float64 `json:"p99"`
}

// CPUPerRequest is the gateway's CPU time per request sent through it.
// Raw is what it used in the gateway phases (the run's total less its idle
// rate over the direct phases), background work in those phases included;
// net leaves its idle rate out of the gateway phases too.
func (r *OverheadResult) CPUPerRequest() (raw, net time.Duration) {
	if !r.HasCPU || r.Gateway.Sent == 0 {
		return 0, 0
	}
	n := time.Duration(r.Gateway.Sent)
	idle := func(d time.Duration) time.Duration { return time.Duration(float64(r.IdleCPUPerSecond) * d.Seconds()) }
	return max(0, r.GatewayCPU-idle(r.Elapsed-r.GatewayTime)) / n, max(0, r.GatewayCPU-idle(r.Elapsed)) / n
}

// AllocPerRequest is the gateway's heap allocation per request sent
// through it, raw and net as for CPUPerRequest.
func (r *OverheadResult) AllocPerRequest() (raw, net float64) {
	if !r.HasAlloc || r.Gateway.Sent == 0 {
		return 0, 0
	}
	n := float64(r.Gateway.Sent)
	idle := func(d time.Duration) float64 { return r.IdleAllocBytesPerSecond * d.Seconds() }
	return max(0, r.GatewayAllocBytes-idle(r.Elapsed-r.GatewayTime)) / n, max(0, r.GatewayAllocBytes-idle(r.Elapsed)) / n
}

// MeasureOverhead sends the same requests to o.Gateway and o.Direct in
// alternating phases of o.Block requests, gateway first, each phase a
// closed loop of o.Concurrency requests that finishes before the next
// begins. Alternating short phases rather than two long ones puts both
// paths under the same outside conditions (other work on the machine,
// garbage collection in the model server), which on a shared two-core
// machine move latencies more than the gateway does; finishing each phase
// keeps one path's requests from queueing behind the other's. The
// gateway's CPU and allocation are read over the whole run and its idle
// rate is taken off the direct phases (see CPUPerRequest).
func MeasureOverhead(ctx context.Context, o OverheadOptions) (*OverheadResult, error) {
	if o.Gateway == "" || o.Direct == "" || len(o.Bodies) == 0 || o.Concurrency < 1 || o.Requests < 1 || o.Block < 1 || o.Duration <= 0 {
		return nil, errors.New("overhead: need both URLs, bodies, and positive concurrency, requests, block and duration")
	}
	if o.Timeout <= 0 {
		o.Timeout = time.Minute
	}
	clients := [2]*http.Client{o.HTTPClient, o.HTTPClient}
	for i := range clients {
		if clients[i] == nil {
			t := NewTransport()
			defer t.CloseIdleConnections()
			clients[i] = &http.Client{Transport: t}
		}
	}
	paths := [2]*overheadPath{
		{url: strings.TrimRight(o.Gateway, "/") + "/v1/chat/completions", client: clients[0]},
		{url: strings.TrimRight(o.Direct, "/") + "/v1/chat/completions", client: clients[1]},
	}
	var next atomic.Int64 // request number, for the body
	if o.Warmup > 0 {
		for _, p := range paths {
			w := &overheadPath{url: p.url, client: p.client}
			if runPhase(ctx, w, &o, o.Warmup, &next, time.Time{}); w.ok == 0 {
				return nil, fmt.Errorf("overhead: warm-up of %s: no request succeeded (%d failed: %s)", p.url, w.failed, w.firstErr)
			}
		}
	}
	res := &OverheadResult{}
	var r0 ProcessReading
	if o.Probe != nil {
		var err error
		if r0, err = o.Probe(ctx); err != nil {
			return nil, err
		}
		if o.Idle > 0 {
			t0 := time.Now()
			select {
			case <-time.After(o.Idle):
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			r1, err := o.Probe(ctx)
			if err != nil {
				return nil, err
			}
			secs := time.Since(t0).Seconds()
			if r0.HasCPU && r1.HasCPU {
				res.IdleCPUPerSecond = time.Duration(float64(r1.CPU-r0.CPU) / secs)
			}
			if r0.HasAlloc && r1.HasAlloc {
				res.IdleAllocBytesPerSecond = (r1.AllocBytes - r0.AllocBytes) / secs
			}
			r0 = r1
		}
	}

	start := time.Now()
	deadline := start.Add(o.Duration)
	for turn := 0; ctx.Err() == nil && time.Now().Before(deadline); turn++ {
		i := turn % 2
		p := paths[i]
		n := min(o.Block, o.Requests-p.sent)
		if n <= 0 {
			if paths[1-i].sent >= o.Requests {
				break
			}
			continue
		}
		t0 := time.Now()
		runPhase(ctx, p, &o, n, &next, deadline)
		res.Phases++
		if i == 0 {
			res.GatewayTime += time.Since(t0)
		}
	}
	res.Elapsed = time.Since(start)
	if o.Probe != nil {
		r1, err := o.Probe(context.WithoutCancel(ctx))
		if err != nil {
			return nil, err
		}
		if res.HasCPU = r0.HasCPU && r1.HasCPU; res.HasCPU {
			res.GatewayCPU = r1.CPU - r0.CPU
		}
		if res.HasAlloc = r0.HasAlloc && r1.HasAlloc; res.HasAlloc {
			res.GatewayAllocBytes = r1.AllocBytes - r0.AllocBytes
		}
	}
	res.Gateway, res.Direct = paths[0].result(), paths[1].result()
	res.AddedTTFB = Added{
		P50: res.Gateway.TTFB.P50 - res.Direct.TTFB.P50,
		P90: res.Gateway.TTFB.P90 - res.Direct.TTFB.P90,
		P99: res.Gateway.TTFB.P99 - res.Direct.TTFB.P99,
	}
	return res, ctx.Err()
}

// overheadPath accumulates one path's measurements.
type overheadPath struct {
	url    string
	client *http.Client

	mu               sync.Mutex
	sent, ok, failed int
	ttfb, e2e        []float64
	firstErr         string
}

func (p *overheadPath) result() OverheadPath {
	return OverheadPath{Sent: p.sent, OK: p.ok, Failed: p.failed, TTFB: NewDist(p.ttfb), E2E: NewDist(p.e2e), FirstError: p.firstErr}
}

// runPhase sends n requests to p, o.Concurrency at a time, and returns when
// all have finished; none starts after deadline (unless it is zero).
func runPhase(ctx context.Context, p *overheadPath, o *OverheadOptions, n int, next *atomic.Int64, deadline time.Time) {
	var taken atomic.Int64
	var wg sync.WaitGroup
	for range min(o.Concurrency, n) {
		wg.Go(func() {
			for ctx.Err() == nil && taken.Add(1) <= int64(n) && (deadline.IsZero() || time.Now().Before(deadline)) {
				body := o.Bodies[int(next.Add(1)-1)%len(o.Bodies)]
				ttfb, e2e, err := sendStreaming(ctx, p.client, p.url, body, o.Timeout)
				p.mu.Lock()
				p.sent++
				if err != nil {
					p.failed++
					if p.firstErr == "" {
						p.firstErr = err.Error()
					}
				} else {
					p.ok++
					p.ttfb = append(p.ttfb, ttfb.Seconds())
					p.e2e = append(p.e2e, e2e.Seconds())
				}
				p.mu.Unlock()
			}
		})
	}
	wg.Wait()
}

// sendStreaming posts body to url and reads the response to its end. It
// returns the time to the first body byte and to the end; a status other
// than 200, or a stream that does not end with [DONE], is an error.
func sendStreaming(ctx context.Context, client *http.Client, url string, body []byte, timeout time.Duration) (ttfb, e2e time.Duration, err error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "text/event-stream")
	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, 0, fmt.Errorf("%s: %s", resp.Status, errorMessage(resp))
	}
	buf := make([]byte, 32<<10)
	var tail []byte
	for {
		n, rerr := resp.Body.Read(buf)
		if n > 0 {
			if ttfb == 0 {
				ttfb = time.Since(start)
			}
			tail = append(tail, buf[:n]...)
			if len(tail) > 64 {
				tail = append(tail[:0], tail[len(tail)-64:]...)
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return 0, 0, rerr
		}
	}
	e2e = time.Since(start)
	if !bytes.Contains(tail, []byte("[DONE]")) {
		return 0, 0, errors.New("stream ended without [DONE]")
	}
	return ttfb, e2e, nil
}
