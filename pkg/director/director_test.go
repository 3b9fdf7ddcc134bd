package director

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/igw-dev/igw/pkg/datastore"
	"github.com/igw-dev/igw/pkg/flowcontrol"
	"github.com/igw-dev/igw/pkg/openai"
	"github.com/igw-dev/igw/pkg/scheduling"
	"github.com/igw-dev/igw/pkg/scheduling/plugins"
)

const testPool = "default/llama"

// fixture is a real datastore with one pool of scraped, ready endpoints and
// a Director over it with the default scheduling profile, so tests exercise
// the same store and scheduler the gateway uses.
type fixture struct {
	store *datastore.Store
	dir   *Director
	obs   *recorder
	eps   map[string]*datastore.Endpoint // by address
}

// newFixture creates pool testPool with one endpoint per address, each
// ready with idle, fresh metrics.
func newFixture(t *testing.T, addrs ...string) *fixture {
	t.Helper()
	store := datastore.NewStore(nil)
	var specs []datastore.EndpointSpec
	for _, a := range addrs {
		specs = append(specs, datastore.EndpointSpec{Name: a, Address: a})
	}
	store.SetPool(testPool, specs)
	f := &fixture{store: store, obs: &recorder{}, eps: map[string]*datastore.Endpoint{}}
	for _, ep := range store.Pool(testPool).Endpoints {
		f.eps[ep.Address] = ep
		f.set(ep.Address, datastore.Metrics{})
	}
	sched, err := scheduling.NewScheduler(nil, plugins.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	// A generous MaxAge: under -race a loop of thousands of decisions must
	// not see its fixture's metrics go stale.
	sat := flowcontrol.DefaultSaturationConfig()
	sat.MetricsStalenessThreshold = 10 * time.Second
	// The fixture's servers report their queues rather than their slots:
	// saturated at five waiting, as the tests below assume.
	sat.QueueDepthThreshold = 5
	satDet, err := flowcontrol.NewSaturationDetector(sat)
	if err != nil {
		t.Fatal(err)
	}
	flow := flowcontrol.DefaultConfig()
	flow.TTL = 5 * time.Second // a test that waits out a queue fails in seconds, not a minute
	f.dir, err = New(Options{Store: store, Scheduler: sched, Observer: f.obs, MaxAge: 10 * time.Second, Saturation: satDet, FlowControl: flow})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// set publishes m (stamped now) as addr's latest scrape and marks it ready.
func (f *fixture) set(addr string, m datastore.Metrics) {
	m.UpdateTime = time.Now()
	f.eps[addr].SetMetrics(&m)
	f.eps[addr].SetReady(true)
}

// chat builds a parsed chat request for model with the body it came from.
func chat(t *testing.T, model, prompt string) *Request {
	t.Helper()
	body := []byte(`{"model":"` + model + `","messages":[{"role":"user","content":"` + prompt + `"}],"max_tokens":8}`)
	p, err := openai.ParseRequest(openai.KindChat, body)
	if err != nil {
		t.Fatal(err)
	}
	return &Request{ID: "r", Pool: testPool, Parsed: p, Body: body}
}

// recorder is an Observer that keeps every call.
type recorder struct {
	nopObserver
	mu        sync.Mutex
	scheduled []string // primary addresses ("" on failure)
	rejected  []string // reasons
}

func (r *recorder) Scheduled(_ string, ep *datastore.Endpoint, took time.Duration, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	addr := ""
	if err == nil && ep != nil && took >= 0 {
		addr = ep.Address
	}
	r.scheduled = append(r.scheduled, addr)
}

func (r *recorder) Rejected(_, _ string, rej *Rejection) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.rejected = append(r.rejected, rej.Reason)
}

func addrsOf(eps []*datastore.Endpoint) []string {
	var out []string
	for _, e := range eps {
		out = append(out, e.Address)
	}
	return out
}

// modelOf reads the model field back from a (possibly patched) body.
func modelOf(t *testing.T, body []byte) string {
	t.Helper()
	p, err := openai.ParseRequest(openai.KindChat, body)
	if err != nil {
		t.Fatalf("patched body does not parse: %v\n%s", err, body)
	}
	return p.Model
}

func TestDirector_RewritesModelAndPatchesBody(t *testing.T) {
	rules := []datastore.RewriteRule{
		{Source: "catch-all", Targets: []datastore.RewriteTarget{{Model: "fallback-v2"}}},
		{Source: "exact", Models: []string{"llama"}, Targets: []datastore.RewriteTarget{
			{Model: "llama-never", Weight: 0}, {Model: "llama-v2", Weight: 1},
		}},
	}
	for _, tc := range []struct {
		name   string
		rules  []datastore.RewriteRule
		model  string
		target string
	}{
		{"exact match beats an older catch-all", rules, "llama", "llama-v2"},
		{"catch-all applies to any other model", rules, "qwen", "fallback-v2"},
		{"no rule leaves the model as asked", nil, "llama", "llama"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, "10.0.0.1:8000")
			f.store.SetRewrites(map[string][]datastore.RewriteRule{testPool: tc.rules})
			for range 50 { // a zero-weight target must never be chosen
				req := chat(t, tc.model, "hi")
				dec, err := f.dir.Decide(context.Background(), req)
				if err != nil {
					t.Fatal(err)
				}
				if dec.Model != tc.model || dec.TargetModel != tc.target {
					t.Fatalf("model %q → %q, want %q → %q", dec.Model, dec.TargetModel, tc.model, tc.target)
				}
				if got := modelOf(t, dec.Body); got != tc.target {
					t.Fatalf("forwarded body names model %q, want %q", got, tc.target)
				}
				if tc.target == tc.model && &dec.Body[0] != &req.Body[0] {
					t.Fatal("an unrewritten body was copied; it should be forwarded as is")
				}
				if !strings.Contains(string(dec.Body), `"messages":[{"role":"user","content":"hi"}]`) {
					t.Fatalf("rewrite touched more than the model: %s", dec.Body)
				}
			}
		})
	}
}

