package config

import (
	"errors"
	"strings"
	"testing"
	"time"

	v1 "github.com/igw-dev/igw/api/v1"
	"github.com/igw-dev/igw/api/v1alpha2"
)

// Building blocks for test files: a pool "llama" with one server.
const (
	serverDoc = `apiVersion: igw.dev/v1alpha1
kind: ModelServer
metadata: {name: llama-0, labels: {app: llama}}
spec: {address: 127.0.0.1}
`
	poolDoc = `apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata: {name: llama}
spec:
  selector: {matchLabels: {app: llama}}
  targetPorts: [{number: 8000}]
`
)

// file joins documents into one YAML stream.
func file(docs ...string) []byte {
	return []byte(strings.Join(docs, "---\n"))
}

func TestParse_FullExampleLoads(t *testing.T) {
	cfg, err := Load("testdata/standalone.yaml")
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if cfg.Source != "testdata/standalone.yaml" || len(cfg.Digest) != 64 {
		t.Errorf("Source, Digest = %q, %q", cfg.Source, cfg.Digest)
	}
	if n := [...]int{len(cfg.Pools), len(cfg.ModelServers), len(cfg.Routes), len(cfg.Objectives), len(cfg.Rewrites)}; n != [...]int{2, 4, 2, 2, 1} {
		t.Errorf("pools, servers, routes, objectives, rewrites = %v", n)
	}
	wantEndpoints := map[string][]string{
		"llama": {"127.0.0.1:8001", "127.0.0.1:8002"},
		"qwen":  {"127.0.0.1:8003", "127.0.0.1:8004"},
	}
	for _, p := range cfg.Pools {
		var got []string
		for _, ep := range cfg.PoolEndpoints(p) {
			got = append(got, ep.Address)
		}
		if strings.Join(got, ",") != strings.Join(wantEndpoints[p.Name], ",") {
			t.Errorf("pool %s endpoints = %v, want %v", p.Name, got, wantEndpoints[p.Name])
		}
	}
	if !strings.Contains(string(cfg.EndpointPickerConfig), "\napiVersion: inference.networking.x-k8s.io/v1alpha1\nkind: EndpointPickerConfig\nplugins:\n- type: queue-scorer\n") {
		t.Errorf("EndpointPickerConfig not kept as written:\n%s", cfg.EndpointPickerConfig)
	}
	if want := "testdata/standalone.yaml: document 13 (EndpointPickerConfig)"; cfg.EndpointPickerConfigSource != want {
		t.Errorf("EndpointPickerConfigSource = %q, want %q", cfg.EndpointPickerConfigSource, want)
	}
	rw := cfg.RewritesFor(cfg.Pool("default", "llama"))
	if len(rw) != 1 || *rw[0].Spec.Rules[0].Targets[1].Weight != 10 {
		t.Errorf("RewritesFor(llama) = %v", rw)
	}
	objs := cfg.ObjectivesFor(cfg.Pool("", "llama"))
	if len(objs) != 2 || objs[0].Spec.EffectivePriority() != 10 || objs[1].Spec.EffectivePriority() != -1 {
		t.Errorf("ObjectivesFor(llama) = %v", objs)
	}
	if got := cfg.Routes[0].Spec.Timeout.Duration; got != 5*time.Minute {
		t.Errorf("llama route timeout = %v", got)
	}
	if got := cfg.Routes[1].Spec.Timeout.Duration; got != 10*time.Minute {
		t.Errorf("qwen route timeout = %v, want the gateway's", got)
	}
}

