package engine_test

import (
	"strings"
	"testing"
	"time"

	v1 "github.com/igw-dev/igw/api/v1"
	"github.com/igw-dev/igw/internal/configtest"
	"github.com/igw-dev/igw/pkg/config"
	"github.com/igw-dev/igw/pkg/datastore"
	"github.com/igw-dev/igw/pkg/discovery/static"
	"github.com/igw-dev/igw/pkg/engine"
	"github.com/igw-dev/igw/pkg/gateway"
	"github.com/igw-dev/igw/pkg/policy/auth"
	"github.com/igw-dev/igw/pkg/policy/guard"
	"github.com/igw-dev/igw/pkg/policy/quota"
)

// Whole files through the schema the engine composes: kinds of several
// modules in one file, each read through its module's accessors.

const (
	hashA = "sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae" // "foo"
	hashB = "sha256:fcde2b2edba56bf408601fb721fe9b5c338d10ee429ea04fae5511b68fbf8fb9" // "bar"
)

func TestParse_FullExampleLoads(t *testing.T) {
	cfg, err := schema.Load("testdata/standalone.yaml")
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if cfg.Source != "testdata/standalone.yaml" || len(cfg.Digest) != 64 {
		t.Errorf("Source, Digest = %q, %q", cfg.Source, cfg.Digest)
	}
	if n := [...]int{len(static.Pools(cfg)), len(static.ModelServers(cfg)), len(engine.Routes(cfg)), len(static.Objectives(cfg)), len(static.Rewrites(cfg))}; n != [...]int{2, 4, 2, 2, 1} {
		t.Errorf("pools, servers, routes, objectives, rewrites = %v", n)
	}
	wantEndpoints := map[string][]string{
		"llama": {"127.0.0.1:8001", "127.0.0.1:8002"},
		"qwen":  {"127.0.0.1:8003", "127.0.0.1:8004"},
	}
	for _, p := range static.Pools(cfg) {
		var got []string
		for _, ep := range static.PoolEndpoints(cfg, p) {
			got = append(got, ep.Address)
		}
		if strings.Join(got, ",") != strings.Join(wantEndpoints[p.Name], ",") {
			t.Errorf("pool %s endpoints = %v, want %v", p.Name, got, wantEndpoints[p.Name])
		}
	}
	epc := cfg.Raw("EndpointPickerConfig")
	if !strings.Contains(string(epc.Data), "\napiVersion: inference.networking.x-k8s.io/v1alpha1\nkind: EndpointPickerConfig\nplugins:\n- type: queue-scorer\n") {
		t.Errorf("EndpointPickerConfig not kept as written:\n%s", epc.Data)
	}
	if want := "testdata/standalone.yaml: document 13 (EndpointPickerConfig)"; epc.Source != want {
		t.Errorf("EndpointPickerConfig source = %q, want %q", epc.Source, want)
	}
	rw := static.RewritesFor(cfg, static.Pool(cfg, "default", "llama"))
	if len(rw) != 1 || *rw[0].Spec.Rules[0].Targets[1].Weight != 10 {
		t.Errorf("RewritesFor(llama) = %v", rw)
	}
	objs := static.ObjectivesFor(cfg, static.Pool(cfg, "", "llama"))
	if len(objs) != 2 || objs[0].Spec.EffectivePriority() != 10 || objs[1].Spec.EffectivePriority() != -1 {
		t.Errorf("ObjectivesFor(llama) = %v", objs)
	}
	if got := engine.Routes(cfg)[0].Spec.Timeout.Duration; got != 5*time.Minute {
		t.Errorf("llama route timeout = %v", got)
	}
	if got := engine.Routes(cfg)[1].Spec.Timeout.Duration; got != 10*time.Minute {
		t.Errorf("qwen route timeout = %v, want the gateway's", got)
	}
}

func TestParse_AppliesDefaults(t *testing.T) {
	pool := configtest.PoolDoc + "  endpointPickerRef: {name: epp, port: {number: 9002}}\n"
	route := `apiVersion: igw.dev/v1alpha1
kind: Route
metadata: {name: r}
spec:
  matches: [{model: {value: m}, path: {value: /v1}, headers: [{name: X-A, value: b}]}]
  backends: [{pool: llama}]
`
	cfg, err := schema.Parse("d.yaml", configtest.File(configtest.ServerDoc, pool, route))
	if err != nil {
		t.Fatal(err)
	}
	g := gateway.Settings(cfg).Spec
	if g.Address != ":8080" || g.AdminAddress != ":9090" || g.MaxRequestBodyBytes() != 10<<20 ||
		g.Timeouts.ReadHeader.Duration != 10*time.Second || g.Timeouts.Request.Duration != 10*time.Minute ||
		g.Timeouts.Idle.Duration != 2*time.Minute {
		t.Errorf("gateway defaults = %+v", g)
	}
	p := static.Pools(cfg)[0]
	epp := p.Spec.EndpointPickerRef
	if p.Namespace != "default" || p.Spec.AppProtocol != v1.AppProtocolHTTP ||
		*epp.Group != "" || epp.Kind != "Service" || epp.FailureMode != v1.EndpointPickerFailClose {
		t.Errorf("pool defaults: ns=%q proto=%q epp=%+v", p.Namespace, p.Spec.AppProtocol, epp)
	}
	if s := static.ModelServers(cfg)[0]; s.Spec.Engine != datastore.EngineVLLM || s.Namespace != "default" {
		t.Errorf("server defaults = %+v", s)
	}
	r := engine.Routes(cfg)[0].Spec
	m := r.Matches[0]
	if *r.Retries != 2 || *r.Backends[0].Weight != 1 || r.Timeout.Duration != 10*time.Minute ||
		m.Model.Type != engine.ModelMatchExact || m.Path.Type != engine.PathMatchPathPrefix || m.Headers[0].Type != engine.HeaderMatchExact {
		t.Errorf("route defaults = %+v", r)
	}
}