func TestDirector_RewriteSplitsTrafficByWeight(t *testing.T) {
	f := newFixture(t, "10.0.0.1:8000")
	f.store.SetRewrites(map[string][]datastore.RewriteRule{testPool: {{
		Source: "canary", Models: []string{"llama"},
		Targets: []datastore.RewriteTarget{{Model: "llama", Weight: 3}, {Model: "llama-canary", Weight: 1}},
	}}})
	const n = 4000
	canary := 0
	for range n {
		dec, err := f.dir.Decide(context.Background(), chat(t, "llama", "hi"))
		if err != nil {
			t.Fatal(err)
		}
		if dec.TargetModel == "llama-canary" {
			canary++
		}
	}
	// Expected 1000 (σ ≈ 27); the band is over 7σ wide on each side.
	if canary < 800 || canary > 1200 {
		t.Errorf("canary got %d of %d requests, want about a quarter", canary, n)
	}
}

func TestDirector_RejectsWhenNoEndpointCanServe(t *testing.T) {
	for _, tc := range []struct {
		name  string
		pool  string
		setup func(f *fixture)
	}{
		{"unknown pool", "default/nope", func(*fixture) {}},
		{"pool without endpoints", testPool, func(f *fixture) { f.store.SetPool(testPool, nil) }},
		{"endpoint not ready", testPool, func(f *fixture) { f.eps["10.0.0.1:8000"].SetReady(false) }},
		{"metrics stale", testPool, func(f *fixture) {
			f.eps["10.0.0.1:8000"].SetMetrics(&datastore.Metrics{UpdateTime: time.Now().Add(-time.Minute)})
		}},
		{"never scraped", testPool, func(f *fixture) {
			f.store.SetPool(testPool, []datastore.EndpointSpec{{Name: "new", Address: "10.0.0.9:8000"}})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, "10.0.0.1:8000")
			tc.setup(f)
			req := chat(t, "llama", "hi")
			req.Pool = tc.pool
			dec, err := f.dir.Decide(context.Background(), req)
			var rej *Rejection
			if !errors.As(err, &rej) {
				t.Fatalf("Decide = %v, %v; want a rejection", dec, err)
			}
			if rej.Status != http.StatusServiceUnavailable || rej.Reason != ReasonNoEndpoints {
				t.Errorf("rejection %d %s, want 503 %s", rej.Status, rej.Reason, ReasonNoEndpoints)
			}
			if e := rej.OpenAI(); e.Status() != http.StatusServiceUnavailable || e.Type != openai.ErrTypeUnavailable {
				t.Errorf("OpenAI error %+v", e)
			}
			if !slices.Equal(f.obs.rejected, []string{ReasonNoEndpoints}) {
				t.Errorf("observer saw rejections %v", f.obs.rejected)
			}
		})
	}
}

