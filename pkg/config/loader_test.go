package config_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/igw-dev/igw/internal/configtest"
	"github.com/igw-dev/igw/pkg/config"
	"github.com/igw-dev/igw/pkg/engine"
	"github.com/igw-dev/igw/pkg/gateway"
)

// The loader's behaviours, shown with igw's own schema (the engine's kinds
// and the gateway's listeners): the loader knows no kind, so these tests
// borrow real ones. registry_test.go shows the same mechanics with kinds
// declared by the test.

// schema is igw's configuration schema, as igw serve parses files.
var schema = engine.Schema(gateway.Kind())

func TestParse_UnknownFieldsNameFileDocumentAndField(t *testing.T) {
	data := configtest.File(configtest.ServerDoc, `apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata: {name: llama, lables: {a: b}}
spec:
  selector: {matchLabels: {app: llama}}
  targetPorts: [{number: 8000}, {numbr: 8001}]
  TargetPorts: []
`)
	_, err := schema.Parse("standalone.yaml", data)
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
	if !errors.Is(err, config.ErrUnknownField) {
		t.Error("errors.Is(err, config.ErrUnknownField) = false")
	}
	var e *config.Error
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
		_, err := schema.Parse("t.yaml", []byte(tc.doc))
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
			_, err := schema.Parse("k.yaml", []byte(tc.doc))
			if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
				t.Errorf("error = %v\nwant prefix %s", err, tc.want)
			}
		})
	}
}

func TestParse_DocumentNumberingSkipsEmptyDocuments(t *testing.T) {
	data := []byte("# header comment\n---\n" + configtest.ServerDoc + "---\n# only a comment\n---\n\n---\n" + configtest.PoolDoc +
		"...\n--- \napiVersion: igw.dev/v1alpha1\nkind: Route\nmetadata: {name: r}\nspec: {backends: [{pool: missing}]}\n")
	_, err := schema.Parse("n.yaml", data)
	var e *config.Error
	if !errors.As(err, &e) {
		t.Fatalf("error = %v", err)
	}
	if e.Document != 3 || e.Line != 20 || e.Field != "spec.backends[0].pool" {
		t.Errorf("error at document %d line %d field %q, want document 3 line 20 field spec.backends[0].pool: %v", e.Document, e.Line, e.Field, err)
	}
	if _, err := schema.Parse("empty.yaml", []byte("# nothing\n---\n")); err == nil || err.Error() != "empty.yaml: no documents; a configuration needs at least one resource" {
		t.Errorf("empty file: error = %v", err)
	}
}

func TestParse_CollectsErrorsFromEveryDocument(t *testing.T) {
	data := configtest.File(
		"apiVersion: igw.dev/v1alpha1\nkind: ModelServer\nmetadata: {name: a}\nspec: {address: \"h:1\", engine: x}\n",
		"apiVersion: igw.dev/v1alpha1\nkind: Gateway\nspec: {bogus: 1}\n",
		"apiVersion: inference.networking.k8s.io/v1\nkind: InferencePool\nmetadata: {name: p}\nspec: {selector: {matchLabels: {a: b}}, targetPorts: [{number: 0}]}\n",
	)
	_, err := schema.Parse("m.yaml", data)
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
	_, err := schema.Load("testdata/does-not-exist.yaml")
	if err == nil || !strings.Contains(err.Error(), "does-not-exist.yaml") {
		t.Errorf("error = %v", err)
	}
}

// TestParse_UniqueNamesAndSingletons: objects of one kind are unique by
// namespace and name, and a singleton kind appears once (the kinds' own
// cross-references are tested beside them).
func TestParse_UniqueNamesAndSingletons(t *testing.T) {
	tests := []struct {
		name string
		docs []string
		want []string
	}{
		{"duplicate names", []string{configtest.ServerDoc, configtest.PoolDoc, configtest.ServerDoc, configtest.PoolDoc},
			[]string{
				`x.yaml: document 4 (InferencePool "llama"): metadata.name: duplicate InferencePool "llama" in namespace "default" (first defined in document 2)`,
				`x.yaml: document 3 (ModelServer "llama-0"): metadata.name: duplicate ModelServer "llama-0" in namespace "default" (first defined in document 1)`,
			}},
		{"two gateways", []string{configtest.ServerDoc, configtest.PoolDoc, "apiVersion: igw.dev/v1alpha1\nkind: Gateway\n", "apiVersion: igw.dev/v1alpha1\nkind: Gateway\n"},
			[]string{`x.yaml: document 4 (Gateway): only one Gateway is allowed; the first is document 3`}},
		{"two picker configs", []string{configtest.ServerDoc, configtest.PoolDoc, "apiVersion: llm-d.ai/v1alpha1\nkind: EndpointPickerConfig\n", "apiVersion: llm-d.ai/v1alpha1\nkind: EndpointPickerConfig\n"},
			[]string{`x.yaml: document 4 (EndpointPickerConfig): only one EndpointPickerConfig is allowed; the first is document 3`}},
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
