package director

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
		{"exact model", RouteMatch{Model: "llama"}, "llama", "/", true},
		{"exact model is not a prefix", RouteMatch{Model: "llama"}, "llama-2", "/", false},
		{"prefix model", RouteMatch{Model: "llama-", ModelPrefix: true}, "llama-2", "/", true},
		{"prefix model mismatch", RouteMatch{Model: "llama-", ModelPrefix: true}, "qwen", "/", false},
		{"path prefix whole segment", RouteMatch{Path: "/v1"}, "", "/v1/chat/completions", true},
		{"path prefix itself", RouteMatch{Path: "/v1/"}, "", "/v1", true},
		{"path prefix not partial segment", RouteMatch{Path: "/v1"}, "", "/v10/x", false},
		{"path prefix root", RouteMatch{Path: "/"}, "", "/anything", true},
		{"path exact", RouteMatch{Path: "/v1/completions", PathExact: true}, "", "/v1/completions", true},
		{"path exact mismatch", RouteMatch{Path: "/v1/completions", PathExact: true}, "", "/v1/completions/x", false},
		{"header any value, case-insensitive name", RouteMatch{Headers: []HeaderMatch{{Name: "x-tenant", Value: "b"}}}, "", "/", true},
		{"header missing value", RouteMatch{Headers: []HeaderMatch{{Name: "x-tenant", Value: "c"}}}, "", "/", false},
		{"all parts must hold", RouteMatch{Model: "m", Headers: []HeaderMatch{{Name: "x-tenant", Value: "a"}}}, "other", "/", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.match.matches(tc.model, tc.path, h); got != tc.want {
				t.Errorf("matches(%q, %q) = %v, want %v", tc.model, tc.path, got, tc.want)
			}
		})
	}
}

func TestSelectRoute_MostSpecificMatchWins(t *testing.T) {
	route := func(name string, ms ...RouteMatch) *Route {
		return NewRoute(name, ms, nil, 0, 0, []Backend{{Pool: "p", Weight: 1}})
	}
	routes := []*Route{
		route("catch-all"),
		route("prefix", RouteMatch{Model: "llama", ModelPrefix: true}),
		route("longer-prefix", RouteMatch{Model: "llama-3", ModelPrefix: true}),
		route("exact", RouteMatch{Model: "llama-3-8b"}),
		route("exact-tenant", RouteMatch{Model: "llama-3-8b", Headers: []HeaderMatch{{Name: "x-tenant", Value: "a"}}}),
		route("exact-path", RouteMatch{Model: "llama-3-8b", Path: "/v1/completions", PathExact: true}),
		route("second-match", RouteMatch{Model: "a"}, RouteMatch{Model: "b"}),
	}
	tenant := http.Header{"X-Tenant": {"a"}}
	tests := []struct {
		model, path string
		header      http.Header
		want        string
	}{
		{"mistral", "/v1/chat/completions", nil, "catch-all"},
		{"", "/v1/chat/completions", nil, "catch-all"},
		{"llama-2", "/v1/chat/completions", nil, "prefix"},
		{"llama-3-70b", "/v1/chat/completions", nil, "longer-prefix"},
		{"llama-3-8b", "/v1/chat/completions", nil, "exact"},
		{"llama-3-8b", "/v1/chat/completions", tenant, "exact-tenant"},
		{"llama-3-8b", "/v1/completions", nil, "exact-path"},
		{"llama-3-8b", "/v1/completions", tenant, "exact-tenant"},
		{"b", "/", nil, "second-match"},
	}
	for _, tc := range tests {
		if r := SelectRoute(routes, tc.model, "", tc.path, tc.header); r == nil || r.Name != tc.want {
			t.Errorf("SelectRoute(%q, %q, %v) = %v; want %s", tc.model, tc.path, tc.header, r, tc.want)
		}
	}
}