func TestDirector_SubsetHintRestrictsCandidates(t *testing.T) {
	all := []string{"10.0.0.1:8000", "10.0.0.2:8000", "10.0.0.3:8000"}
	for _, tc := range []struct {
		name   string
		subset []string
		want   []string // endpoints in the decision, any order; nil = rejected
	}{
		{"nil means the whole pool", nil, all},
		{"empty means no candidates", []string{}, nil},
		{"restricts to the listed endpoints", []string{"10.0.0.2:8000"}, []string{"10.0.0.2:8000"}},
		{"addresses outside the pool are ignored", []string{"10.0.0.3:8000", "10.9.9.9:1"}, []string{"10.0.0.3:8000"}},
		{"only outside addresses means none", []string{"10.9.9.9:1"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, all...)
			req := chat(t, "llama", "hi")
			req.Subset = tc.subset
			dec, err := f.dir.Decide(context.Background(), req)
			if tc.want == nil {
				var rej *Rejection
				if !errors.As(err, &rej) || rej.Status != http.StatusServiceUnavailable || rej.Reason != ReasonNoEndpoints {
					t.Fatalf("Decide = %v; want 503 %s", err, ReasonNoEndpoints)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := addrsOf(dec.Endpoints)
			slices.Sort(got)
			if !slices.Equal(got, tc.want) {
				t.Errorf("endpoints %v, want %v", got, tc.want)
			}
		})
	}
}

func TestDirector_ShedsSheddableRequestsWhileSaturated(t *testing.T) {
	saturated := datastore.Metrics{WaitingQueueSize: 10, KVCacheUsage: 0.95}
	for _, tc := range []struct {
		name      string
		objective string
		saturated bool
		shed      bool
	}{
		{"negative priority is shed while saturated", "batch", true, true},
		{"negative priority is scheduled with headroom", "batch", false, false},
		{"positive priority is scheduled with headroom", "interactive", false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, "10.0.0.1:8000", "10.0.0.2:8000")
			f.store.SetObjectives(map[string]map[string]int32{testPool: {"batch": -1, "interactive": 10}})
			if tc.saturated {
				f.set("10.0.0.1:8000", saturated)
				f.set("10.0.0.2:8000", saturated)
			} else {
				f.set("10.0.0.2:8000", saturated) // one endpoint with headroom is enough
			}
			req := chat(t, "llama", "hi")
			req.Objective = tc.objective
			dec, err := f.dir.Decide(context.Background(), req)
			if tc.shed {
				var rej *Rejection
				if !errors.As(err, &rej) || rej.Status != http.StatusTooManyRequests || rej.Reason != ReasonSaturated {
					t.Fatalf("Decide = %v; want 429 %s", err, ReasonSaturated)
				}
				if e := rej.OpenAI(); e.Status() != http.StatusTooManyRequests || e.Type != openai.ErrTypeRateLimit {
					t.Errorf("OpenAI error %+v", e)
				}
				if len(f.obs.scheduled) != 0 {
					t.Error("a shed request was scheduled")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if want := f.store.Priority(testPool, tc.objective); dec.Priority != want {
				t.Errorf("priority %d, want %d", dec.Priority, want)
			}
		})
	}
}

func TestDirector_QueuesNonSheddableRequestsUntilHeadroom(t *testing.T) {
	saturated := datastore.Metrics{WaitingQueueSize: 10}
	f := newFixture(t, "10.0.0.1:8000")
	f.store.SetObjectives(map[string]map[string]int32{testPool: {"interactive": 10}})
	f.set("10.0.0.1:8000", saturated)
	done := make(chan error, 1)
	var dec *Decision
	go func() {
		req := chat(t, "llama", "hi")
		req.Objective, req.FairnessID = "interactive", "tenant-a"
		var err error
		dec, err = f.dir.Decide(context.Background(), req)
		done <- err
	}()
	deadline := time.Now().Add(5 * time.Second)
	for f.dir.flowController(testPool).Queued() != 1 {
		if time.Now().After(deadline) {
			t.Fatal("the request did not queue while the pool was saturated")
		}
		time.Sleep(time.Millisecond)
	}
	select {
	case err := <-done:
		t.Fatalf("Decide returned %v while the pool was saturated", err)
	default:
	}
	queuedAt := time.Now() // it arrived before this
	time.Sleep(20 * time.Millisecond)
	held := time.Since(queuedAt)
	f.set("10.0.0.1:8000", datastore.Metrics{}) // headroom appears
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("dispatched request: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the queued request was not dispatched when headroom appeared")
	}
	// The decision says how long admission held it (the access log's
	// queue_seconds): at least as long as the pool had no room.
	if dec.Queued < held {
		t.Errorf("Decision.Queued = %v, want at least the %v the request was held", dec.Queued, held)
	}
}

