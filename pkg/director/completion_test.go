package director

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/igw-dev/igw/pkg/datastore"
	"github.com/igw-dev/igw/pkg/scheduling"
)

// completions is an Observer that keeps what RequestDone, InFlight and
// the flow-control events said.
type completions struct {
	nopObserver
	mu       sync.Mutex
	done     []*Completion
	inFlight map[string]float64 // by model label
	queued   []string           // "+model/target" and "-model/target:outcome"
}

func (c *completions) RequestDone(x *Completion) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.done = append(c.done, x)
}

func (c *completions) InFlight(_, model string, delta float64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.inFlight == nil {
		c.inFlight = map[string]float64{}
	}
	c.inFlight[model] += delta
}

func (c *completions) Queued(e *FlowEntry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.queued = append(c.queued, "+"+e.MetricModel+"/"+e.MetricTargetModel)
}

func (c *completions) Dequeued(e *FlowEntry, outcome string, _ time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.queued = append(c.queued, "-"+e.MetricModel+"/"+e.MetricTargetModel+":"+outcome)
}

func exchange(t *testing.T, f *fixture, model string, h http.Header) *Exchange {
	t.Helper()
	body := []byte(`{"model":"` + model + `","messages":[{"role":"user","content":"hi"}],"max_tokens":8}`)
	x, reply := f.dir.Begin(context.Background(), &Inbound{Method: http.MethodPost, Path: "/v1/chat/completions",
		Body: body, Pool: testPool, Header: h})
	if reply != nil {
		t.Fatalf("refused: %d %s", reply.Status, reply.Body)
	}
	return x
}

func TestDirector_CompletionCarriesTheRequestsOutcome(t *testing.T) {
	f := newFixture(t, "10.0.0.1:8000")
	f.set("10.0.0.1:8000", datastore.Metrics{BaseModels: []string{"llama"}})
	obs := &completions{}
	f.dir.obs = obs
	ctx := context.Background()
	x := exchange(t, f, "llama", http.Header{"X-Request-Id": {"req-1"}, HeaderInferenceFairnessID: {"team-a"}})
	x.Try(ctx, "10.0.0.1:8000")
	x.ResponseHeaders(http.StatusOK, "application/json")
	body := []byte(`{"model":"llama","choices":[],"usage":{"prompt_tokens":7,"completion_tokens":3,"total_tokens":10}}`)
	out := x.ResponseBody(body, true)
	x.Finish(ctx, nil)

	if len(obs.done) != 1 {
		t.Fatalf("%d completions, want 1", len(obs.done))
	}
	c := obs.done[0]
	if c.ID != "req-1" || c.Model != "llama" || c.MetricModel != "llama" || c.TargetModel != "llama" || c.Tenant != "team-a" ||
		c.Endpoint != "10.0.0.1:8000" || c.Status != http.StatusOK || !c.FromServer || c.Pool != testPool {
		t.Errorf("completion %+v", c)
	}
	if !c.HasUsage || c.InputTokens != 7 || c.OutputTokens != 3 || c.ResponseBytes != int64(len(out)) || c.RequestBytes == 0 {
		t.Errorf("usage and sizes %+v", c)
	}
	if obs.inFlight["llama"] != 0 {
		t.Errorf("in flight after the end: %v", obs.inFlight)
	}
	if len(obs.queued) != 2 || obs.queued[0] != "+llama/llama" || obs.queued[1] != "-llama/llama:"+QueueDispatched {
		t.Errorf("flow control events %v", obs.queued)
	}
}

func TestDirector_UnknownModelsAreFoldedInMetricLabels(t *testing.T) {
	f := newFixture(t, "10.0.0.1:8000")
	f.set("10.0.0.1:8000", datastore.Metrics{BaseModels: []string{"llama"}})
	obs := &completions{}
	f.dir.obs = obs
	ctx := context.Background()
	for _, m := range []string{"made-up-1", "made-up-2"} {
		x := exchange(t, f, m, nil)
		x.Try(ctx, "10.0.0.1:8000")
		x.Finish(ctx, nil)
	}
	for _, c := range obs.done {
		if c.MetricModel != UnknownModel || c.MetricTargetModel != UnknownModel || c.Model == UnknownModel {
			t.Errorf("model %q labelled %q/%q, want %q (the log keeps the name)", c.Model, c.MetricModel, c.MetricTargetModel, UnknownModel)
		}
	}
	if len(obs.inFlight) != 1 || obs.inFlight[UnknownModel] != 0 {
		t.Errorf("in-flight labels %v, want only %q", obs.inFlight, UnknownModel)
	}
}

func TestDirector_ExplainsDecisionsOnlyWhenEnabledAndAsked(t *testing.T) {
	addrs := []string{"10.0.0.1:8000", "10.0.0.2:8000"}
	ask := func() http.Header { return http.Header{HeaderDebugDecision: {"1"}} }
	tests := []struct {
		name    string
		enabled bool
		header  http.Header
		want    bool
	}{
		{"enabled and asked", true, ask(), true},
		{"enabled, not asked", true, nil, false},
		{"asked, not enabled", false, ask(), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, addrs...)
			f.dir.explain = tt.enabled
			x := exchange(t, f, "llama", tt.header)
			defer x.Finish(context.Background(), nil)
			if x.Header().Get(HeaderDebugDecision) != "" {
				t.Errorf("%s is forwarded to the model server", HeaderDebugDecision)
			}
			if _, remove := x.HeaderEdits(); tt.header != nil && !slices.Contains(remove, HeaderDebugDecision) {
				t.Errorf("header edits drop %v, want %s among them (ext_proc forwards by mutation)", remove, HeaderDebugDecision)
			}
			got := x.ResponseHeader.Get(HeaderDecision)
			if (got != "") != tt.want {
				t.Fatalf("%s = %q, want present %v", HeaderDecision, got, tt.want)
			}
			if !tt.want {
				return
			}
			var e scheduling.Explanation
			if err := json.Unmarshal([]byte(got), &e); err != nil {
				t.Fatal(err)
			}
			if e.Primary == "" || len(e.Profiles) != 1 || len(e.Profiles[0].Candidates) != 2 || len(e.Profiles[0].Scorers) == 0 ||
				e.Profiles[0].Picked[0] != x.Endpoints()[0] {
				t.Fatalf("explanation %s", got)
			}
			for _, c := range e.Profiles[0].Candidates {
				if len(c.Scores) != len(e.Profiles[0].Scorers) {
					t.Fatalf("candidate %+v has not one score per scorer", c)
				}
			}
		})
	}
}