func TestParse_AppliesDefaults(t *testing.T) {
	pool := poolDoc + "  endpointPickerRef: {name: epp, port: {number: 9002}}\n"
	route := `apiVersion: igw.dev/v1alpha1
kind: Route
metadata: {name: r}
spec:
  matches: [{model: {value: m}, path: {value: /v1}, headers: [{name: X-A, value: b}]}]
  backends: [{pool: llama}]
`
	cfg, err := Parse("d.yaml", file(serverDoc, pool, route))
	if err != nil {
		t.Fatal(err)
	}
	g := cfg.Gateway.Spec
	if g.Address != ":8080" || g.AdminAddress != ":9090" || g.MaxRequestBodyBytes() != 10<<20 ||
		g.Timeouts.ReadHeader.Duration != 10*time.Second || g.Timeouts.Request.Duration != 10*time.Minute ||
		g.Timeouts.Idle.Duration != 2*time.Minute {
		t.Errorf("gateway defaults = %+v", g)
	}
	p := cfg.Pools[0]
	epp := p.Spec.EndpointPickerRef
	if p.Namespace != "default" || p.Spec.AppProtocol != v1.AppProtocolHTTP ||
		*epp.Group != "" || epp.Kind != "Service" || epp.FailureMode != v1.EndpointPickerFailClose {
		t.Errorf("pool defaults: ns=%q proto=%q epp=%+v", p.Namespace, p.Spec.AppProtocol, epp)
	}
	if s := cfg.ModelServers[0]; s.Spec.Engine != EngineVLLM || s.Namespace != "default" {
		t.Errorf("server defaults = %+v", s)
	}
	r := cfg.Routes[0].Spec
	m := r.Matches[0]
	if *r.Retries != 2 || *r.Backends[0].Weight != 1 || r.Timeout.Duration != 10*time.Minute ||
		m.Model.Type != ModelMatchExact || m.Path.Type != PathMatchPathPrefix || m.Headers[0].Type != HeaderMatchExact {
		t.Errorf("route defaults = %+v", r)
	}
}

func TestParse_DefaultsKubernetesReferences(t *testing.T) {
	obj := `apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceObjective
metadata: {name: o}
spec: {poolRef: {name: llama}}
`
	rw := `apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceModelRewrite
metadata: {name: rw}
spec:
  poolRef: {name: llama}
  rules: [{targets: [{modelRewrite: a}, {modelRewrite: b}]}, {matches: [{model: {value: x}}], targets: [{modelRewrite: z}]}]
`
	cfg, err := Parse("k.yaml", file(serverDoc, poolDoc, obj, rw))
	if err != nil {
		t.Fatal(err)
	}
	want := v1alpha2.PoolObjectReference{Group: v1alpha2.PoolGroup, Kind: v1alpha2.PoolKind, Name: "llama"}
	if cfg.Objectives[0].Spec.PoolRef != want || cfg.Rewrites[0].Spec.PoolRef != want {
		t.Errorf("poolRefs = %+v, %+v", cfg.Objectives[0].Spec.PoolRef, cfg.Rewrites[0].Spec.PoolRef)
	}
	if cfg.Objectives[0].Spec.Priority != nil {
		t.Error("an unset priority must stay unset")
	}
	if got := cfg.Rewrites[0].Spec.Rules[1].Matches[0].Model.Type; got != v1alpha2.MatchExact {
		t.Errorf("match type default = %q", got)
	}
}