func TestParse_SecurityKindsLoadWithDefaults(t *testing.T) {
	cfg, err := configtest.Load(t, schema, map[string]string{
		"team-b.keys": "# rotated 2026-11\n" + hashB + " b-ci\n",
		"jwks.json":   `{"keys":[]}`,
	}, configtest.ServerDoc, configtest.PoolDoc,
		`apiVersion: igw.dev/v1alpha1
kind: Route
metadata: {name: r}
spec:
  backends: [{pool: llama}]
  guard: public
`, `apiVersion: igw.dev/v1alpha1
kind: RequestGuard
metadata: {name: public}
spec:
  maxBodySize: 1Mi
  maxTokens: {limit: 100}
  denyRules: [{name: inject, pattern: '(?i)ignore previous'}]
`, `apiVersion: igw.dev/v1alpha1
kind: APIKeys
metadata: {name: team-a}
spec:
  objective: interactive
  quotas: [team]
  keys:
  - {id: a-ci, hash: `+hashA+`}
`, `apiVersion: igw.dev/v1alpha1
kind: APIKeys
metadata: {name: team-b}
spec:
  tenant: b
  models: ["qwen-*"]
  keysFile: team-b.keys
`, `apiVersion: igw.dev/v1alpha1
kind: QuotaPolicy
metadata: {name: team}
spec:
  limits: [{window: 1m, totalTokens: 1000}, {window: 24h, requests: 10}]
`, `apiVersion: igw.dev/v1alpha1
kind: AuthPolicy
metadata: {name: auth}
spec:
  jwt: {jwksFile: jwks.json, issuer: https://id.example}
`)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if !auth.Enabled(cfg) {
		t.Error("AuthEnabled = false with APIKeys and an AuthPolicy")
	}
	a := auth.Keys(cfg)[0].Spec.Keys[0]
	if a.Tenant != "team-a" || strings.Join(a.Models, ",") != "*" || a.Objective != "interactive" || strings.Join(a.Quotas, ",") != "team" {
		t.Errorf("key a grant = %+v, want the document's defaults", a.KeyGrant)
	}
	fk := auth.Keys(cfg)[1].FileKeys
	if len(fk) != 1 || fk[0].ID != "b-ci" || fk[0].Hash != hashB || fk[0].Tenant != "b" || fk[0].Models[0] != "qwen-*" {
		t.Errorf("file keys = %+v", fk)
	}
	g := guard.Find(cfg, "default", "public")
	if g == nil || g.Spec.MaxTokens.Action != guard.MaxTokensReject || g.Spec.DenyRules[0].Mode != guard.DenyBlock {
		t.Errorf("guard defaults not applied: %+v", g)
	}
	q := config.Find[*quota.QuotaPolicy](cfg, "", "team")
	if q.Spec.Scope != quota.QuotaScopeTenant || *q.Spec.DefaultOutputTokens != quota.DefaultQuotaOutputTokens || q.Spec.Stream != quota.QuotaStreamFinish {
		t.Errorf("quota defaults = %+v", q.Spec)
	}
	if s := quota.StoreConfig(cfg).Spec; s.Type != quota.QuotaStoreMemory || s.FailureMode != quota.QuotaFailOpen {
		t.Errorf("default quota store = %+v", s)
	}
	j := auth.Policy(cfg).Spec.JWT
	if string(j.JWKS) != `{"keys":[]}` || j.Leeway.Duration != 30*time.Second || j.Claims.Tenant != "sub" || len(j.Algorithms) != 2 {
		t.Errorf("jwt defaults = %+v", j)
	}
}

// TestEngine_RequestBoundsComeFromTheDataPlanesKind: the Gateway's body
// limit reaches the Director and its request timeout becomes the default
// of routes without one, although the engine never imports the gateway;
// parsed without the Gateway kind, the data plane's own bounds apply.
func TestEngine_RequestBoundsComeFromTheDataPlanesKind(t *testing.T) {
	const route = "apiVersion: igw.dev/v1alpha1\nkind: Route\nmetadata: {name: r}\nspec: {backends: [{pool: llama}]}\n"
	const gw = "apiVersion: igw.dev/v1alpha1\nkind: Gateway\nspec: {maxRequestBodySize: 1Ki, timeouts: {request: 90s}}\n"
	for _, tc := range []struct {
		name    string
		schema  *config.Schema
		docs    []string
		body    int64
		timeout time.Duration // of the parsed route; 0: none set
	}{
		{"file's Gateway", engine.Schema(gateway.Kind()), []string{configtest.ServerDoc, configtest.PoolDoc, route, gw}, 1024, 90 * time.Second},
		{"default Gateway", engine.Schema(gateway.Kind()), []string{configtest.ServerDoc, configtest.PoolDoc, route}, gateway.DefaultMaxRequestBodySize, gateway.DefaultRequestTimeout},
		{"no Gateway kind", engine.Schema(), []string{configtest.ServerDoc, configtest.PoolDoc, route}, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := tc.schema.Parse("b.yaml", configtest.File(tc.docs...))
			if err != nil {
				t.Fatal(err)
			}
			var timeout time.Duration
			if d := engine.Routes(cfg)[0].Spec.Timeout; d != nil {
				timeout = d.Duration
			}
			if timeout != tc.timeout {
				t.Errorf("route timeout = %v, want %v", timeout, tc.timeout)
			}
			e, err := engine.New(cfg, engine.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer e.Close()
			if got := e.Director().Policy().MaxBodyBytes; got != tc.body {
				t.Errorf("Director's MaxBodyBytes = %d, want %d", got, tc.body)
			}
		})
	}
}
