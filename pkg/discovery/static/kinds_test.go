package static_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/igw-dev/igw/api/v1alpha2"
	"github.com/igw-dev/igw/internal/configtest"
	"github.com/igw-dev/igw/pkg/config"
	"github.com/igw-dev/igw/pkg/datastore"
	"github.com/igw-dev/igw/pkg/discovery/static"
	"github.com/igw-dev/igw/pkg/engine"
)

// The kinds of static discovery, parsed as igw serve parses them.

// schema is igw's configuration schema: a kind's documents refer to
// other modules' kinds (a route to a pool, a key to a quota), so the
// tests parse with all of them.
var schema = engine.Schema()

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
	cfg, err := schema.Parse("k.yaml", configtest.File(configtest.ServerDoc, configtest.PoolDoc, obj, rw))
	if err != nil {
		t.Fatal(err)
	}
	want := v1alpha2.PoolObjectReference{Group: v1alpha2.PoolGroup, Kind: v1alpha2.PoolKind, Name: "llama"}
	if static.Objectives(cfg)[0].Spec.PoolRef != want || static.Rewrites(cfg)[0].Spec.PoolRef != want {
		t.Errorf("poolRefs = %+v, %+v", static.Objectives(cfg)[0].Spec.PoolRef, static.Rewrites(cfg)[0].Spec.PoolRef)
	}
	if static.Objectives(cfg)[0].Spec.Priority != nil {
		t.Error("an unset priority must stay unset")
	}
	if got := static.Rewrites(cfg)[0].Spec.Rules[1].Matches[0].Model.Type; got != v1alpha2.MatchExact {
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
		{"objective latency annotation", "apiVersion: inference.networking.x-k8s.io/v1alpha2\nkind: InferenceObjective\nmetadata: {name: o, annotations: {igw.dev/slo-ttft-ms: 200ms}}\nspec: {poolRef: {name: llama}}\n",
			`(InferenceObjective "o"): metadata.annotations: annotation igw.dev/slo-ttft-ms: must be a whole number of milliseconds from 1 to 3600000, got "200ms"`},
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
		{"server kv events port", ms + "  address: h\n  kvEventsPort: 70000\n",
			`(ModelServer "s"): spec.kvEventsPort: must be 1..65471, not 70000`},
		{"server namespace", "apiVersion: igw.dev/v1alpha1\nkind: ModelServer\nmetadata: {name: s, namespace: Prod}\nspec: {address: h}\n",
			`(ModelServer "Prod/s"): metadata.namespace: a lowercase RFC 1123 label`},
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
	const qwenServer = "apiVersion: igw.dev/v1alpha1\nkind: ModelServer\nmetadata: {name: qwen-0, labels: {app: qwen}}\nspec: {address: 127.0.0.2}\n"
	tests := []struct {
		name string
		docs []string
		want []string
	}{
		{"objective to missing pool", []string{configtest.ServerDoc, configtest.PoolDoc,
			"apiVersion: inference.networking.x-k8s.io/v1alpha2\nkind: InferenceObjective\nmetadata: {name: o}\nspec: {poolRef: {name: nope}}\n"},
			[]string{`x.yaml: document 3 (InferenceObjective "o"): spec.poolRef.name: InferencePool "nope" not found in namespace "default"`}},
		{"rewrite to missing pool", []string{configtest.ServerDoc, configtest.PoolDoc,
			"apiVersion: inference.networking.x-k8s.io/v1alpha2\nkind: InferenceModelRewrite\nmetadata: {name: w}\nspec: {poolRef: {name: nope}, rules: [{targets: [{modelRewrite: a}]}]}\n"},
			[]string{`x.yaml: document 3 (InferenceModelRewrite "w"): spec.poolRef.name: InferencePool "nope" not found in namespace "default"`}},
		{"pool selects nothing", []string{qwenServer, configtest.PoolDoc},
			[]string{`x.yaml: document 2 (InferencePool "llama"): spec.selector.matchLabels: selects no ModelServer in namespace "default" (want labels app=llama)`}},
		{"pool selects servers of another namespace only", []string{
			"apiVersion: igw.dev/v1alpha1\nkind: ModelServer\nmetadata: {name: s, namespace: prod, labels: {app: llama}}\nspec: {address: h}\n", configtest.PoolDoc},
			[]string{`x.yaml: document 2 (InferencePool "llama"): spec.selector.matchLabels: selects no ModelServer in namespace "default"`}},
		{"servers serve none of the target ports", []string{
			"apiVersion: igw.dev/v1alpha1\nkind: ModelServer\nmetadata: {name: s, labels: {app: llama}}\nspec: {address: h, ports: [{number: 9000}]}\n", configtest.PoolDoc},
			[]string{`x.yaml: document 2 (InferencePool "llama"): spec.targetPorts: none of the 1 selected ModelServers lists any of these ports in spec.ports`}},
		{"two servers, one address", []string{configtest.ServerDoc,
			"apiVersion: igw.dev/v1alpha1\nkind: ModelServer\nmetadata: {name: llama-1, labels: {app: llama}}\nspec: {address: 127.0.0.1}\n", configtest.PoolDoc},
			[]string{`x.yaml: document 3 (InferencePool "llama"): spec.selector.matchLabels: endpoint 127.0.0.1:8000 is provided by both ModelServer "llama-0" and "llama-1"`}},
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

// An InferenceObjective's igw.dev/slo-* annotations become its requests'
// default latency objectives in the datastore.
func TestApply_LatencyObjectiveAnnotations(t *testing.T) {
	obj := `apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceObjective
metadata: {name: chat, annotations: {igw.dev/slo-ttft-ms: "250", igw.dev/slo-tpot-ms: "40"}}
spec: {poolRef: {name: llama}, priority: 5}
`
	plain := `apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceObjective
metadata: {name: batch}
spec: {poolRef: {name: llama}, priority: -1}
`
	cfg, err := schema.Parse("k.yaml", configtest.File(configtest.ServerDoc, configtest.PoolDoc, obj, plain))
	if err != nil {
		t.Fatal(err)
	}
	store := datastore.NewStore(nil)
	static.Apply(cfg, store, static.Pools(cfg))
	pool := store.PoolNames()[0]
	if got := store.LatencyObjective(pool, "chat"); got.TTFT != 250*time.Millisecond || got.TPOT != 40*time.Millisecond {
		t.Errorf("chat: %+v", got)
	}
	if got := store.LatencyObjective(pool, "batch"); got != (datastore.LatencyObjective{}) {
		t.Errorf("batch: %+v, want none", got)
	}
	if got := store.Priority(pool, "chat"); got != 5 {
		t.Errorf("priority %d", got)
	}
}

// The llm-d.ai group is the seeds' schema under another name (REFERENCE.md
// §8): both load alike; a version of neither is refused with the right form
// named.
func TestParse_LLMDGroupAndAWrongGroupNamed(t *testing.T) {
	obj := `apiVersion: llm-d.ai/v1alpha2
kind: InferenceObjective
metadata: {name: o}
spec: {priority: -1, poolRef: {name: llama}}
`
	rw := `apiVersion: llm-d.ai/v1alpha2
kind: InferenceModelRewrite
metadata: {name: rw}
spec:
  poolRef: {name: llama}
  rules: [{targets: [{modelRewrite: a}]}]
`
	epc := `apiVersion: llm-d.ai/v1alpha1
kind: EndpointPickerConfig
plugins: [{type: queue-scorer}]
schedulingProfiles: [{name: default, plugins: [{pluginRef: queue-scorer}]}]
`
	cfg, err := schema.Parse("k.yaml", configtest.File(configtest.ServerDoc, configtest.PoolDoc, obj, rw, epc))
	if err != nil {
		t.Fatal(err)
	}
	if os := static.Objectives(cfg); len(os) != 1 || os[0].Spec.EffectivePriority() != -1 {
		t.Errorf("objectives = %+v", os)
	}
	if rws := static.Rewrites(cfg); len(rws) != 1 {
		t.Errorf("rewrites = %+v", rws)
	}
	wrong := strings.Replace(obj, "llm-d.ai/v1alpha2", "inference.networking.k8s.io/v1alpha1", 1)
	_, err = schema.Parse("k.yaml", configtest.File(configtest.ServerDoc, configtest.PoolDoc, wrong))
	if err == nil || !strings.Contains(err.Error(), "inference.networking.x-k8s.io/v1alpha2 or llm-d.ai/v1alpha2") || !strings.Contains(err.Error(), `"inference.networking.k8s.io/v1alpha1"`) {
		t.Errorf("InferenceObjective as inference.networking.k8s.io/v1alpha1: %v, want an error naming the right forms", err)
	}
}