// TestParse_InvalidValues checks each kind's validation: the whole error
// message names the file, the document and the field.
func TestParse_InvalidValues(t *testing.T) {
	const pool = `apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata: {name: llama}
spec:
  selector: {matchLabels: {app: llama}}
`
	const route = `apiVersion: igw.dev/v1alpha1
kind: Route
metadata: {name: r}
spec:
`
	const gw = "apiVersion: igw.dev/v1alpha1\nkind: Gateway\nspec:\n"
	const ms = "apiVersion: igw.dev/v1alpha1\nkind: ModelServer\nmetadata: {name: s, labels: {app: llama}}\nspec:\n"
	const obj = "apiVersion: inference.networking.x-k8s.io/v1alpha2\nkind: InferenceObjective\nmetadata: {name: o}\nspec:\n"
	const rw = "apiVersion: inference.networking.x-k8s.io/v1alpha2\nkind: InferenceModelRewrite\nmetadata: {name: rw}\nspec:\n  poolRef: {name: llama}\n"

	tests := []struct {
		name string
		doc  string // the document under test; it is document 3
		want string // one line of the error, after "bad.yaml: document 3 "
	}{
		{"pool port zero", pool + "  targetPorts: [{number: 0}]\n",
			`(InferencePool "llama"): spec.targetPorts[0].number: must be 1..65535, not 0`},
		{"pool port too large", pool + "  targetPorts: [{number: 8000}, {number: 65536}]\n",
			`(InferencePool "llama"): spec.targetPorts[1].number: must be 1..65535, not 65536`},
		{"pool duplicate port", pool + "  targetPorts: [{number: 8000}, {number: 8000}]\n",
			`(InferencePool "llama"): spec.targetPorts[1].number: duplicate port 8000 (also spec.targetPorts[0])`},
		{"pool too many ports", pool + "  targetPorts: [{number: 1},{number: 2},{number: 3},{number: 4},{number: 5},{number: 6},{number: 7},{number: 8},{number: 9}]\n",
			`(InferencePool "llama"): spec.targetPorts: at most 8 ports, not 9`},
		{"pool no ports", pool,
			`(InferencePool "llama"): spec.targetPorts: required: at least one port the model servers listen on`},
		{"pool no selector", "apiVersion: inference.networking.k8s.io/v1\nkind: InferencePool\nmetadata: {name: llama}\nspec: {targetPorts: [{number: 1}]}\n",
			`(InferencePool "llama"): spec.selector.matchLabels: required: at least one label`},
		{"pool bad label value", pool[:len(pool)-len("{app: llama}}\n")] + "{app: \"-x-\"}}\n  targetPorts: [{number: 1}]\n",
			`(InferencePool "llama"): spec.selector.matchLabels["app"]: invalid label value:`},
		{"pool app protocol", pool + "  targetPorts: [{number: 1}]\n  appProtocol: grpc\n",
			`(InferencePool "llama"): spec.appProtocol: must be "http" or "kubernetes.io/h2c", not "grpc"`},
		{"pool picker without port", pool + "  targetPorts: [{number: 1}]\n  endpointPickerRef: {name: epp}\n",
			`(InferencePool "llama"): spec.endpointPickerRef.port: required when the picker is a Service`},
		{"pool picker failure mode", pool + "  targetPorts: [{number: 1}]\n  endpointPickerRef: {name: epp, port: {number: 9002}, failureMode: Maybe}\n",
			`(InferencePool "llama"): spec.endpointPickerRef.failureMode: must be FailOpen or FailClose, not "Maybe"`},
		{"pool picker without name", pool + "  targetPorts: [{number: 1}]\n  endpointPickerRef: {port: {number: 9002}}\n",
			`(InferencePool "llama"): spec.endpointPickerRef.name: required`},
		{"pool bad name", "apiVersion: inference.networking.k8s.io/v1\nkind: InferencePool\nmetadata: {name: Llama_3}\nspec: {selector: {matchLabels: {a: b}}, targetPorts: [{number: 1}]}\n",
			`(InferencePool "Llama_3"): metadata.name: a lowercase RFC 1123 subdomain`},
		{"missing name", "apiVersion: inference.networking.k8s.io/v1\nkind: InferencePool\nspec: {selector: {matchLabels: {a: b}}, targetPorts: [{number: 1}]}\n",
			`(InferencePool): metadata.name: required`},

		{"objective without pool name", obj + "  priority: 1\n",
			`(InferenceObjective "o"): spec.poolRef.name: required`},
		{"objective wrong pool kind", obj + "  poolRef: {name: llama, kind: Service}\n",
			`(InferenceObjective "o"): spec.poolRef.kind: must be InferencePool, not "Service"`},
		{"objective wrong pool group", obj + "  poolRef: {name: llama, group: apps}\n",
			`(InferenceObjective "o"): spec.poolRef.group: must be inference.networking.k8s.io, not "apps"`},
		{"objective priority not int32", obj + "  poolRef: {name: llama}\n  priority: 3000000000\n",
			`(InferenceObjective "o"): spec.priority: 3000000000 is out of range for a 32-bit integer`},

		{"rewrite without rules", rw,
			`(InferenceModelRewrite "rw"): spec.rules: required: at least one rule`},
		{"rewrite weight zero", rw + "  rules: [{targets: [{modelRewrite: a, weight: 0}]}]\n",
			`(InferenceModelRewrite "rw"): spec.rules[0].targets[0].weight: must be 1..1000000, not 0`},
		{"rewrite weight too large", rw + "  rules: [{targets: [{modelRewrite: a, weight: 1000001}]}]\n",
			`(InferenceModelRewrite "rw"): spec.rules[0].targets[0].weight: must be 1..1000000, not 1000001`},
		{"rewrite some weights", rw + "  rules: [{targets: [{modelRewrite: a, weight: 5}, {modelRewrite: b}]}]\n",
			`(InferenceModelRewrite "rw"): spec.rules[0].targets: weights must be set for all targets or for none (1 of 2 have one)`},
		{"rewrite match type", rw + "  rules: [{matches: [{model: {type: Prefix, value: a}}], targets: [{modelRewrite: b}]}]\n",
			`(InferenceModelRewrite "rw"): spec.rules[0].matches[0].model.type: must be Exact, not "Prefix"`},
		{"rewrite empty target", rw + "  rules: [{targets: [{modelRewrite: \"\"}]}]\n",
			`(InferenceModelRewrite "rw"): spec.rules[0].targets[0].modelRewrite: required`},
		{"rewrite no targets", rw + "  rules: [{matches: [{model: {value: a}}]}]\n",
			`(InferenceModelRewrite "rw"): spec.rules[0].targets: required: at least one target model`},

		{"gateway address", gw + "  address: 8080\n",
			`(Gateway): spec.address: must be a string, not the number 8080 (quote it)`},
		{"gateway address without port", gw + "  address: localhost\n",
			`(Gateway): spec.address: must be host:port such as ":8080" or "127.0.0.1:8080", not "localhost"`},
		{"gateway same admin address", gw + "  address: \":80\"\n  adminAddress: \":80\"\n",
			`(Gateway): spec.adminAddress: must differ from spec.address (:80)`},
		{"gateway body size", gw + "  maxRequestBodySize: 0\n",
			`(Gateway): spec.maxRequestBodySize: must be positive, not 0`},
		{"gateway body size syntax", gw + "  maxRequestBodySize: lots\n",
			`(Gateway): spec.maxRequestBodySize: invalid quantity (such as 10Mi or 10485760):`},
		{"gateway zero read header", gw + "  timeouts: {readHeader: 0s}\n",
			`(Gateway): spec.timeouts.readHeader: must be positive, not 0s`},
		{"gateway negative request", gw + "  timeouts: {request: -1s}\n",
			`(Gateway): spec.timeouts.request: must not be negative, not -1s (0s means no limit)`},
		{"gateway duration without unit", gw + "  timeouts: {idle: 30}\n",
			`(Gateway): spec.timeouts.idle: must be a duration string with a unit such as "30s" or "5m", not the number 30`},
		{"gateway bad duration", gw + "  timeouts: {idle: soon}\n",
			`(Gateway): spec.timeouts.idle: invalid duration (a string such as "30s" or "5m"): time: invalid duration "soon"`},

		{"server address with port", ms + "  address: 127.0.0.1:8000\n",
			`(ModelServer "s"): spec.address: must not include a port (8000)`},
		{"server without address", ms + "  engine: vllm\n",
			`(ModelServer "s"): spec.address: required: the server's IP address or host name`},
		{"server bad host", ms + "  address: \"not a host\"\n",
			`(ModelServer "s"): spec.address: must be an IP address or a host name, not "not a host"`},
		{"server engine", ms + "  address: h\n  engine: ollama\n",
			`(ModelServer "s"): spec.engine: unknown engine "ollama"; want one of vllm, sglang, trtllm-serve, triton-tensorrt-llm`},
		{"server engine contradicts label", "apiVersion: igw.dev/v1alpha1\nkind: ModelServer\nmetadata: {name: s, labels: {inference.networking.k8s.io/engine-type: sglang}}\nspec: {address: h, engine: vllm}\n",
			`(ModelServer "s"): spec.engine: "vllm" contradicts the label inference.networking.k8s.io/engine-type=sglang`},
		{"server bad engine label", "apiVersion: igw.dev/v1alpha1\nkind: ModelServer\nmetadata: {name: s, labels: {inference.networking.k8s.io/engine-type: tgi}}\nspec: {address: h}\n",
			`(ModelServer "s"): metadata.labels["inference.networking.k8s.io/engine-type"]: unknown engine "tgi"`},
		{"server port", ms + "  address: h\n  ports: [{number: 99999}]\n",
			`(ModelServer "s"): spec.ports[0].number: must be 1..65535, not 99999`},
		{"server namespace", "apiVersion: igw.dev/v1alpha1\nkind: ModelServer\nmetadata: {name: s, namespace: Prod}\nspec: {address: h}\n",
			`(ModelServer "Prod/s"): metadata.namespace: a lowercase RFC 1123 label`},

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
			_, err := Parse("bad.yaml", file(serverDoc, poolDoc, tc.doc))
			if err == nil {
				t.Fatal("Parse accepted the invalid document")
			}
			want := "bad.yaml: document 3 " + tc.want
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error:\n%v\nwant a line starting with:\n%s", err, want)
			}
			var e *Error
			if !errors.As(err, &e) || e.File != "bad.yaml" || e.Document != 3 {
				t.Errorf("errors.As(*Error) = %+v", e)
			}
		})
	}
}

