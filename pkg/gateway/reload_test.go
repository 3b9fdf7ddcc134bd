package gateway

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/igw-dev/igw/pkg/openai"
)

// epcYAML is an EndpointPickerConfig with the given queue-scorer weight.
func epcYAML(queueWeight string) string {
	return `---
apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: queue-scorer
- type: kv-cache-utilization-scorer
- type: prefix-cache-scorer
schedulingProfiles:
- name: default
  plugins:
  - pluginRef: queue-scorer
    weight: ` + queueWeight + `
  - pluginRef: kv-cache-utilization-scorer
    weight: 2
  - pluginRef: prefix-cache-scorer
    weight: 3
`
}

const invalidEPC = `---
apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: no-such-scorer
`

func modelIDs(t *testing.T, c *http.Client, s *Server) []string {
	t.Helper()
	var list openai.ModelList
	if r := get(t, c, "http://"+s.Addr()+"/v1/models"); json.Unmarshal([]byte(r.body), &list) != nil {
		t.Fatalf("/v1/models: %s", r.body)
	}
	var ids []string
	for _, m := range list.Data {
		ids = append(ids, m.ID)
	}
	return ids
}

func TestGateway_ReloadSwapsRoutesAndKeepsScheduler(t *testing.T) {
	a, b := newFakeServer(t), newFakeServer(t)
	pools := poolYAML("pool-a", a.addr) + poolYAML("pool-b", b.addr)
	routeA := routeYAML("a", "  matches: [{model: {value: model-a}}]\n  backends: [{pool: pool-a}]\n")
	routeB := routeYAML("b", "  matches: [{model: {value: model-b}}]\n  backends: [{pool: pool-b}]\n")
	routeC := routeYAML("c", "  matches: [{model: {value: model-c}}]\n  backends: [{pool: pool-a}]\n")

	s := startGateway(t, parseConfig(t, pools, routeA, routeB, epcYAML("2")), Options{})
	waitCandidates(t, s, "pool-a", 1)
	waitCandidates(t, s, "pool-b", 1)
	c := newClient(t)
	sched := s.engine.Scheduler()

	expect := func(model string, status int, served string) {
		t.Helper()
		r := post(t, c, s, "/v1/chat/completions", chatBody(model))
		if r.status != status || r.header.Get(HeaderDestinationServed) != served {
			t.Errorf("%s: %d served by %q, want %d by %q", model, r.status, r.header.Get(HeaderDestinationServed), status, served)
		}
	}
	expect("model-a", http.StatusOK, a.addr)
	expect("model-c", http.StatusNotFound, "")

	if err := s.Reload(parseConfig(t, pools, routeB, routeC, epcYAML("2"))); err != nil {
		t.Fatal(err)
	}
	expect("model-a", http.StatusNotFound, "")
	expect("model-b", http.StatusOK, b.addr)
	expect("model-c", http.StatusOK, a.addr)
	if ids := modelIDs(t, c, s); !slices.Equal(ids, []string{"model-b", "model-c"}) {
		t.Errorf("/v1/models after reload: %v", ids)
	}
	if s.engine.Scheduler() != sched {
		t.Error("an unchanged EndpointPickerConfig rebuilt the scheduler (and lost its prefix index)")
	}

	// A changed EndpointPickerConfig builds a new scheduler.
	if err := s.Reload(parseConfig(t, pools, routeB, routeC, epcYAML("5"))); err != nil {
		t.Fatal(err)
	}
	if s.engine.Scheduler() == sched {
		t.Error("a changed EndpointPickerConfig kept the old scheduler")
	}
	expect("model-c", http.StatusOK, a.addr)

	// Removing a pool removes its endpoints; its route goes with it.
	if err := s.Reload(parseConfig(t, poolYAML("pool-a", a.addr), routeC, epcYAML("5"))); err != nil {
		t.Fatal(err)
	}
	if s.engine.Store().Pool("default/pool-b") != nil {
		t.Error("removed pool still in the datastore")
	}
	expect("model-b", http.StatusNotFound, "")
	expect("model-c", http.StatusOK, a.addr)
}

func TestGateway_ReloadRejectsInvalidPickerConfigAndKeepsServing(t *testing.T) {
	a := newFakeServer(t)
	pool := poolYAML("pool-a", a.addr)
	route := routeYAML("a", "  matches: [{model: {value: model-a}}]\n  backends: [{pool: pool-a}]\n")
	s := startGateway(t, parseConfig(t, pool, route), Options{})
	waitCandidates(t, s, "pool-a", 1)
	c := newClient(t)
	before := s.Director().Policy()

	newRoute := routeYAML("d", "  matches: [{model: {value: model-d}}]\n  backends: [{pool: pool-a}]\n")
	err := s.Reload(parseConfig(t, pool, newRoute, invalidEPC))
	if err == nil {
		t.Fatal("Reload accepted an EndpointPickerConfig with an unknown plugin type")
	}
	if msg := err.Error(); !strings.Contains(msg, "no-such-scorer") || !strings.Contains(msg, "test.yaml") {
		t.Errorf("error %q should name the plugin type and the file", msg)
	}
	if s.Director().Policy() != before {
		t.Error("the running configuration was replaced")
	}
	if r := post(t, c, s, "/v1/chat/completions", chatBody("model-a")); r.status != http.StatusOK {
		t.Errorf("old route after a rejected reload: %d %s", r.status, r.body)
	}
	if r := post(t, c, s, "/v1/chat/completions", chatBody("model-d")); r.status != http.StatusNotFound {
		t.Errorf("route of the rejected config: %d", r.status)
	}
}

// The pool list and the pools are read separately; a reload that deletes
// a pool in between must not crash /readyz (it did: nil pool).
func TestGateway_ReadyzSurvivesPoolRemovalDuringReload(t *testing.T) {
	srv := newFakeServer(t)
	srv.noScrape.Store(true) // never ready, so /readyz keeps inspecting the pools
	other := newFakeServer(t)
	other.noScrape.Store(true)
	route := routeYAML("r", "  matches: [{model: {value: m}}]\n  backends: [{pool: p}]\n")
	with := parseConfig(t, poolYAML("p", srv.addr), poolYAML("extra", other.addr), route)
	without := parseConfig(t, poolYAML("p", srv.addr), route)
	s := startGateway(t, without, Options{})
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			cfg := with
			if i%2 == 1 {
				cfg = without
			}
			if err := s.Reload(cfg); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	// In process, so the check runs often enough to hit the window between
	// the two reads; bounded in time, since after readyGrace (5 s) /readyz
	// says ready anyway.
	h := s.AdminHandler()
	check := func() (code int, panicked any) {
		defer func() { panicked = recover() }()
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
		return rec.Code, nil
	}
	for deadline := time.Now().Add(time.Second); time.Now().Before(deadline); {
		code, p := check()
		if p != nil {
			t.Errorf("/readyz panicked during reloads: %v", p)
			break
		}
		if code != http.StatusServiceUnavailable {
			t.Errorf("/readyz = %d with no scraped endpoint", code)
			break
		}
	}
	close(stop)
	wg.Wait()
}
