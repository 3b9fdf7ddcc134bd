package datastore

import (
	"testing"
	"time"
)

func TestStore_SetPoolKeepsUnchangedEndpoints(t *testing.T) {
	var seen [][]*Endpoint
	s := NewStore(func(all []*Endpoint) { seen = append(seen, all) })
	s.SetPool("ns/p", []EndpointSpec{
		{Name: "b", Address: "127.0.0.1:2"},
		{Name: "a", Address: "127.0.0.1:1", Labels: map[string]string{"x": "1"}},
	})
	p := s.Pool("ns/p")
	if len(p.Endpoints) != 2 || p.Endpoints[0].Name != "a" || p.Endpoints[0].Engine != EngineVLLM {
		t.Fatalf("endpoints %+v", p.Endpoints)
	}
	a, b := p.Endpoints[0], p.Endpoints[1]
	a.AddInFlight(3)
	b.SetMetrics(&Metrics{WaitingQueueSize: 7, UpdateTime: time.Now()})
	b.SetReady(true)

	// a unchanged, b relabelled, c new.
	s.SetPool("ns/p", []EndpointSpec{
		{Name: "a", Address: "127.0.0.1:1", Labels: map[string]string{"x": "1"}},
		{Name: "b", Address: "127.0.0.1:2", Labels: map[string]string{"y": "2"}},
		{Name: "c", Address: "127.0.0.1:3"},
	})
	p = s.Pool("ns/p")
	if p.Endpoints[0] != a || a.InFlight() != 3 {
		t.Error("unchanged endpoint was replaced")
	}
	if p.Endpoints[1] == b || p.Endpoints[1].Labels["y"] != "2" {
		t.Error("relabelled endpoint was not replaced")
	}
	if m := p.Endpoints[1].Metrics(); m == nil || m.WaitingQueueSize != 7 || !p.Endpoints[1].Ready() {
		t.Error("replaced endpoint lost its metrics or readiness")
	}
	if len(seen) != 2 || len(seen[1]) != 3 {
		t.Fatalf("onChange calls %d", len(seen))
	}
	s.DeletePool("ns/p")
	if s.Pool("ns/p") != nil || len(seen) != 3 || len(seen[2]) != 0 {
		t.Error("delete did not remove the pool or notify")
	}
}

func TestStore_PriorityDefaultsToZero(t *testing.T) {
	s := NewStore(nil)
	s.SetObjectives(map[string]map[string]int32{"ns/p": {"chat": 10, "batch": -1}})
	for _, tc := range []struct {
		pool, obj string
		want      int32
	}{{"ns/p", "chat", 10}, {"ns/p", "batch", -1}, {"ns/p", "unknown", 0}, {"ns/p", "", 0}, {"ns/other", "chat", 0}} {
		if got := s.Priority(tc.pool, tc.obj); got != tc.want {
			t.Errorf("Priority(%s, %s) = %d, want %d", tc.pool, tc.obj, got, tc.want)
		}
	}
}

func TestStore_RewritePrecedenceAndWeights(t *testing.T) {
	s := NewStore(nil)
	s.SetRewrites(map[string][]RewriteRule{"ns/p": {
		{Source: "catch-all", Targets: []RewriteTarget{{Model: "default-v2"}}},
		{Source: "old", Models: []string{"llama"}, Targets: []RewriteTarget{{Model: "llama-v1", Weight: 90}, {Model: "llama-v2", Weight: 10}}},
		{Source: "newer", Models: []string{"llama"}, Targets: []RewriteTarget{{Model: "never"}}},
	}})
	counts := map[string]int{}
	for i := range 1000 {
		m, src := s.Rewrite("ns/p", "llama", float64(i)/1000)
		if src != "old" {
			t.Fatalf("rule %q applied, want the oldest exact match", src)
		}
		counts[m]++
	}
	if counts["llama-v1"] != 900 || counts["llama-v2"] != 100 {
		t.Errorf("split %v, want 900/100", counts)
	}
	if m, src := s.Rewrite("ns/p", "qwen", 0.5); m != "default-v2" || src != "catch-all" {
		t.Errorf("catch-all: %s %s", m, src)
	}
	if m, _ := s.Rewrite("ns/other", "qwen", 0.5); m != "qwen" {
		t.Errorf("no rules: %s", m)
	}
	s.SetRewrites(map[string][]RewriteRule{"ns/p": {{Models: []string{"a"}, Targets: []RewriteTarget{{Model: "x"}, {Model: "y"}}}}})
	if m, _ := s.Rewrite("ns/p", "a", 0.75); m != "y" {
		t.Errorf("uniform split picked %s for 0.75", m)
	}
}

// The concurrency limit is unknown until a snapshot shows requests
// waiting (the server was full); from then on it is the most the server
// was seen running, so it grows when a server takes more than the
// estimate (igw probing with one request beyond it).
func TestEndpoint_LearnsItsConcurrencyLimitWhenFull(t *testing.T) {
	e := NewEndpoint("a", "10.0.0.1:8000", "p", "vllm", nil)
	for _, step := range []struct {
		m    Metrics
		want int
	}{
		{Metrics{RunningRequests: 3}, 0},                      // never full: unknown
		{Metrics{RunningRequests: 2, WaitingQueueSize: 2}, 3}, // full: the most seen running
		{Metrics{RunningRequests: 8, WaitingQueueSize: 2}, 8},
		{Metrics{RunningRequests: 6, WaitingQueueSize: 1}, 8}, // KV-bound for a while: stays
		{Metrics{RunningRequests: 9, WaitingQueueSize: 0}, 9}, // took one more
	} {
		e.SetMetrics(&step.m)
		if got := e.ConcurrencyLimit(); got != step.want {
			t.Errorf("after %+v: ConcurrencyLimit = %d, want %d", step.m, got, step.want)
		}
	}
}