func TestParse_UnknownFieldsNameFileDocumentAndField(t *testing.T) {
	data := file(serverDoc, `apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata: {name: llama, lables: {a: b}}
spec:
  selector: {matchLabels: {app: llama}}
  targetPorts: [{number: 8000}, {numbr: 8001}]
  TargetPorts: []
`)
	_, err := Parse("standalone.yaml", data)
	if err == nil {
		t.Fatal("unknown fields were accepted")
	}
	want := []string{
		`standalone.yaml: document 2 (InferencePool "llama"): metadata.lables: unknown field`,
		`standalone.yaml: document 2 (InferencePool "llama"): spec.TargetPorts: unknown field`,
		`standalone.yaml: document 2 (InferencePool "llama"): spec.targetPorts[1].numbr: unknown field`,
	}
	if got := err.Error(); got != strings.Join(want, "\n") {
		t.Errorf("error:\n%s\nwant:\n%s", got, strings.Join(want, "\n"))
	}
	if !errors.Is(err, ErrUnknownField) {
		t.Error("errors.Is(err, ErrUnknownField) = false")
	}
	var e *Error
	if !errors.As(err, &e) || e.Field != "metadata.lables" || e.Kind != "InferencePool" || e.Name != "llama" || e.Line != 6 {
		t.Errorf("first *Error = %+v", e)
	}
}

