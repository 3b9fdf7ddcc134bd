package engine_test

import (
	"strings"
	"testing"

	"github.com/igw-dev/igw/pkg/director"
	"github.com/igw-dev/igw/pkg/engine"
)

// TestEngine_RoutesOfTheStandaloneExample: the example file's routes send
// each model to its pool, and an unknown model to none (the Director then
// answers 404).
func TestEngine_RoutesOfTheStandaloneExample(t *testing.T) {
	cfg, err := schema.Load("testdata/standalone.yaml")
	if err != nil {
		t.Fatal(err)
	}
	e, err := engine.New(cfg, engine.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	routes := e.Director().Policy().Routes
	for model, want := range map[string]string{"llama-3.1-8b": "default/llama", "qwen2.5-7b": "default/qwen", "qwen2.5-7b-sql": "default/qwen"} {
		r := director.SelectRoute(routes, model, "", "/v1/chat/completions", nil)
		if r == nil || r.Backends[0].Pool != want {
			t.Errorf("SelectRoute(%q) = %v, want the route to pool %s", model, r, want)
		}
	}
	if r := director.SelectRoute(routes, "gpt-4", "", "/v1/chat/completions", nil); r != nil {
		t.Errorf("an unknown model was routed to %s", r.Name)
	}
}

// TestEngine_OnePoolKeepsItsRoutesOnly: igw epp serving one pool of a
// standalone file keeps the routes that send to it (they decide which
// models it takes) with that pool as their only backend.
func TestEngine_OnePoolKeepsItsRoutesOnly(t *testing.T) {
	cfg, err := schema.Load("testdata/standalone.yaml")
	if err != nil {
		t.Fatal(err)
	}
	e, err := engine.New(cfg, engine.Options{Pool: true, PoolName: "qwen"})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if e.Pool() != "default/qwen" {
		t.Fatalf("pool %q", e.Pool())
	}
	for _, r := range e.Director().Policy().Routes {
		for _, b := range r.Backends {
			if b.Pool != "default/qwen" {
				t.Errorf("route %s keeps backend %+v", r.Name, b)
			}
		}
	}
	if director.SelectRoute(e.Director().Policy().Routes, "llama-3.1-8b", "", "/v1/chat/completions", nil) != nil {
		t.Error("the qwen picker takes llama requests")
	}
	if _, err := engine.New(cfg, engine.Options{Pool: true, PoolName: "nope"}); err == nil || !strings.Contains(err.Error(), "default/llama") {
		t.Errorf("unknown pool: %v", err)
	}
}
