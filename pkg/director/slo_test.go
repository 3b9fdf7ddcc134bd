package director

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/igw-dev/igw/pkg/datastore"
	"github.com/igw-dev/igw/pkg/scheduling"
	"github.com/igw-dev/igw/pkg/scheduling/plugins"
)

// latencyFixture is a fixture whose scheduler runs the latency scorer, its
// model trained on servers of 4 slots so that a request's first token
// takes 50 ms plus 100 ms per request ahead of it in the server's queue.
func latencyFixture(t *testing.T, addrs ...string) *fixture {
	t.Helper()
	f := newFixture(t, addrs...)
	sched, err := plugins.NewSchedulerFromYAML([]byte(`apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: prefix-cache-scorer
- type: latency-scorer
schedulingProfiles:
- name: default
  plugins:
  - pluginRef: prefix-cache-scorer
    weight: 1
  - pluginRef: latency-scorer
    weight: 3
`))
	if err != nil {
		t.Fatal(err)
	}
	f.dir.SetScheduler(sched)
	ctx := context.Background()
	for i := range 96 {
		running, waiting := 1+i%4, 0
		if running == 4 {
			waiting = i / 4 % 4
		}
		for _, a := range addrs {
			f.set(a, datastore.Metrics{RunningRequests: running, WaitingQueueSize: waiting})
		}
		dec, err := f.dir.Decide(ctx, chat(t, "llama", "train"))
		if err != nil {
			t.Fatal(err)
		}
		at := dec.Start(ctx, dec.Endpoints[0])
		ahead := max(0, running+waiting+1-4)
		ttft := 50*time.Millisecond + time.Duration(ahead)*100*time.Millisecond
		at.Finish(ctx, scheduling.Response{StatusCode: http.StatusOK, Streamed: true, CompletionTokens: 10,
			FirstByte: ttft, Duration: ttft + 90*time.Millisecond})
	}
	return f
}

// A sheddable request whose time-to-first-token objective the best
// endpoint is predicted to miss is refused with 429, the
// rejected-slo-unattainable reason and a Retry-After of how late it would
// be; one that can meet it, and a request of priority >= 0 that cannot,
// are routed.
func TestDirector_ShedsSheddableRequestsThatCannotMeetTheirObjective(t *testing.T) {
	const a, b = "10.0.0.1:8000", "10.0.0.2:8000"
	f := latencyFixture(t, a, b)
	f.store.SetObjectives(map[string]map[string]int32{testPool: {"batch": -1}})
	// Two running of four slots: room for a sheddable request, and about
	// 50 ms to its first token.
	f.set(a, datastore.Metrics{RunningRequests: 2})
	f.set(b, datastore.Metrics{RunningRequests: 2})
	ctx := context.Background()
	if p, ok := f.dir.scheduler.Load().PredictLatency(&scheduling.Request{Prompt: []byte("hello")}, f.eps[a]); !ok ||
		p.TTFT < 30*time.Millisecond || p.TTFT > 80*time.Millisecond {
		t.Fatalf("trained prediction %v, %v; want about 50 ms", p.TTFT, ok)
	}

	req := chat(t, "llama", "hello")
	req.Objective, req.TTFTObjective = "batch", 10*time.Millisecond
	_, err := f.dir.Decide(ctx, req)
	var rej *Rejection
	if !errors.As(err, &rej) || rej.Status != http.StatusTooManyRequests || rej.Reason != ReasonSLOUnattainable {
		t.Fatalf("unattainable sheddable request: %v, want 429 %s", err, ReasonSLOUnattainable)
	}
	if rej.RetryAfter < 10*time.Millisecond || rej.RetryAfter > 100*time.Millisecond {
		t.Errorf("RetryAfter %v, want about how late the prediction is (~40 ms)", rej.RetryAfter)
	}

	req = chat(t, "llama", "hello")
	req.Objective, req.TTFTObjective = "batch", 2*time.Second
	if _, err := f.dir.Decide(ctx, req); err != nil {
		t.Errorf("attainable objective: %v", err)
	}
	req = chat(t, "llama", "hello")
	req.TTFTObjective = 10 * time.Millisecond // priority 0
	if _, err := f.dir.Decide(ctx, req); err != nil {
		t.Errorf("priority 0 with an unattainable objective was refused: %v", err)
	}
}

// An InferenceObjective's latency defaults apply to requests that name it
// and send no header; a header overrides them. The Decision carries the
// objectives for the Exchange's met/missed count.
func TestDirector_ObjectiveDefaultsAndHeaderOverride(t *testing.T) {
	f := newFixture(t, "10.0.0.1:8000")
	f.store.SetObjectives(map[string]map[string]int32{testPool: {"chat": 0}})
	f.store.SetLatencyObjectives(map[string]map[string]datastore.LatencyObjective{
		testPool: {"chat": {TTFT: 300 * time.Millisecond, TPOT: 40 * time.Millisecond}}})
	ctx := context.Background()
	req := chat(t, "llama", "hi")
	req.Objective = "chat"
	dec, err := f.dir.Decide(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if dec.TTFTObjective != 300*time.Millisecond || dec.TPOTObjective != 40*time.Millisecond {
		t.Errorf("objective defaults: %v / %v", dec.TTFTObjective, dec.TPOTObjective)
	}
	req = chat(t, "llama", "hi")
	req.Objective, req.TTFTObjective = "chat", 80*time.Millisecond
	if dec, err = f.dir.Decide(ctx, req); err != nil || dec.TTFTObjective != 80*time.Millisecond || dec.TPOTObjective != 40*time.Millisecond {
		t.Errorf("header override: %v / %v, %v", dec.TTFTObjective, dec.TPOTObjective, err)
	}
}

func TestLatencyObjectives_Headers(t *testing.T) {
	for _, tc := range []struct {
		ttft, tpot string
		want       time.Duration
		err        string
	}{
		{ttft: "", want: 0},
		{ttft: "250", want: 250 * time.Millisecond},
		{ttft: "3600000", want: time.Hour},
		{ttft: "0", err: HeaderSLOTTFT},
		{ttft: "-5", err: HeaderSLOTTFT},
		{ttft: "1.5", err: HeaderSLOTTFT},
		{ttft: "3600001", err: HeaderSLOTTFT},
		{ttft: "99999999999999999999", err: HeaderSLOTTFT},
		{ttft: "100", tpot: "abc", err: HeaderSLOTPOT},
	} {
		h := http.Header{}
		if tc.ttft != "" {
			h.Set(HeaderSLOTTFT, tc.ttft)
		}
		if tc.tpot != "" {
			h.Set(HeaderSLOTPOT, tc.tpot)
		}
		ttft, _, e := latencyObjectives(h)
		switch {
		case tc.err != "" && (e == nil || e.Status() != http.StatusBadRequest || !strings.Contains(e.Message, tc.err)):
			t.Errorf("%q/%q: %v, want 400 naming %s", tc.ttft, tc.tpot, e, tc.err)
		case tc.err == "" && (e != nil || ttft != tc.want):
			t.Errorf("%q: %v, %v; want %v", tc.ttft, ttft, e, tc.want)
		}
	}
}