func TestParse_WrongTypesNameTheField(t *testing.T) {
	tests := []struct{ doc, want string }{
		{"apiVersion: igw.dev/v1alpha1\nkind: ModelServer\nmetadata: {name: s, labels: {version: 2}}\nspec: {address: h}\n",
			`metadata.labels["version"]: must be a string, not the number 2 (quote it)`},
		{"apiVersion: igw.dev/v1alpha1\nkind: ModelServer\nmetadata: {name: s}\nspec: {address: h, ports: 8000}\n",
			`spec.ports: must be a list, not the number 8000`},
		{"apiVersion: igw.dev/v1alpha1\nkind: ModelServer\nmetadata: {name: s}\nspec: {address: h, ports: [8000]}\n",
			`spec.ports[0]: must be an object, not the number 8000`},
		{"apiVersion: igw.dev/v1alpha1\nkind: Route\nmetadata: {name: r}\nspec: {backends: [{pool: p, weight: 1.5}]}\n",
			`spec.backends[0].weight: must be an integer, not 1.5`},
		{"apiVersion: igw.dev/v1alpha1\nkind: Route\nmetadata: {name: r}\nspec: {backends: [{pool: p, weight: \"3\"}]}\n",
			`spec.backends[0].weight: must be an integer, not the string "3"`},
	}
	for _, tc := range tests {
		_, err := Parse("t.yaml", []byte(tc.doc))
		if err == nil || !strings.Contains(err.Error(), "t.yaml: document 1 (") || !strings.Contains(err.Error(), "): "+tc.want) {
			t.Errorf("error = %v\nwant field error %s", err, tc.want)
		}
	}
}

