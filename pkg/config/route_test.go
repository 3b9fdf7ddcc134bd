package config

import (
	"net/http"
	"testing"
)

func TestRouteMatch_Matches(t *testing.T) {
	h := http.Header{}
	h.Add("X-Tenant", "a")
	h.Add("X-Tenant", "b")
	tests := []struct {
		name        string
		match       RouteMatch
		model, path string
		want        bool
	}{
		{"empty matches anything", RouteMatch{}, "", "/x", true},
		{"exact model", RouteMatch{Model: &ModelMatch{Type: ModelMatchExact, Value: "llama"}}, "llama", "/", true},
		{"exact model is not a prefix", RouteMatch{Model: &ModelMatch{Value: "llama"}}, "llama-2", "/", false},
		{"prefix model", RouteMatch{Model: &ModelMatch{Type: ModelMatchPrefix, Value: "llama-"}}, "llama-2", "/", true},
		{"prefix model mismatch", RouteMatch{Model: &ModelMatch{Type: ModelMatchPrefix, Value: "llama-"}}, "qwen", "/", false},
		{"path prefix whole segment", RouteMatch{Path: &PathMatch{Value: "/v1"}}, "", "/v1/chat/completions", true},
		{"path prefix itself", RouteMatch{Path: &PathMatch{Value: "/v1/"}}, "", "/v1", true},
		{"path prefix not partial segment", RouteMatch{Path: &PathMatch{Value: "/v1"}}, "", "/v10/x", false},
		{"path prefix root", RouteMatch{Path: &PathMatch{Type: PathMatchPathPrefix, Value: "/"}}, "", "/anything", true},
		{"path exact", RouteMatch{Path: &PathMatch{Type: PathMatchExact, Value: "/v1/completions"}}, "", "/v1/completions", true},
		{"path exact mismatch", RouteMatch{Path: &PathMatch{Type: PathMatchExact, Value: "/v1/completions"}}, "", "/v1/completions/x", false},
		{"header any value, case-insensitive name", RouteMatch{Headers: []HeaderMatch{{Name: "x-tenant", Value: "b"}}}, "", "/", true},
		{"header missing value", RouteMatch{Headers: []HeaderMatch{{Name: "x-tenant", Value: "c"}}}, "", "/", false},
		{"all parts must hold", RouteMatch{Model: &ModelMatch{Value: "m"}, Headers: []HeaderMatch{{Name: "x-tenant", Value: "a"}}}, "other", "/", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.match.Matches(tc.model, tc.path, h); got != tc.want {
				t.Errorf("Matches(%q, %q) = %v, want %v", tc.model, tc.path, got, tc.want)
			}
		})
	}
}

func TestSelectRoute_MostSpecificMatchWins(t *testing.T) {
	route := func(name, spec string) string {
		return "apiVersion: igw.dev/v1alpha1\nkind: Route\nmetadata: {name: " + name + "}\nspec: " + spec + "\n"
	}
	cfg, err := Parse("r.yaml", file(serverDoc, poolDoc,
		route("catch-all", "{backends: [{pool: llama}]}"),
		route("prefix", "{matches: [{model: {type: Prefix, value: llama}}], backends: [{pool: llama}]}"),
		route("longer-prefix", "{matches: [{model: {type: Prefix, value: llama-3}}], backends: [{pool: llama}]}"),
		route("exact", "{matches: [{model: {value: llama-3-8b}}], backends: [{pool: llama}]}"),
		route("exact-tenant", "{matches: [{model: {value: llama-3-8b}, headers: [{name: x-tenant, value: a}]}], backends: [{pool: llama}]}"),
		route("exact-path", "{matches: [{model: {value: llama-3-8b}, path: {type: Exact, value: /v1/completions}}], backends: [{pool: llama}]}"),
		route("second-match", "{matches: [{model: {value: a}}, {model: {value: b}}], backends: [{pool: llama}]}"),
	))
	if err != nil {
		t.Fatal(err)
	}
	tenant := http.Header{"X-Tenant": {"a"}}
	tests := []struct {
		model, path string
		header      http.Header
		want        string
		wantIndex   int
	}{
		{"mistral", "/v1/chat/completions", nil, "catch-all", -1},
		{"", "/v1/chat/completions", nil, "catch-all", -1},
		{"llama-2", "/v1/chat/completions", nil, "prefix", 0},
		{"llama-3-70b", "/v1/chat/completions", nil, "longer-prefix", 0},
		{"llama-3-8b", "/v1/chat/completions", nil, "exact", 0},
		{"llama-3-8b", "/v1/chat/completions", tenant, "exact-tenant", 0},
		{"llama-3-8b", "/v1/completions", nil, "exact-path", 0},
		{"llama-3-8b", "/v1/completions", tenant, "exact-tenant", 0},
		{"b", "/", nil, "second-match", 1},
	}
	for _, tc := range tests {
		r, i := cfg.SelectRoute(tc.model, tc.path, tc.header)
		if r == nil || r.Name != tc.want || i != tc.wantIndex {
			name := "<nil>"
			if r != nil {
				name = r.Name
			}
			t.Errorf("SelectRoute(%q, %q, %v) = %s, %d; want %s, %d", tc.model, tc.path, tc.header, name, i, tc.want, tc.wantIndex)
		}
	}
}

func TestSelectRoute_EarlierDocumentBreaksTies(t *testing.T) {
	route := func(name, spec string) string {
		return "apiVersion: igw.dev/v1alpha1\nkind: Route\nmetadata: {name: " + name + "}\nspec: " + spec + "\n"
	}
	cfg, err := Parse("r.yaml", file(serverDoc, poolDoc,
		route("first", "{matches: [{model: {value: m}, headers: [{name: a, value: \"1\"}]}], backends: [{pool: llama}]}"),
		route("second", "{matches: [{model: {value: m}, headers: [{name: b, value: \"1\"}]}], backends: [{pool: llama}]}"),
	))
	if err != nil {
		t.Fatal(err)
	}
	h := http.Header{"A": {"1"}, "B": {"1"}}
	if r, _ := cfg.SelectRoute("m", "/", h); r == nil || r.Name != "first" {
		t.Errorf("tie went to %v", r)
	}
	if r, _ := cfg.SelectRoute("m", "/", http.Header{"B": {"1"}}); r == nil || r.Name != "second" {
		t.Errorf("got %v", r)
	}
	if r, _ := cfg.SelectRoute("m", "/", nil); r != nil {
		t.Errorf("no route should match without headers, got %s", r.Name)
	}
}
