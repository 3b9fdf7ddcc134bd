package gateway

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/igw-dev/igw/pkg/director"
	"github.com/igw-dev/igw/pkg/openai"
)

func TestGateway_RoutesByModelToPools(t *testing.T) {
	a0, a1, b0 := newFakeServer(t), newFakeServer(t), newFakeServer(t)
	s := startGateway(t, parseConfig(t,
		poolYAML("pool-a", a0.addr, a1.addr),
		poolYAML("pool-b", b0.addr),
		routeYAML("a", "  matches: [{model: {value: model-a}}]\n  backends: [{pool: pool-a}]\n"),
		routeYAML("b", "  matches: [{model: {value: model-b}}, {model: {type: Prefix, value: model-b-}}]\n  backends: [{pool: pool-b}]\n"),
	), Options{})
	waitCandidates(t, s, "pool-a", 2)
	waitCandidates(t, s, "pool-b", 1)
	c := newClient(t)

	for _, tc := range []struct {
		model string
		pool  []string
	}{
		{"model-a", []string{a0.addr, a1.addr}},
		{"model-b", []string{b0.addr}},
		{"model-b-sql-lora", []string{b0.addr}},
	} {
		for range 10 {
			r := post(t, c, s, "/v1/chat/completions", chatBody(tc.model))
			if r.status != http.StatusOK || r.body != chatAnswer {
				t.Fatalf("%s: %d %s", tc.model, r.status, r.body)
			}
			if served := r.header.Get(HeaderDestinationServed); !slices.Contains(tc.pool, served) {
				t.Fatalf("%s served by %q, want one of %v", tc.model, served, tc.pool)
			}
		}
	}
	if a0.hits.Load()+a1.hits.Load() != 10 || b0.hits.Load() != 20 {
		t.Errorf("hits a=%d+%d b=%d, want 10 and 20", a0.hits.Load(), a1.hits.Load(), b0.hits.Load())
	}

	for _, tc := range []struct {
		name, body string
		status     int
		param      string
	}{
		{"unknown model", chatBody("model-c"), http.StatusNotFound, "model"},
		{"no model", `{"messages":[{"role":"user","content":"hi"}]}`, http.StatusBadRequest, "model"},
		{"not JSON", `{"model":`, http.StatusBadRequest, ""},
	} {
		r := post(t, c, s, "/v1/chat/completions", tc.body)
		var e openai.ErrorResponse
		if r.status != tc.status || json.Unmarshal([]byte(r.body), &e) != nil || e.Error.Type != openai.ErrTypeInvalidRequest || e.Error.Param != tc.param {
			t.Errorf("%s: %d %s; want %d with param %q", tc.name, r.status, r.body, tc.status, tc.param)
		}
	}
	if a0.hits.Load()+a1.hits.Load()+b0.hits.Load() != 30 {
		t.Error("a rejected request reached a model server")
	}
}

func TestGateway_WeightedSplitBetweenPoolAndURL(t *testing.T) {
	stable, canary := newFakeServer(t), newFakeServer(t)
	s := startGateway(t, parseConfig(t,
		poolYAML("stable", stable.addr),
		routeYAML("split", "  matches: [{model: {value: m}}]\n  backends:\n  - {pool: stable, weight: 3}\n  - {url: \"http://"+canary.addr+"/\", weight: 1}\n"),
	), Options{})
	waitCandidates(t, s, "stable", 1)
	c := newClient(t)
	const n = 600
	for range n {
		r := post(t, c, s, "/v1/chat/completions", chatBody("m"))
		if r.status != http.StatusOK {
			t.Fatalf("%d %s", r.status, r.body)
		}
		if want := canary.addr; r.header.Get(HeaderDestinationServed) != want && r.header.Get(HeaderDestinationServed) != stable.addr {
			t.Fatalf("served by %q", r.header.Get(HeaderDestinationServed))
		}
	}
	got := canary.hits.Load()
	// Expected 150 (σ ≈ 10.6): the band is over 4.5σ on each side.
	if got < 100 || got > 200 || stable.hits.Load()+got != n {
		t.Errorf("canary got %d and the pool %d of %d requests; want about a quarter to the canary", got, stable.hits.Load(), n)
	}
	if h, _ := canary.last(); h.Get(HeaderModelName) != "m" {
		t.Errorf("URL backend saw %s %q", HeaderModelName, h.Get(HeaderModelName))
	}
}