func TestParse_KindsAndAPIVersions(t *testing.T) {
	tests := []struct {
		name, doc, want string
	}{
		{"unknown kind", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n",
			`k.yaml: document 1 (ConfigMap "c"): kind: unknown kind "ConfigMap"; want one of InferencePool,`},
		{"wrong apiVersion", "apiVersion: inference.networking.x-k8s.io/v1alpha2\nkind: InferencePool\nmetadata: {name: p}\n",
			`k.yaml: document 1 (InferencePool "p"): apiVersion: kind InferencePool needs apiVersion inference.networking.k8s.io/v1, not "inference.networking.x-k8s.io/v1alpha2"`},
		{"epc apiVersion", "apiVersion: igw.dev/v1alpha1\nkind: EndpointPickerConfig\n",
			`k.yaml: document 1 (EndpointPickerConfig): apiVersion: kind EndpointPickerConfig needs apiVersion inference.networking.x-k8s.io/v1alpha1 or llm-d.ai/v1alpha1, not "igw.dev/v1alpha1"`},
		{"missing kind", "apiVersion: igw.dev/v1alpha1\nmetadata: {name: x}\n",
			`k.yaml: document 1: kind: required; one of InferencePool,`},
		{"missing apiVersion", "kind: Route\nmetadata: {name: x}\n",
			`k.yaml: document 1 (Route "x"): apiVersion: required`},
		{"not a mapping", "- a\n- b\n",
			`k.yaml: document 1: must be a mapping with apiVersion and kind, not a list`},
		{"bad yaml", "kind: [\n",
			`k.yaml: document 1: invalid YAML (document starts at line 1):`},
		{"duplicate key", "kind: Route\nkind: Route\n",
			`k.yaml: document 1: invalid YAML (document starts at line 1):`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("k.yaml", []byte(tc.doc))
			if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
				t.Errorf("error = %v\nwant prefix %s", err, tc.want)
			}
		})
	}
}

func TestParse_AcceptsLLMDEndpointPickerConfig(t *testing.T) {
	epc := "apiVersion: llm-d.ai/v1alpha1\nkind: EndpointPickerConfig\nplugins: [{type: random-picker}]\n"
	cfg, err := Parse("e.yaml", file(serverDoc, poolDoc, epc))
	if err != nil {
		t.Fatal(err)
	}
	if string(cfg.EndpointPickerConfig) != strings.TrimSpace(epc) {
		t.Errorf("raw = %q", cfg.EndpointPickerConfig)
	}
	cfg, err = Parse("e.yaml", file(serverDoc, poolDoc))
	if err != nil || cfg.EndpointPickerConfig != nil || cfg.EndpointPickerConfigSource != "" {
		t.Errorf("without an EndpointPickerConfig: %v, %q", err, cfg.EndpointPickerConfig)
	}
}