func TestSelectRoute_EarlierRouteBreaksTies(t *testing.T) {
	route := func(name, header string) *Route {
		return NewRoute(name, []RouteMatch{{Model: "m", Headers: []HeaderMatch{{Name: header, Value: "1"}}}}, nil, 0, 0, []Backend{{Pool: "p", Weight: 1}})
	}
	routes := []*Route{route("first", "a"), route("second", "b")}
	if r := SelectRoute(routes, "m", "", "/", http.Header{"A": {"1"}, "B": {"1"}}); r == nil || r.Name != "first" {
		t.Errorf("tie went to %v", r)
	}
	if r := SelectRoute(routes, "m", "", "/", http.Header{"B": {"1"}}); r == nil || r.Name != "second" {
		t.Errorf("got %v", r)
	}
	if r := SelectRoute(routes, "m", "", "/", nil); r != nil {
		t.Errorf("no route should match without headers, got %s", r.Name)
	}
}

func TestSelectRoute_HostnamesRestrictRoutes(t *testing.T) {
	api := &Route{Name: "api", Hostnames: []string{"api.example.com"}, Backends: []Backend{{Pool: "p", Weight: 1}}, Total: 1}
	wild := &Route{Name: "wild", Hostnames: []string{"*.example.com"}, Backends: []Backend{{Pool: "p", Weight: 1}}, Total: 1}
	for _, tc := range []struct {
		routes []*Route
		host   string
		want   string
	}{
		{[]*Route{api}, "api.example.com", "api"},
		{[]*Route{api}, "API.example.com:8080", "api"},
		{[]*Route{api}, "other.example.com", ""},
		{[]*Route{api}, "", ""},
		{[]*Route{wild}, "a.b.example.com", "wild"},
		{[]*Route{wild}, "example.com", ""},
	} {
		r := SelectRoute(tc.routes, "m", tc.host, "/v1/chat/completions", nil)
		got := ""
		if r != nil {
			got = r.Name
		}
		if got != tc.want {
			t.Errorf("host %q: route %q, want %q", tc.host, got, tc.want)
		}
	}
}

func TestRoute_UpstreamPathRewrites(t *testing.T) {
	prefix := "/openai/v1"
	r := &Route{Matches: []RouteMatch{{Path: "/v1"}}, PathRewrite: &PathRewrite{Prefix: &prefix}}
	if got := r.UpstreamPath("/v1/chat/completions"); got != "/openai/v1/chat/completions" {
		t.Errorf("prefix rewrite = %q", got)
	}
	root := "/"
	r.PathRewrite.Prefix = &root
	if got := r.UpstreamPath("/v1"); got != "/" {
		t.Errorf("prefix rewrite of the whole prefix to / = %q", got)
	}
	r.PathRewrite = &PathRewrite{Full: "/v1/completions"}
	if got := r.UpstreamPath("/v1/chat/completions"); got != "/v1/completions" {
		t.Errorf("full rewrite = %q", got)
	}
	r.PathRewrite = nil
	if got := r.UpstreamPath("/v1/x"); got != "/v1/x" {
		t.Errorf("no rewrite = %q", got)
	}
}

func TestHeaderModifier_CannotSetRoutingHeaders(t *testing.T) {
	h := http.Header{"X-Old": {"1"}, "X-Keep": {"k"}}
	m := &HeaderModifier{Set: []HeaderMatch{{Name: "X-Tenant", Value: "a"}}, Add: []HeaderMatch{{Name: "X-Keep", Value: "k2"}}, Remove: []string{"x-old"}}
	m.apply(h)
	if h.Get("X-Tenant") != "a" || len(h.Values("X-Keep")) != 2 || h.Get("X-Old") != "" {
		t.Errorf("edited headers = %v", h)
	}
	if !IsRoutingHeader("x-gateway-destination-endpoint") || IsRoutingHeader("x-tenant") {
		t.Error("IsRoutingHeader")
	}
}