func TestGateway_HeaderAndPathMatches(t *testing.T) {
	def, tenant, legacy := newFakeServer(t), newFakeServer(t), newFakeServer(t)
	s := startGateway(t, parseConfig(t,
		poolYAML("default-pool", def.addr),
		poolYAML("tenant-pool", tenant.addr),
		routeYAML("default", "  matches: [{model: {value: m}}]\n  backends: [{pool: default-pool}]\n"),
		routeYAML("tenant", "  matches: [{model: {value: m}, headers: [{name: X-Tenant, value: team-b}]}]\n  backends: [{pool: tenant-pool}]\n"),
		routeYAML("legacy", "  matches: [{model: {value: m}, path: {type: Exact, value: /v1/completions}}]\n  backends: [{url: \"http://"+legacy.addr+"\"}]\n"),
	), Options{})
	waitCandidates(t, s, "default-pool", 1)
	waitCandidates(t, s, "tenant-pool", 1)
	c := newClient(t)
	completion := `{"model":"m","prompt":"Hello","max_tokens":4}`
	for _, tc := range []struct {
		name, path, body string
		headers          []string
		want             *fakeServer
	}{
		{"model only", "/v1/chat/completions", chatBody("m"), nil, def},
		{"header match", "/v1/chat/completions", chatBody("m"), []string{"x-tenant: team-b"}, tenant},
		{"header with another value", "/v1/chat/completions", chatBody("m"), []string{"x-tenant: team-c"}, def},
		{"exact path match", "/v1/completions", completion, nil, legacy},
		{"a header condition beats a path condition", "/v1/completions", completion, []string{"X-Tenant: team-b"}, tenant},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := tc.want.hits.Load()
			r := post(t, c, s, tc.path, tc.body, tc.headers...)
			if r.status != http.StatusOK || r.header.Get(HeaderDestinationServed) != tc.want.addr || tc.want.hits.Load() != before+1 {
				t.Fatalf("%d served by %q, want %s", r.status, r.header.Get(HeaderDestinationServed), tc.want.addr)
			}
		})
	}
}

func TestGateway_ClientsCannotChooseTheEndpoint(t *testing.T) {
	inPool, victim := newFakeServer(t), newFakeServer(t)
	s := startGateway(t, parseConfig(t,
		poolYAML("p", inPool.addr),
		routeYAML("r", "  matches: [{model: {value: m}}]\n  backends: [{pool: p}]\n"),
	), Options{})
	waitCandidates(t, s, "p", 1)
	c := newClient(t)
	r := post(t, c, s, "/v1/chat/completions", chatBody("m"),
		"x-gateway-destination-endpoint: "+victim.addr,
		"X-Gateway-Destination-Endpoint-Subset: "+victim.addr,
		"X-Gateway-Model-Name: something-else",
		"X-Gateway-Base-Model-Name: something-else",
		"x-gateway-request-dropped-reason: spoofed",
		"X-Gateway-Destination-Endpoint-Served: "+victim.addr,
		"Authorization: Bearer kept",
	)
	if r.status != http.StatusOK || r.header.Get(HeaderDestinationServed) != inPool.addr {
		t.Fatalf("%d served by %q, want %s", r.status, r.header.Get(HeaderDestinationServed), inPool.addr)
	}
	if victim.hits.Load() != 0 {
		t.Fatal("the client's destination header was honoured")
	}
	h, body := inPool.last()
	if got := h.Values(HeaderModelName); !slices.Equal(got, []string{"m"}) {
		t.Errorf("backend saw %s %q, want the body's model only", HeaderModelName, got)
	}
	for _, name := range []string{director.HeaderDestinationEndpoint, director.HeaderDestinationSubset, director.HeaderBaseModelName, HeaderDestinationServed, director.DroppedReasonHeader} {
		if v := h.Values(name); len(v) != 0 {
			t.Errorf("backend saw client-sent %s %q", name, v)
		}
	}
	if h.Get("Authorization") != "Bearer kept" || string(body) != chatBody("m") {
		t.Errorf("ordinary headers or body not forwarded: %q %s", h.Get("Authorization"), body)
	}
}