func TestDirector_QueuedRequestExpiresWith429(t *testing.T) {
	f := newFixture(t, "10.0.0.1:8000")
	f.set("10.0.0.1:8000", datastore.Metrics{KVCacheUsage: 0.9})
	flow := flowcontrol.DefaultConfig()
	flow.TTL = 50 * time.Millisecond
	sched, _ := scheduling.NewScheduler(nil, plugins.NewRegistry())
	sat := flowcontrol.DefaultSaturationConfig()
	sat.MetricsStalenessThreshold = 10 * time.Second
	satDet, _ := flowcontrol.NewSaturationDetector(sat)
	d, err := New(Options{Store: f.store, Scheduler: sched, Saturation: satDet, FlowControl: flow, MaxAge: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	_, err = d.Decide(context.Background(), chat(t, "llama", "hi"))
	var rej *Rejection
	if !errors.As(err, &rej) || rej.Status != http.StatusTooManyRequests || rej.Reason != ReasonTTLExpired {
		t.Fatalf("Decide = %v; want 429 %s", err, ReasonTTLExpired)
	}
}

func TestAdapterOf(t *testing.T) {
	set := func(names ...string) map[string]struct{} {
		m := map[string]struct{}{}
		for _, n := range names {
			m[n] = struct{}{}
		}
		return m
	}
	ep := func(m *datastore.Metrics) *datastore.Endpoint {
		e := datastore.NewEndpoint("e", "10.0.0.1:8000", testPool, "", nil)
		e.SetMetrics(m)
		return e
	}
	withBases := ep(&datastore.Metrics{BaseModels: []string{"llama"}, ActiveAdapters: set("sql-lora"), WaitingAdapters: set("chat-lora")})
	noBases := ep(&datastore.Metrics{})
	for _, tc := range []struct {
		name  string
		model string
		eps   []*datastore.Endpoint
		want  string
	}{
		{"base model reported by the server", "llama", []*datastore.Endpoint{withBases}, ""},
		{"active adapter", "sql-lora", []*datastore.Endpoint{withBases}, "sql-lora"},
		{"waiting adapter", "chat-lora", []*datastore.Endpoint{withBases}, "chat-lora"},
		{"adapter known to another server only", "chat-lora", []*datastore.Endpoint{noBases, withBases}, "chat-lora"},
		{"unknown model where servers report their bases is an adapter", "new-lora", []*datastore.Endpoint{withBases}, "new-lora"},
		{"unknown model without base-model information is a base model", "new-lora", []*datastore.Endpoint{noBases}, ""},
		{"unscraped endpoints say nothing", "new-lora", []*datastore.Endpoint{datastore.NewEndpoint("e", "a:1", testPool, "", nil)}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := adapterOf(tc.model, tc.eps); got != tc.want {
				t.Errorf("adapterOf(%q) = %q, want %q", tc.model, got, tc.want)
			}
		})
	}
}

func TestDirector_PassesAdapterToScheduler(t *testing.T) {
	// The LoRA scorer is the only thing that can prefer b here: a has the
	// shorter queue, b has the adapter active.
	f := newFixture(t, "10.0.0.1:8000", "10.0.0.2:8000")
	f.set("10.0.0.1:8000", datastore.Metrics{BaseModels: []string{"llama"}, MaxActiveAdapters: 1, ActiveAdapters: map[string]struct{}{"other-lora": {}}})
	f.set("10.0.0.2:8000", datastore.Metrics{BaseModels: []string{"llama"}, MaxActiveAdapters: 1, WaitingQueueSize: 1, ActiveAdapters: map[string]struct{}{"sql-lora": {}}})
	sched, err := plugins.NewSchedulerFromYAML([]byte(`
apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: queue-scorer
- type: lora-affinity-scorer
schedulingProfiles:
- name: default
  plugins:
  - pluginRef: queue-scorer
  - pluginRef: lora-affinity-scorer
    weight: 10
`))
	if err != nil {
		t.Fatal(err)
	}
	f.dir.SetScheduler(sched)
	for _, tc := range []struct{ model, want string }{{"sql-lora", "10.0.0.2:8000"}, {"llama", "10.0.0.1:8000"}} {
		dec, err := f.dir.Decide(context.Background(), chat(t, tc.model, "hi"))
		if err != nil {
			t.Fatal(err)
		}
		if got := dec.Endpoints[0].Address; got != tc.want {
			t.Errorf("%s went to %s, want %s", tc.model, got, tc.want)
		}
	}
}

func TestDirector_ObserverSeesEveryCycle(t *testing.T) {
	f := newFixture(t, "10.0.0.1:8000", "10.0.0.2:8000")
	f.set("10.0.0.2:8000", datastore.Metrics{WaitingQueueSize: 4, KVCacheUsage: 0.5})
	for range 3 {
		dec, err := f.dir.Decide(context.Background(), chat(t, "llama", "hi"))
		if err != nil {
			t.Fatal(err)
		}
		if dec.Endpoints[0].Address != "10.0.0.1:8000" || dec.Pool != testPool {
			t.Fatalf("decision %v in %s", addrsOf(dec.Endpoints), dec.Pool)
		}
	}
	if want := []string{"10.0.0.1:8000", "10.0.0.1:8000", "10.0.0.1:8000"}; !slices.Equal(f.obs.scheduled, want) {
		t.Errorf("observer saw %v, want %v", f.obs.scheduled, want)
	}
	if len(f.obs.rejected) != 0 {
		t.Errorf("observer saw rejections %v", f.obs.rejected)
	}
}

func TestDirector_CanceledContextIsNotARejection(t *testing.T) {
	f := newFixture(t, "10.0.0.1:8000")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := f.dir.Decide(ctx, chat(t, "llama", "hi"))
	var rej *Rejection
	if !errors.Is(err, context.Canceled) || errors.As(err, &rej) {
		t.Fatalf("Decide = %v; want context.Canceled, not a rejection", err)
	}
}

func TestAttempt_InFlightAccountingAndHooks(t *testing.T) {
	f := newFixture(t, "10.0.0.1:8000", "10.0.0.2:8000")
	f.set("10.0.0.2:8000", datastore.Metrics{WaitingQueueSize: 1})
	ctx := context.Background()
	prompt := strings.Repeat("the same long system prompt shared by a conversation; ", 20)
	dec, err := f.dir.Decide(ctx, chat(t, "llama", prompt))
	if err != nil {
		t.Fatal(err)
	}
	primary, fallback := dec.Endpoints[0], dec.Endpoints[1]
	if primary.Address != "10.0.0.1:8000" {
		t.Fatalf("primary %s", primary.Address)
	}

	first := dec.Start(ctx, primary)
	if primary.InFlight() != 1 || first.Endpoint() != primary {
		t.Fatalf("after Start: in flight %d", primary.InFlight())
	}
	first.Finish(ctx, scheduling.Response{Err: errors.New("connection refused")})
	first.Finish(ctx, scheduling.Response{Err: errors.New("connection refused")})
	if primary.InFlight() != 0 {
		t.Fatalf("Finish is not idempotent: in flight %d", primary.InFlight())
	}

	retry := dec.Start(ctx, fallback) // retry on the fallback
	if fallback.InFlight() != 1 || primary.InFlight() != 0 {
		t.Fatalf("retry in flight %d/%d", primary.InFlight(), fallback.InFlight())
	}
	var wg sync.WaitGroup
	for range 4 { // concurrent Finish calls (e.g. a watchdog and the proxy) release once
		wg.Add(1)
		go func() { defer wg.Done(); retry.Finish(ctx, scheduling.Response{StatusCode: 200}) }()
	}
	wg.Wait()
	if fallback.InFlight() != 0 {
		t.Fatalf("fallback in flight %d after Finish", fallback.InFlight())
	}

	// The pre-request hook teaches the prefix index where a prompt went:
	// sent only to the busier endpoint, the prompt follows it there on the
	// next request, while an unrelated prompt goes to the idle one.
	other := strings.Repeat("a different system prompt of another conversation; ", 20)
	dec, err = f.dir.Decide(ctx, chat(t, "llama", other))
	if err != nil {
		t.Fatal(err)
	}
	dec.Start(ctx, fallback).Finish(ctx, scheduling.Response{StatusCode: 200})
	dec, err = f.dir.Decide(ctx, chat(t, "llama", other))
	if err != nil {
		t.Fatal(err)
	}
	if got := dec.Endpoints[0].Address; got != fallback.Address {
		t.Errorf("same prompt went to %s, want %s which holds its prefix", got, fallback.Address)
	}
	dec, err = f.dir.Decide(ctx, chat(t, "llama", "an unrelated prompt of a different conversation, long enough to span blocks"))
	if err != nil {
		t.Fatal(err)
	}
	if got := dec.Endpoints[0].Address; got != primary.Address {
		t.Errorf("unrelated prompt went to %s, want the idle %s", got, primary.Address)
	}
}

func TestNew_RequiresStoreAndScheduler(t *testing.T) {
	sched, err := scheduling.NewScheduler(nil, plugins.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range []Options{{}, {Store: datastore.NewStore(nil)}, {Scheduler: sched}} {
		if _, err := New(o); err == nil {
			t.Errorf("New(%+v) succeeded", o)
		}
	}
}

func TestDirector_OnlyServersThatServeTheModel(t *testing.T) {
	f := newFixture(t, "10.0.0.1:8000", "10.0.0.2:8000", "10.0.0.3:8000")
	f.eps["10.0.0.1:8000"].SetServedModels([]string{"base", "sql-lora"})
	f.eps["10.0.0.2:8000"].SetServedModels([]string{"base"})
	// 10.0.0.3 has not reported its models: it is kept.
	for range 50 {
		dec, err := f.dir.Decide(context.Background(), chat(t, "sql-lora", "hi"))
		if err != nil {
			t.Fatal(err)
		}
		if slices.Contains(addrsOf(dec.Endpoints), "10.0.0.2:8000") {
			t.Fatalf("endpoints %v include a server that does not serve the adapter", addrsOf(dec.Endpoints))
		}
	}
	// A model no server lists (e.g. loaded on demand) is not filtered.
	dec, err := f.dir.Decide(context.Background(), chat(t, "other", "hi"))
	if err != nil || len(dec.Endpoints) < 2 {
		t.Fatalf("unlisted model: %v %v", dec, err)
	}
}

func TestDirector_LateMetricsEverywhereStillRoute(t *testing.T) {
	f := newFixture(t, "10.0.0.1:8000", "10.0.0.2:8000")
	// Every scrape is late (an overloaded scraper), but recent: the
	// servers are alive. Requests must not be refused with 503.
	for _, ep := range f.eps {
		ep.SetMetrics(&datastore.Metrics{UpdateTime: time.Now().Add(-time.Second)})
	}
	d, err := New(Options{Store: f.store, Scheduler: f.dir.scheduler.Load(), MaxAge: 200 * time.Millisecond,
		Saturation: f.dir.saturation.Load(), FlowControl: f.dir.flowCfg})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Decide(context.Background(), chat(t, "llama", "hi")); err != nil {
		t.Fatalf("Decide with late metrics: %v", err)
	}
}

// TestDirector_SchedulesOnlyWhereThereIsHeadroom: a prompt whose prefix
// lives on a saturated server (its own queue over the threshold) goes to
// the server with room; when every server is saturated, affinity decides
// again.
// A request above the default priority is scheduled only where there is
// headroom (it must not wait behind earlier admissions at a saturated
// server); a request of the default priority keeps its prefix home while
// the home's queue stays within the prefix scorer's load bound.
func TestDirector_SchedulesOnlyWhereThereIsHeadroom(t *testing.T) {
	const hot, cold = "10.0.0.1:8000", "10.0.0.2:8000"
	f := newFixture(t, hot, cold)
	f.store.SetObjectives(map[string]map[string]int32{testPool: {"interactive": 10}})
	prompt := strings.Repeat("shared system prompt ", 200)
	warm, err := f.dir.Decide(context.Background(), chat(t, "llama", prompt))
	if err != nil {
		t.Fatal(err)
	}
	home := warm.Endpoints[0].Address
	warm.Start(context.Background(), warm.Endpoints[0]).Finish(context.Background(), scheduling.Response{StatusCode: http.StatusOK})
	other := cold
	if home == cold {
		other = hot
	}
	// The prefix's home gets a queue at the threshold (the fixture's 5).
	f.set(home, datastore.Metrics{WaitingQueueSize: 5, RunningRequests: 4})
	f.set(other, datastore.Metrics{WaitingQueueSize: 4, RunningRequests: 4}) // one short of it

	dec, err := f.dir.Decide(context.Background(), chat(t, "llama", prompt))
	if err != nil {
		t.Fatal(err)
	}
	if got := dec.Endpoints[0].Address; got != home {
		t.Errorf("default priority scheduled on %s; want the prefix home %s (one request above the other's queue)", got, home)
	}
	dec.Start(context.Background(), dec.Endpoints[0]).Finish(context.Background(), scheduling.Response{StatusCode: http.StatusOK})
	// A new scrape: the completion above is in it.
	f.set(home, datastore.Metrics{WaitingQueueSize: 5, RunningRequests: 4})
	f.set(other, datastore.Metrics{WaitingQueueSize: 4, RunningRequests: 4})

	urgent := chat(t, "llama", prompt)
	urgent.Objective = "interactive"
	dec, err = f.dir.Decide(context.Background(), urgent)
	if err != nil {
		t.Fatal(err)
	}
	if got := dec.Endpoints[0].Address; got != other {
		t.Errorf("priority 10 scheduled on %s (saturated, prefix home); want %s, which has headroom", got, other)
	}
	if slices.Contains(addrsOf(dec.Endpoints), home) {
		t.Errorf("priority 10: fallbacks %v include the saturated server", addrsOf(dec.Endpoints))
	}
	dec.Start(context.Background(), dec.Endpoints[0]).Finish(context.Background(), scheduling.Response{StatusCode: http.StatusOK})
}

// A sheddable request may not take an endpoint's last free slot (its
// learned limit minus the reserved one); a request of the default priority
// may. With no such slot anywhere the sheddable request is shed with 429.
func TestDirector_SheddableLeavesTheLastSlotFree(t *testing.T) {
	const a, b = "10.0.0.1:8000", "10.0.0.2:8000"
	f := newFixture(t, a, b)
	f.store.SetObjectives(map[string]map[string]int32{testPool: {"batch": -1}})
	for _, addr := range []string{a, b} { // both have been full at 4 running
		f.set(addr, datastore.Metrics{RunningRequests: 4, WaitingQueueSize: 1})
	}
	f.set(a, datastore.Metrics{RunningRequests: 3}) // its last slot free
	f.set(b, datastore.Metrics{RunningRequests: 1}) // room
	batch := func() *Request {
		r := chat(t, "llama", "hello")
		r.Objective = "batch"
		return r
	}
	dec, err := f.dir.Decide(context.Background(), batch())
	if err != nil {
		t.Fatal(err)
	}
	if got := addrsOf(dec.Endpoints); len(got) != 1 || got[0] != b {
		t.Errorf("sheddable scheduled on %v, want only %s", got, b)
	}
	dec.Start(context.Background(), dec.Endpoints[0]).Finish(context.Background(), scheduling.Response{StatusCode: http.StatusOK})

	f.set(b, datastore.Metrics{RunningRequests: 3})
	if _, err := f.dir.Decide(context.Background(), batch()); err == nil {
		t.Fatal("sheddable scheduled although every endpoint is down to its reserved slot")
	} else if rej, ok := err.(*Rejection); !ok || rej.Status != http.StatusTooManyRequests {
		t.Fatalf("err %v, want a 429 rejection", err)
	}
	dec, err = f.dir.Decide(context.Background(), chat(t, "llama", "hello"))
	if err != nil {
		t.Fatalf("default priority: %v", err)
	}
	dec.Start(context.Background(), dec.Endpoints[0]).Finish(context.Background(), scheduling.Response{StatusCode: http.StatusOK})
}

// While the pool has urgent requests (priority > 0 or a TTFT objective),
// admission keeps the reserved slot of each endpoint for them: a request
// of the default priority without an objective waits in the queue when
// only reserved slots are left; an urgent one goes. Without urgent
// traffic in the last reserveWindow the default priority uses every slot.
func TestDirector_ReservedSlotsForUrgentRequests(t *testing.T) {
	const a = "10.0.0.1:8000"
	f := newFixture(t, a)
	f.store.SetObjectives(map[string]map[string]int32{testPool: {"interactive": 10}})
	f.set(a, datastore.Metrics{RunningRequests: 4, WaitingQueueSize: 1}) // learns 4 slots
	f.set(a, datastore.Metrics{RunningRequests: 3})                      // one slot free: the reserved one
	standard := &flowcontrol.Request{}
	slo := &flowcontrol.Request{Deadline: time.Now().Add(time.Second)}
	high := &flowcontrol.Request{Priority: 10}
	if ok, _ := f.dir.headroom(testPool, f.dir.poolState(testPool), standard); !ok {
		t.Fatal("no urgent traffic yet: the default priority must have the last slot")
	}
	req := chat(t, "llama", "hi")
	req.Objective = "interactive"
	dec, err := f.dir.Decide(context.Background(), req) // urgent traffic now
	if err != nil {
		t.Fatal(err)
	}
	dec.Start(context.Background(), dec.Endpoints[0]).Finish(context.Background(), scheduling.Response{StatusCode: http.StatusOK})
	f.set(a, datastore.Metrics{RunningRequests: 3})
	if ok, _ := f.dir.headroom(testPool, f.dir.poolState(testPool), standard); ok {
		t.Error("the default priority took the slot reserved while urgent requests are around")
	}
	for _, r := range []*flowcontrol.Request{slo, high, nil} {
		if ok, _ := f.dir.headroom(testPool, f.dir.poolState(testPool), r); !ok {
			t.Errorf("%+v: no headroom on the reserved slot", r)
		}
	}
}

// One decision in DecisionsEvery is explained for the dashboard, and none
// while DecisionsWanted says nobody looks.
func TestDirector_SamplesDecisionsOnlyWhileWanted(t *testing.T) {
	f := newFixture(t, "10.0.0.1:8000", "10.0.0.2:8000")
	var wanted atomic.Bool
	got := 0
	f.dir.decisions = func(pool string, ex *scheduling.Explanation) {
		if pool != testPool || ex == nil || len(ex.Profiles) == 0 {
			t.Errorf("decision of %q: %+v", pool, ex)
		}
		got++
	}
	f.dir.every, f.dir.decisionsWanted = 2, wanted.Load
	decide := func(n int) {
		for range n {
			dec, err := f.dir.Decide(context.Background(), chat(t, "llama", "hi"))
			if err != nil {
				t.Fatal(err)
			}
			dec.Start(context.Background(), dec.Endpoints[0]).Finish(context.Background(), scheduling.Response{StatusCode: http.StatusOK})
		}
	}
	decide(8)
	if got != 0 {
		t.Fatalf("%d decisions sampled while nobody looked", got)
	}
	wanted.Store(true)
	decide(8)
	if got != 4 {
		t.Errorf("%d of 8 decisions sampled at one in 2, want 4", got)
	}
}
