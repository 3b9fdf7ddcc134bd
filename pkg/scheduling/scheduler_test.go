package scheduling_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/igw-dev/igw/pkg/datastore"
	"github.com/igw-dev/igw/pkg/scheduling"
	"github.com/igw-dev/igw/pkg/scheduling/plugins"
	"github.com/igw-dev/igw/pkg/scheduling/schedtest"
)

// fixedScorer scores endpoints from a table by address (0 when absent).
type fixedScorer struct {
	name   string
	scores map[string]float64
}

func (f *fixedScorer) TypedName() scheduling.TypedName {
	return scheduling.TypedName{Type: "fixed-scorer", Name: f.name}
}

func (f *fixedScorer) Score(_ context.Context, _ *scheduling.Request, cands []scheduling.Candidate, scores []float64) {
	for i, c := range cands {
		scores[i] = f.scores[c.Endpoint.Address]
	}
}

// keepFilter keeps the listed addresses.
type keepFilter struct {
	name string
	keep map[string]bool
}

func (f *keepFilter) TypedName() scheduling.TypedName {
	return scheduling.TypedName{Type: "keep-filter", Name: f.name}
}

func (f *keepFilter) Filter(_ context.Context, _ *scheduling.Request, cands []scheduling.Candidate) []scheduling.Candidate {
	out := cands[:0]
	for _, c := range cands {
		if f.keep[c.Endpoint.Address] {
			out = append(out, c)
		}
	}
	return out
}

// hooks records hook calls and the snapshot it was shown.
type hooks struct {
	mu        sync.Mutex
	pre, done []string
	seen      []scheduling.Candidate
}

func (h *hooks) TypedName() scheduling.TypedName {
	return scheduling.TypedName{Type: "hooks", Name: "hooks"}
}
func (h *hooks) Score(_ context.Context, _ *scheduling.Request, cands []scheduling.Candidate, _ []float64) {
	h.mu.Lock()
	h.seen = append(h.seen[:0], cands...)
	h.mu.Unlock()
}
func (h *hooks) PreRequest(_ context.Context, _ *scheduling.Request, _ *scheduling.Result, target *datastore.Endpoint) {
	h.mu.Lock()
	h.pre = append(h.pre, target.Address)
	h.mu.Unlock()
}
func (h *hooks) ResponseComplete(_ context.Context, _ *scheduling.Request, resp *scheduling.Response, target *datastore.Endpoint) {
	h.mu.Lock()
	h.done = append(h.done, fmt.Sprintf("%s:%d", target.Address, resp.StatusCode))
	h.mu.Unlock()
}

// testRegistry is the built-in registry plus the test plugins, whose
// parameters are their tables.
func testRegistry(t testing.TB, h *hooks) *scheduling.Registry {
	r := plugins.NewRegistry()
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	must(r.Register("fixed-scorer", func(name string, raw json.RawMessage) (scheduling.Plugin, error) {
		f := &fixedScorer{name: name}
		return f, scheduling.DecodeParameters(raw, &f.scores)
	}))
	must(r.Register("keep-filter", func(name string, raw json.RawMessage) (scheduling.Plugin, error) {
		f := &keepFilter{name: name}
		return f, scheduling.DecodeParameters(raw, &f.keep)
	}))
	must(r.Register("hooks", func(string, json.RawMessage) (scheduling.Plugin, error) { return h, nil }))
	return r
}

