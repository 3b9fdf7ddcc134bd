package engine_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/igw-dev/igw/internal/configtest"
	"github.com/igw-dev/igw/pkg/config"
	"github.com/igw-dev/igw/pkg/engine"
	"github.com/igw-dev/igw/pkg/gateway"
)

// The Route and EndpointPickerConfig kinds, parsed as igw serve parses
// them.

// schema is igw's configuration schema: a kind's documents refer to
// other modules' kinds (a route to a pool, a key to a quota), so the
// tests parse with all of them.
var schema = engine.Schema(gateway.Kind())

// TestParse_InvalidValues checks each kind's validation: the whole error
// message names the file, the document and the field.
func TestParse_InvalidValues(t *testing.T) {
	const route = `apiVersion: igw.dev/v1alpha1
kind: Route
metadata: {name: r}
spec:
`

	tests := []struct {
		name string
		doc  string // the document under test; it is document 3
		want string // one line of the error, after "bad.yaml: document 3 "
	}{
		{"route no backends", route + "  matches: [{model: {value: m}}]\n",
			`(Route "r"): spec.backends: required: at least one backend`},
		{"route backend both", route + "  backends: [{pool: llama, url: \"http://x\"}]\n",
			`(Route "r"): spec.backends[0]: set pool or url, not both`},
		{"route backend neither", route + "  backends: [{weight: 1}]\n",
			`(Route "r"): spec.backends[0]: set pool (an InferencePool name) or url`},
		{"route backend weight", route + "  backends: [{pool: llama, weight: 1000001}]\n",
			`(Route "r"): spec.backends[0].weight: must be 0..1000000, not 1000001`},
		{"route all weights zero", route + "  backends: [{pool: llama, weight: 0}]\n",
			`(Route "r"): spec.backends: at least one backend needs a weight above 0`},
		{"route url scheme", route + "  backends: [{url: \"ftp://host/x\"}]\n",
			`(Route "r"): spec.backends[0].url: must be an http:// or https:// URL, not "ftp://host/x"`},
		{"route url credentials", route + "  backends: [{url: \"https://u:p@host\"}]\n",
			`(Route "r"): spec.backends[0].url: must not contain credentials`},
		{"route url query", route + "  backends: [{url: \"https://host/?a=b\"}]\n",
			`(Route "r"): spec.backends[0].url: must not have a query or fragment`},
		{"route retries", route + "  backends: [{pool: llama}]\n  retries: 11\n",
			`(Route "r"): spec.retries: must be 0..10, not 11`},
		{"route timeout", route + "  backends: [{pool: llama}]\n  timeout: -5s\n",
			`(Route "r"): spec.timeout: must not be negative, not -5s (0s means no limit)`},
		{"route model type", route + "  matches: [{model: {type: Regex, value: m}}]\n  backends: [{pool: llama}]\n",
			`(Route "r"): spec.matches[0].model.type: must be Exact or Prefix, not "Regex"`},
		{"route empty model", route + "  matches: [{model: {value: \"\"}}]\n  backends: [{pool: llama}]\n",
			`(Route "r"): spec.matches[0].model.value: required`},
		{"route path", route + "  matches: [{path: {value: v1}}]\n  backends: [{pool: llama}]\n",
			`(Route "r"): spec.matches[0].path.value: must start with "/", not "v1"`},
		{"route path type", route + "  matches: [{path: {type: Regex, value: /v1}}]\n  backends: [{pool: llama}]\n",
			`(Route "r"): spec.matches[0].path.type: must be Exact or PathPrefix, not "Regex"`},
		{"route header name", route + "  matches: [{headers: [{name: \"a b\", value: c}]}]\n  backends: [{pool: llama}]\n",
			`(Route "r"): spec.matches[0].headers[0].name: must be an HTTP header name, not "a b"`},
		{"route duplicate header", route + "  matches: [{headers: [{name: X-A, value: c}, {name: x-a, value: d}]}]\n  backends: [{pool: llama}]\n",
			`(Route "r"): spec.matches[0].headers[1].name: duplicate header "x-a" (also headers[0])`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := schema.Parse("bad.yaml", configtest.File(configtest.ServerDoc, configtest.PoolDoc, tc.doc))
			if err == nil {
				t.Fatal("Parse accepted the invalid document")
			}
			want := "bad.yaml: document 3 " + tc.want
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error:\n%v\nwant a line starting with:\n%s", err, want)
			}
			var e *config.Error
			if !errors.As(err, &e) || e.File != "bad.yaml" || e.Document != 3 {
				t.Errorf("errors.As(*Error) = %+v", e)
			}
		})
	}
}