func TestParse_DocumentNumberingSkipsEmptyDocuments(t *testing.T) {
	data := []byte("# header comment\n---\n" + serverDoc + "---\n# only a comment\n---\n\n---\n" + poolDoc +
		"...\n--- \napiVersion: igw.dev/v1alpha1\nkind: Route\nmetadata: {name: r}\nspec: {backends: [{pool: missing}]}\n")
	_, err := Parse("n.yaml", data)
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("error = %v", err)
	}
	if e.Document != 3 || e.Line != 20 || e.Field != "spec.backends[0].pool" {
		t.Errorf("error at document %d line %d field %q, want document 3 line 20 field spec.backends[0].pool: %v", e.Document, e.Line, e.Field, err)
	}
	if _, err := Parse("empty.yaml", []byte("# nothing\n---\n")); err == nil || err.Error() != "empty.yaml: no documents; a configuration needs at least one resource" {
		t.Errorf("empty file: error = %v", err)
	}
}

func TestParse_CrossReferences(t *testing.T) {
	const qwenServer = "apiVersion: igw.dev/v1alpha1\nkind: ModelServer\nmetadata: {name: qwen-0, labels: {app: qwen}}\nspec: {address: 127.0.0.2}\n"
	route := func(name, spec string) string {
		return "apiVersion: igw.dev/v1alpha1\nkind: Route\nmetadata: {name: " + name + "}\nspec: " + spec + "\n"
	}
	tests := []struct {
		name string
		docs []string
		want []string
	}{
		{"route to missing pool", []string{serverDoc, poolDoc, route("r", "{backends: [{pool: llama}, {pool: qwen}]}")},
			[]string{`x.yaml: document 3 (Route "r"): spec.backends[1].pool: InferencePool "qwen" not found in namespace "default"`}},
		{"route to pool in other namespace", []string{serverDoc, poolDoc,
			"apiVersion: igw.dev/v1alpha1\nkind: Route\nmetadata: {name: r, namespace: prod}\nspec: {backends: [{pool: llama}]}\n"},
			[]string{`x.yaml: document 3 (Route "prod/r"): spec.backends[0].pool: InferencePool "llama" not found in namespace "prod"`}},
		{"objective to missing pool", []string{serverDoc, poolDoc,
			"apiVersion: inference.networking.x-k8s.io/v1alpha2\nkind: InferenceObjective\nmetadata: {name: o}\nspec: {poolRef: {name: nope}}\n"},
			[]string{`x.yaml: document 3 (InferenceObjective "o"): spec.poolRef.name: InferencePool "nope" not found in namespace "default"`}},
		{"rewrite to missing pool", []string{serverDoc, poolDoc,
			"apiVersion: inference.networking.x-k8s.io/v1alpha2\nkind: InferenceModelRewrite\nmetadata: {name: w}\nspec: {poolRef: {name: nope}, rules: [{targets: [{modelRewrite: a}]}]}\n"},
			[]string{`x.yaml: document 3 (InferenceModelRewrite "w"): spec.poolRef.name: InferencePool "nope" not found in namespace "default"`}},
		{"duplicate names", []string{serverDoc, poolDoc, serverDoc, poolDoc},
			[]string{
				`x.yaml: document 4 (InferencePool "llama"): metadata.name: duplicate InferencePool "llama" in namespace "default" (first defined in document 2)`,
				`x.yaml: document 3 (ModelServer "llama-0"): metadata.name: duplicate ModelServer "llama-0" in namespace "default" (first defined in document 1)`,
			}},
		{"two gateways", []string{serverDoc, poolDoc, "apiVersion: igw.dev/v1alpha1\nkind: Gateway\n", "apiVersion: igw.dev/v1alpha1\nkind: Gateway\n"},
			[]string{`x.yaml: document 4 (Gateway): only one Gateway is allowed; the first is document 3`}},
		{"two picker configs", []string{serverDoc, poolDoc, "apiVersion: llm-d.ai/v1alpha1\nkind: EndpointPickerConfig\n", "apiVersion: llm-d.ai/v1alpha1\nkind: EndpointPickerConfig\n"},
			[]string{`x.yaml: document 4 (EndpointPickerConfig): only one EndpointPickerConfig is allowed; the first is document 3`}},
		{"pool selects nothing", []string{qwenServer, poolDoc},
			[]string{`x.yaml: document 2 (InferencePool "llama"): spec.selector.matchLabels: selects no ModelServer in namespace "default" (want labels app=llama)`}},
		{"pool selects servers of another namespace only", []string{
			"apiVersion: igw.dev/v1alpha1\nkind: ModelServer\nmetadata: {name: s, namespace: prod, labels: {app: llama}}\nspec: {address: h}\n", poolDoc},
			[]string{`x.yaml: document 2 (InferencePool "llama"): spec.selector.matchLabels: selects no ModelServer in namespace "default"`}},
		{"servers serve none of the target ports", []string{
			"apiVersion: igw.dev/v1alpha1\nkind: ModelServer\nmetadata: {name: s, labels: {app: llama}}\nspec: {address: h, ports: [{number: 9000}]}\n", poolDoc},
			[]string{`x.yaml: document 2 (InferencePool "llama"): spec.targetPorts: none of the 1 selected ModelServers lists any of these ports in spec.ports`}},
		{"two servers, one address", []string{serverDoc,
			"apiVersion: igw.dev/v1alpha1\nkind: ModelServer\nmetadata: {name: llama-1, labels: {app: llama}}\nspec: {address: 127.0.0.1}\n", poolDoc},
			[]string{`x.yaml: document 3 (InferencePool "llama"): spec.selector.matchLabels: endpoint 127.0.0.1:8000 is provided by both ModelServer "llama-0" and "llama-1"`}},
		{"routes matching the same requests", []string{serverDoc, poolDoc,
			route("a", "{matches: [{model: {value: m}, headers: [{name: X-T, value: a}, {name: x-u, value: b}]}], backends: [{pool: llama}]}"),
			route("b", "{matches: [{model: {value: other}}, {model: {type: Exact, value: m}, headers: [{name: x-u, value: b}, {name: x-t, value: a}]}], backends: [{pool: llama}]}")},
			[]string{`x.yaml: document 4 (Route "b"): spec.matches[1]: matches exactly the same requests as Route "a" spec.matches[0]`}},
		{"two catch-all routes", []string{serverDoc, poolDoc, route("a", "{backends: [{pool: llama}]}"), route("b", "{backends: [{pool: llama}]}")},
			[]string{`x.yaml: document 4 (Route "b"): spec.matches: matches exactly the same requests as Route "a" spec.matches`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("x.yaml", file(tc.docs...))
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

func TestParse_CollectsErrorsFromEveryDocument(t *testing.T) {
	data := file(
		"apiVersion: igw.dev/v1alpha1\nkind: ModelServer\nmetadata: {name: a}\nspec: {address: \"h:1\", engine: x}\n",
		"apiVersion: igw.dev/v1alpha1\nkind: Gateway\nspec: {bogus: 1}\n",
		"apiVersion: inference.networking.k8s.io/v1\nkind: InferencePool\nmetadata: {name: p}\nspec: {selector: {matchLabels: {a: b}}, targetPorts: [{number: 0}]}\n",
	)
	_, err := Parse("m.yaml", data)
	lines := strings.Split(err.Error(), "\n")
	want := []string{
		`m.yaml: document 1 (ModelServer "a"): spec.address: must not include a port (1)`,
		`m.yaml: document 1 (ModelServer "a"): spec.engine: unknown engine "x"`,
		`m.yaml: document 2 (Gateway): spec.bogus: unknown field`,
		`m.yaml: document 3 (InferencePool "p"): spec.targetPorts[0].number: must be 1..65535, not 0`,
	}
	if len(lines) != len(want) {
		t.Fatalf("got %d errors, want %d:\n%v", len(lines), len(want), err)
	}
	for i, w := range want {
		if !strings.HasPrefix(lines[i], w) {
			t.Errorf("error %d = %s\nwant prefix %s", i, lines[i], w)
		}
	}
}

func TestLoad_MissingFile(t *testing.T) {
	_, err := Load("testdata/does-not-exist.yaml")
	if err == nil || !strings.Contains(err.Error(), "does-not-exist.yaml") {
		t.Errorf("error = %v", err)
	}
}