func build(t testing.TB, h *hooks, body string, opts ...scheduling.Option) *scheduling.Scheduler {
	t.Helper()
	cfg, err := scheduling.ParseEndpointPickerConfig([]byte("apiVersion: inference.networking.x-k8s.io/v1alpha1\nkind: EndpointPickerConfig\n" + body))
	if err != nil {
		t.Fatal(err)
	}
	s, err := scheduling.NewScheduler(cfg, testRegistry(t, h), opts...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func endpoints(addrs ...string) []*datastore.Endpoint {
	out := make([]*datastore.Endpoint, len(addrs))
	for i, a := range addrs {
		out[i] = schedtest.Endpoint(a, &datastore.Metrics{}, 0)
	}
	return out
}

func addresses(eps []*datastore.Endpoint) string {
	var s []string
	for _, ep := range eps {
		s = append(s, ep.Address)
	}
	return strings.Join(s, ",")
}

func TestScheduler_PrimaryAndFallbacksInScoreOrder(t *testing.T) {
	const cfg = `
plugins:
- type: fixed-scorer
  parameters: {a: 0.1, b: 0.9, c: 0.5, d: 0.7, e: 0.3}
schedulingProfiles:
- name: default
  plugins: [{pluginRef: fixed-scorer}]
`
	tests := []struct {
		name string
		opts []scheduling.Option
		want string
	}{
		{"default two fallbacks", nil, "b,d,c"},
		{"no fallbacks", []scheduling.Option{scheduling.WithFallbacks(0)}, "b"},
		{"more fallbacks than candidates", []scheduling.Option{scheduling.WithFallbacks(10)}, "b,d,c,e,a"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := build(t, nil, cfg, tt.opts...)
			res, err := s.Schedule(context.Background(), &scheduling.Request{}, endpoints("a", "b", "c", "d", "e"))
			if err != nil {
				t.Fatal(err)
			}
			if got := addresses(res.Endpoints()); got != tt.want {
				t.Fatalf("endpoints %s, want %s", got, tt.want)
			}
			if res.Primary().Address != "b" || addresses(res.Fallbacks()) != strings.TrimPrefix(strings.TrimPrefix(tt.want, "b"), ",") {
				t.Fatalf("primary %s fallbacks %s", res.Primary().Address, addresses(res.Fallbacks()))
			}
			if res.PrimaryProfile != "default" {
				t.Fatalf("primary profile %q", res.PrimaryProfile)
			}
		})
	}
}

func TestScheduler_WeightsDecide(t *testing.T) {
	tests := []struct {
		name       string
		wLow, wHot float64
		want       string
	}{
		{"heavier first scorer wins", 3, 1, "a"},
		{"heavier second scorer wins", 1, 3, "b"},
		{"zero weight disables a scorer", 0, 1, "b"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := build(t, nil, fmt.Sprintf(`
plugins:
- {type: fixed-scorer, name: likes-a, parameters: {a: 1, b: 0.2}}
- {type: fixed-scorer, name: likes-b, parameters: {a: 0, b: 1}}
schedulingProfiles:
- name: default
  plugins:
  - {pluginRef: likes-a, weight: %g}
  - {pluginRef: likes-b, weight: %g}
`, tt.wLow, tt.wHot))
			res, err := s.Schedule(context.Background(), &scheduling.Request{}, endpoints("a", "b"))
			if err != nil {
				t.Fatal(err)
			}
			if got := res.Primary().Address; got != tt.want {
				t.Fatalf("primary %s, want %s", got, tt.want)
			}
		})
	}
}

func TestScheduler_OutOfRangeScoresAreClamped(t *testing.T) {
	s := build(t, nil, `
plugins:
- {type: fixed-scorer, name: wild, parameters: {a: 50, b: -3, c: 1}}
- {type: fixed-scorer, name: tiebreak, parameters: {c: 0.1}}
`)
	res, err := s.Schedule(context.Background(), &scheduling.Request{}, endpoints("a", "b", "c"))
	if err != nil {
		t.Fatal(err)
	}
	// a's 50 counts as 1, so c (1 + 0.1) wins.
	if got := addresses(res.Endpoints()); got != "c,a,b" {
		t.Fatalf("endpoints %s, want c,a,b", got)
	}
}

func TestScheduler_FailuresCarryAReason(t *testing.T) {
	s := build(t, nil, `
plugins:
- {type: keep-filter, name: only-z, parameters: {z: true}}
- {type: queue-scorer}
`)
	tests := []struct {
		name       string
		ctx        func() context.Context
		eps        []*datastore.Endpoint
		reason     scheduling.Reason
		plugin     string
		noEndpoint bool
	}{
		{"no candidates", context.Background, nil, scheduling.ReasonNoCandidates, "", true},
		{"filters remove everything", context.Background, endpoints("a", "b"), scheduling.ReasonFilteredOut, "only-z (keep-filter)", true},
		{"canceled", func() context.Context {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			return ctx
		}, endpoints("z"), scheduling.ReasonCanceled, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.Schedule(tt.ctx(), &scheduling.Request{}, tt.eps)
			var se *scheduling.Error
			if !errors.As(err, &se) {
				t.Fatalf("err = %v, want *scheduling.Error", err)
			}
			if se.Reason != tt.reason || se.Plugin != tt.plugin {
				t.Fatalf("reason %q plugin %q, want %q %q (%v)", se.Reason, se.Plugin, tt.reason, tt.plugin, err)
			}
			if errors.Is(err, scheduling.ErrNoEndpoint) != tt.noEndpoint {
				t.Fatalf("errors.Is(ErrNoEndpoint) = %v, want %v", !tt.noEndpoint, tt.noEndpoint)
			}
		})
	}
	if res, err := s.Schedule(context.Background(), &scheduling.Request{}, endpoints("a", "z")); err != nil || res.Primary().Address != "z" {
		t.Fatalf("filter kept the wrong endpoint: %v %v", res, err)
	}
}