func TestParse_CrossReferences(t *testing.T) {
	route := func(name, spec string) string {
		return "apiVersion: igw.dev/v1alpha1\nkind: Route\nmetadata: {name: " + name + "}\nspec: " + spec + "\n"
	}
	tests := []struct {
		name string
		docs []string
		want []string
	}{
		{"route to missing pool", []string{configtest.ServerDoc, configtest.PoolDoc, route("r", "{backends: [{pool: llama}, {pool: qwen}]}")},
			[]string{`x.yaml: document 3 (Route "r"): spec.backends[1].pool: InferencePool "qwen" not found in namespace "default"`}},
		{"route to pool in other namespace", []string{configtest.ServerDoc, configtest.PoolDoc,
			"apiVersion: igw.dev/v1alpha1\nkind: Route\nmetadata: {name: r, namespace: prod}\nspec: {backends: [{pool: llama}]}\n"},
			[]string{`x.yaml: document 3 (Route "prod/r"): spec.backends[0].pool: InferencePool "llama" not found in namespace "prod"`}},
		{"routes matching the same requests", []string{configtest.ServerDoc, configtest.PoolDoc,
			route("a", "{matches: [{model: {value: m}, headers: [{name: X-T, value: a}, {name: x-u, value: b}]}], backends: [{pool: llama}]}"),
			route("b", "{matches: [{model: {value: other}}, {model: {type: Exact, value: m}, headers: [{name: x-u, value: b}, {name: x-t, value: a}]}], backends: [{pool: llama}]}")},
			[]string{`x.yaml: document 4 (Route "b"): spec.matches[1]: matches exactly the same requests as Route "a" spec.matches[0]`}},
		{"two catch-all routes", []string{configtest.ServerDoc, configtest.PoolDoc, route("a", "{backends: [{pool: llama}]}"), route("b", "{backends: [{pool: llama}]}")},
			[]string{`x.yaml: document 4 (Route "b"): spec.matches: matches exactly the same requests as Route "a" spec.matches`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := schema.Parse("x.yaml", configtest.File(tc.docs...))
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error:\n%v\nwant:\n%s", err, w)
				}
			}
		})
	}
}

func TestParse_SecurityInvalidValues(t *testing.T) {
	tests := []struct {
		name, doc, want string
	}{
		{"route unknown guard", "apiVersion: igw.dev/v1alpha1\nkind: Route\nmetadata: {name: r}\nspec: {backends: [{pool: llama}], guard: nope}\n",
			`(Route "r"): spec.guard: RequestGuard "nope" not found in namespace "default"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := configtest.Load(t, schema, map[string]string{"x.json": `{"keys":[]}`}, configtest.ServerDoc, configtest.PoolDoc, tt.doc)
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), "igw.yaml: document 3 "+tt.want) {
				t.Errorf("error:\n%v\nwant a line containing:\n%s", err, tt.want)
			}
			var ce *config.Error
			if !errors.As(err, &ce) {
				t.Errorf("not a *config.Error: %T", err)
			}
		})
	}
}

func TestParse_AcceptsLLMDEndpointPickerConfig(t *testing.T) {
	epc := "apiVersion: llm-d.ai/v1alpha1\nkind: EndpointPickerConfig\nplugins: [{type: random-picker}]\n"
	cfg, err := schema.Parse("e.yaml", configtest.File(configtest.ServerDoc, configtest.PoolDoc, epc))
	if err != nil {
		t.Fatal(err)
	}
	if raw := cfg.Raw("EndpointPickerConfig"); raw == nil || string(raw.Data) != strings.TrimSpace(epc) {
		t.Errorf("raw = %+v", raw)
	}
	cfg, err = schema.Parse("e.yaml", configtest.File(configtest.ServerDoc, configtest.PoolDoc))
	if err != nil || cfg.Raw("EndpointPickerConfig") != nil {
		t.Errorf("without an EndpointPickerConfig: %v, %+v", err, cfg.Raw("EndpointPickerConfig"))
	}
}

func TestRouteKind_HostnamesAndFiltersValidated(t *testing.T) {
	base := `apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata: {name: p}
spec: {selector: {matchLabels: {app: p}}, targetPorts: [{number: 8000}]}
---
apiVersion: igw.dev/v1alpha1
kind: ModelServer
metadata: {name: m, labels: {app: p}}
spec: {address: 127.0.0.1}
---
apiVersion: igw.dev/v1alpha1
kind: Route
metadata: {name: r}
spec:
  backends: [{pool: p}]
`
	good := base + `  hostnames: [api.example.com, "*.example.org"]
  matches: [{path: {value: /v1}}]
  requestHeaders: {set: [{name: x-tenant, value: a}], remove: [x-debug]}
  pathRewrite: {replacePrefixMatch: /openai/v1}
`
	if _, err := engine.Schema().Parse("r.yaml", []byte(good)); err != nil {
		t.Fatalf("valid route refused: %v", err)
	}
	for name, bad := range map[string]string{
		"spec.hostnames[0]":                    base + "  hostnames: [API.example.com]\n",
		"x-gateway-destination-endpoint":       base + "  requestHeaders: {set: [{name: x-gateway-destination-endpoint, value: 1.2.3.4:80}]}\n",
		"replacePrefixMatch needs every match": base + "  pathRewrite: {replacePrefixMatch: /x}\n  matches: [{model: {value: m}}]\n",
		"exactly one":                          base + "  pathRewrite: {}\n",
	} {
		_, err := engine.Schema().Parse("r.yaml", []byte(bad))
		if err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s: error %v", name, err)
		}
	}
}