func TestGateway_ModelsListsEveryExactlyRoutedModel(t *testing.T) {
	srv := newFakeServer(t)
	s := startGateway(t, parseConfig(t,
		poolYAML("p", srv.addr),
		routeYAML("r1", "  matches: [{model: {value: zeta}}, {model: {value: alpha}}]\n  backends: [{pool: p}]\n"),
		routeYAML("r2", "  matches: [{model: {value: alpha}, headers: [{name: x-t, value: a}]}, {model: {type: Prefix, value: lora-}}]\n  backends: [{pool: p}]\n"),
	), Options{})
	r := get(t, newClient(t), "http://"+s.Addr()+"/v1/models")
	var list openai.ModelList
	if r.status != http.StatusOK || json.Unmarshal([]byte(r.body), &list) != nil || list.Object != "list" {
		t.Fatalf("%d %s", r.status, r.body)
	}
	var ids []string
	for _, m := range list.Data {
		ids = append(ids, m.ID)
		if m.Object != "model" || m.OwnedBy == "" {
			t.Errorf("model %+v", m)
		}
	}
	if !slices.Equal(ids, []string{"alpha", "zeta"}) {
		t.Errorf("models %v, want [alpha zeta] (deduplicated, sorted, prefixes left out)", ids)
	}
}

func TestGateway_URLBackendKeepsBasePathAndQuery(t *testing.T) {
	for _, tc := range []struct{ base, path, want string }{
		{"", "/v1/chat/completions", "/v1/chat/completions"},
		{"/", "/v1/chat/completions?debug=1", "/v1/chat/completions?debug=1"},
		{"/openai/", "/v1/chat/completions", "/openai/v1/chat/completions"},
		{"/team%20a", "/v1/completions?x=a%2Fb", "/team%20a/v1/completions?x=a%2Fb"},
	} {
		t.Run(tc.base+tc.path, func(t *testing.T) {
			up := newFakeServer(t)
			s := startGateway(t, parseConfig(t,
				routeYAML("r", "  backends: [{url: \"http://"+up.addr+tc.base+"\"}]\n"),
			), Options{})
			body := chatBody("m")
			if strings.HasPrefix(tc.path, "/v1/completions") {
				body = `{"model":"m","prompt":"hi"}`
			}
			if r := post(t, newClient(t), s, tc.path, body); r.status != http.StatusOK {
				t.Fatalf("%d %s", r.status, r.body)
			}
			if got := up.lastURI(); got != tc.want {
				t.Errorf("backend saw %q, want %q", got, tc.want)
			}
		})
	}
}

func TestGateway_RewritesModelInForwardedBody(t *testing.T) {
	srv := newFakeServer(t)
	rewrite := `---
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceModelRewrite
metadata: {name: canary}
spec:
  poolRef: {name: p}
  rules:
  - matches: [{model: {type: Exact, value: llama}}]
    targets: [{modelRewrite: llama-v2, weight: 1}]
`
	s := startGateway(t, parseConfig(t,
		poolYAML("p", srv.addr),
		routeYAML("r", "  matches: [{model: {value: llama}}]\n  backends: [{pool: p}]\n"),
		rewrite,
	), Options{})
	waitCandidates(t, s, "p", 1)
	body := `{"model": "llama", "messages":[{"role":"user","content":"hi"}], "max_tokens":8}`
	if r := post(t, newClient(t), s, "/v1/chat/completions", body); r.status != http.StatusOK {
		t.Fatalf("%d %s", r.status, r.body)
	}
	h, got := srv.last()
	if want := `{"model": "llama-v2", "messages":[{"role":"user","content":"hi"}], "max_tokens":8}`; string(got) != want {
		t.Errorf("forwarded body\n%s\nwant\n%s", got, want)
	}
	if h.Get(HeaderModelName) != "llama" || h.Get("Content-Length") != itoa(len(got)) {
		t.Errorf("headers %s=%q Content-Length=%q", HeaderModelName, h.Get(HeaderModelName), h.Get("Content-Length"))
	}
}