func TestScheduler_HooksSeeOneSnapshotAndRun(t *testing.T) {
	h := &hooks{}
	s := build(t, h, `
plugins:
- {type: hooks}
- {type: queue-scorer}
`)
	eps := endpoints("a", "b")
	fresh := schedtest.Endpoint("never-scraped", nil, 3)
	eps = append(eps, fresh)
	req := &scheduling.Request{ID: "r1"}
	res, err := s.Schedule(context.Background(), req, eps)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range h.seen {
		if c.Metrics == nil {
			t.Fatalf("%s: nil metrics in the snapshot", c.Endpoint.Address)
		}
		if want := c.Endpoint != fresh; c.HasMetrics != want {
			t.Fatalf("%s: HasMetrics %v, want %v", c.Endpoint.Address, c.HasMetrics, want)
		}
	}
	if h.seen[2].InFlight != 3 {
		t.Fatalf("in-flight %d, want 3", h.seen[2].InFlight)
	}
	s.PreRequest(context.Background(), req, res, res.Primary())
	s.PreRequest(context.Background(), req, res, res.Fallbacks()[0])
	s.ResponseComplete(context.Background(), req, &scheduling.Response{StatusCode: 200}, res.Fallbacks()[0])
	if got, want := strings.Join(h.pre, ","), addresses(res.Endpoints()[:2]); got != want {
		t.Fatalf("PreRequest targets %s, want %s", got, want)
	}
	if len(h.done) != 1 || !strings.HasSuffix(h.done[0], ":200") {
		t.Fatalf("ResponseComplete calls %v", h.done)
	}
}

func TestScheduler_PrefixAffinityFollowsPreRequest(t *testing.T) {
	s, err := plugins.NewDefaultScheduler()
	if err != nil {
		t.Fatal(err)
	}
	eps := endpoints("10.0.0.1:8000", "10.0.0.2:8000", "10.0.0.3:8000", "10.0.0.4:8000")
	prompt := schedtest.Prompt(2000, "You are a helpful assistant.", 1)
	first := &scheduling.Request{Model: "m", Prompt: prompt}
	res, err := s.Schedule(context.Background(), first, eps)
	if err != nil {
		t.Fatal(err)
	}
	chosen := res.Primary()
	s.PreRequest(context.Background(), first, res, chosen)
	for i := range 5 {
		r := &scheduling.Request{Model: "m", Prompt: prompt}
		res, err := s.Schedule(context.Background(), r, eps)
		if err != nil {
			t.Fatal(err)
		}
		if res.Primary() != chosen {
			t.Fatalf("request %d went to %s, want the cached %s", i, res.Primary().Address, chosen.Address)
		}
	}
	s.ForgetEndpoint(chosen.Address)
	other := 0
	for range 40 {
		res, err := s.Schedule(context.Background(), &scheduling.Request{Model: "m", Prompt: prompt}, eps)
		if err != nil {
			t.Fatal(err)
		}
		if res.Primary() != chosen {
			other++
		}
	}
	if other == 0 {
		t.Fatal("affinity survived ForgetEndpoint")
	}
}

func TestScheduler_ConcurrentCycles(t *testing.T) {
	s, err := plugins.NewDefaultScheduler()
	if err != nil {
		t.Fatal(err)
	}
	eps := schedtest.Fleet(20, 3)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				r := &scheduling.Request{Model: "m", Prompt: schedtest.Prompt(1000, "shared", (g+i)%7)}
				res, err := s.Schedule(context.Background(), r, eps)
				if err != nil {
					t.Error(err)
					return
				}
				if len(res.Endpoints()) != 3 {
					t.Errorf("got %d endpoints, want 3", len(res.Endpoints()))
				}
				s.PreRequest(context.Background(), r, res, res.Primary())
				if i%50 == 0 {
					eps[g].SetMetrics(&datastore.Metrics{WaitingQueueSize: i})
				}
			}
		}()
	}
	wg.Wait()
}