func TestGateway_ShedsSheddableRequestsWithRetryAfter(t *testing.T) {
	srv := newFakeServer(t)
	srv.load(10, 0.9) // saturated: queue ≥ 5 and KV ≥ 0.8
	objectives := `---
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceObjective
metadata: {name: batch}
spec: {priority: -1, poolRef: {name: p}}
---
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceObjective
metadata: {name: chat}
spec: {priority: 10, poolRef: {name: p}}
`
	s := startGateway(t, parseConfig(t,
		poolYAML("p", srv.addr),
		routeYAML("r", "  matches: [{model: {value: m}}]\n  backends: [{pool: p}]\n"),
		objectives,
	), Options{})
	waitCandidates(t, s, "p", 1)
	waitMetrics(t, s, srv.addr, 10)
	c := newClient(t)

	r := post(t, c, s, "/v1/chat/completions", chatBody("m"), "X-Gateway-Inference-Objective: batch")
	var e openai.ErrorResponse
	if r.status != http.StatusTooManyRequests || json.Unmarshal([]byte(r.body), &e) != nil || e.Error.Type != openai.ErrTypeRateLimit {
		t.Fatalf("sheddable request: %d %s", r.status, r.body)
	}
	if r.header.Get(director.DroppedReasonHeader) != "rejected-saturated" || r.header.Get("Retry-After") == "" {
		t.Errorf("headers %v", r.header)
	}
	// Non-sheddable requests queue while the pool is saturated and are
	// served once it has room.
	results := make(chan string, 3)
	for _, objective := range []string{"chat", "", "unknown"} {
		go func() {
			r := post(t, c, s, "/v1/chat/completions", chatBody("m"), "X-Gateway-Inference-Objective: "+objective)
			results <- fmt.Sprintf("objective %q: %d %s", objective, r.status, r.body)
		}()
	}
	time.Sleep(300 * time.Millisecond)
	if n := srv.hits.Load(); n != 0 {
		t.Fatalf("%d requests reached the saturated server; they must queue", n)
	}
	srv.load(0, 0.1)
	for range 3 {
		if r := <-results; !strings.Contains(r, ": 200 ") {
			t.Error(r)
		}
	}
	if srv.hits.Load() != 3 {
		t.Errorf("model server saw %d requests, want 3", srv.hits.Load())
	}
	if got := sample(scrape(t, c, s), "igw_rejected_requests_total", "pool=default/p", "reason=rejected-saturated"); got != 1 {
		t.Errorf("igw_rejected_requests_total = %v", got)
	}
}

func TestGateway_RejectsOversizedBodies(t *testing.T) {
	srv := newFakeServer(t)
	cfg := parseConfig(t,
		poolYAML("p", srv.addr),
		routeYAML("r", "  matches: [{model: {value: m}}]\n  backends: [{pool: p}]\n"),
	)
	q := resource.MustParse("1Ki")
	Settings(cfg).Spec.MaxRequestBodySize = &q
	s := startGateway(t, cfg, Options{})
	waitCandidates(t, s, "p", 1)
	c := newClient(t)
	big := `{"model":"m","messages":[{"role":"user","content":"` + strings.Repeat("x", 2000) + `"}]}`
	for _, tc := range []struct {
		name   string
		length int64 // -1: chunked, no Content-Length
	}{{"declared length", int64(len(big))}, {"chunked", -1}} {
		req, _ := http.NewRequest(http.MethodPost, "http://"+s.Addr()+"/v1/chat/completions", strings.NewReader(big))
		req.ContentLength = tc.length
		if tc.length < 0 {
			req.Body = io.NopCloser(strings.NewReader(big)) // hide the length
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Errorf("%s: %d, want 413", tc.name, resp.StatusCode)
		}
	}
	if r := post(t, c, s, "/v1/chat/completions", chatBody("m")); r.status != http.StatusOK {
		t.Errorf("small request after oversized ones: %d", r.status)
	}
	if srv.hits.Load() != 1 {
		t.Errorf("oversized bodies reached the model server (%d requests)", srv.hits.Load())
	}
}
