package scheduling_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/igw-dev/igw/pkg/scheduling"
	"github.com/igw-dev/igw/pkg/scheduling/plugins"
)

const referenceConfig = `
apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: queue-scorer
- type: kv-cache-utilization-scorer
- type: prefix-cache-scorer
  parameters: {blockSize: 64, maxPrefixBlocksToMatch: 256, lruCapacityPerServer: 31250}
schedulingProfiles:
- name: default
  plugins:
  - pluginRef: queue-scorer
    weight: 2
  - pluginRef: kv-cache-utilization-scorer
    weight: 2
  - pluginRef: prefix-cache-scorer
    weight: 3
`

func TestParseEndpointPickerConfig_AcceptsReferenceConfig(t *testing.T) {
	for _, apiVersion := range []string{scheduling.APIVersionInferenceExtension, scheduling.APIVersionLLMD} {
		raw := strings.Replace(referenceConfig, scheduling.APIVersionInferenceExtension, apiVersion, 1)
		cfg, err := scheduling.ParseEndpointPickerConfig([]byte(raw))
		if err != nil {
			t.Fatalf("%s: %v", apiVersion, err)
		}
		if len(cfg.Plugins) != 3 || cfg.Plugins[2].InstanceName() != "prefix-cache-scorer" {
			t.Fatalf("plugins = %+v", cfg.Plugins)
		}
		refs := cfg.SchedulingProfiles[0].Plugins
		if len(refs) != 3 || refs[2].EffectiveWeight() != 3 {
			t.Fatalf("profile refs = %+v", refs)
		}
		s, err := scheduling.NewScheduler(cfg, plugins.NewRegistry())
		if err != nil {
			t.Fatal(err)
		}
		p := s.Profiles()[0]
		if p.Picker().TypedName().Type != "max-score-picker" {
			t.Fatalf("picker = %v, want the default max-score-picker", p.Picker().TypedName())
		}
	}
}

func TestParseEndpointPickerConfig_RejectsBadDocuments(t *testing.T) {
	tests := []struct {
		name    string
		edit    func(string) string
		wantErr string
	}{
		{"unknown top-level field", func(s string) string { return s + "extra: true\n" }, `unknown field "extra"`},
		{"unknown nested field names its path",
			func(s string) string { return strings.Replace(s, "    weight: 3", "    weigth: 3", 1) },
			`unknown field "schedulingProfiles[0].plugins[2].weigth"`},
		{"field names are case-sensitive",
			func(s string) string { return strings.Replace(s, "    weight: 3", "    Weight: 3", 1) },
			`unknown field "schedulingProfiles[0].plugins[2].Weight"`},
		{"negative weight", func(s string) string { return strings.Replace(s, "weight: 3", "weight: -1", 1) },
			`schedulingProfiles[0].plugins[2].weight: must be a finite number >= 0`},
		{"weight of the wrong type", func(s string) string { return strings.Replace(s, "weight: 3", "weight: heavy", 1) },
			`weight`},
		{"unknown pluginRef", func(s string) string { return strings.Replace(s, "pluginRef: queue-scorer", "pluginRef: queue", 1) },
			`schedulingProfiles[0].plugins[0].pluginRef: no plugin named "queue"`},
		{"wrong apiVersion", func(s string) string { return strings.Replace(s, "inference.networking.x-k8s.io/v1alpha1", "v1", 1) },
			`apiVersion: "v1" is not supported`},
		{"wrong kind", func(s string) string { return strings.Replace(s, "kind: EndpointPickerConfig", "kind: Pod", 1) },
			`kind: "Pod"`},
		{"duplicate plugin name", func(s string) string {
			return strings.Replace(s, "- type: kv-cache-utilization-scorer", "- type: queue-scorer", 1)
		},
			`plugins[1].name: duplicate plugin name "queue-scorer"`},
		{"plugin without type", func(s string) string { return strings.Replace(s, "- type: queue-scorer", "- name: q", 1) },
			`plugins[0].type: required`},
		{"profile without name", func(s string) string { return strings.Replace(s, "- name: default", "- name: \"\"", 1) },
			`schedulingProfiles[0].name: required`},
		{"not YAML", func(string) string { return "plugins: [" }, `EndpointPickerConfig`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := scheduling.ParseEndpointPickerConfig([]byte(tt.edit(referenceConfig)))
			t.Log(err)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

func TestNewScheduler_RejectsBadPlugins(t *testing.T) {
	tests := []struct {
		name    string
		yaml    string
		wantErr []string
	}{
		{"unknown plugin type", `
plugins:
- type: queue-scorer
- type: magic-scorer
  name: magic
`, []string{`plugins[1]`, `plugin "magic"`, `unknown plugin type "magic-scorer"`}},
		{"unknown parameter names plugin and parameter", `
plugins:
- type: prefix-cache-scorer
  parameters: {blockSize: 64, lruCapacity: 10}
`, []string{`plugin "prefix-cache-scorer"`, `unknown parameter "lruCapacity"`}},
		{"bad parameter value", `
plugins:
- type: prefix-cache-scorer
  name: prefix
  parameters: {blockSize: 0}
`, []string{`plugin "prefix"`, `parameter "blockSize"`}},
		{"two pickers in a profile", `
plugins:
- type: max-score-picker
- type: random-picker
schedulingProfiles:
- name: default
  plugins:
  - pluginRef: max-score-picker
  - pluginRef: random-picker
`, []string{`schedulingProfiles[0].plugins[1]`, `second picker "random-picker"`}},
		{"profile handler used in a profile", `
plugins:
- type: single-profile-handler
schedulingProfiles:
- name: default
  plugins:
  - pluginRef: single-profile-handler
`, []string{`schedulingProfiles[0].plugins[0]`, `not a filter, scorer or picker`}},
		{"single-profile-handler with two profiles", `
plugins:
- type: queue-scorer
schedulingProfiles:
- name: a
  plugins: [{pluginRef: queue-scorer}]
- name: b
  plugins: [{pluginRef: queue-scorer}]
`, []string{`schedulingProfiles`, `exactly one scheduling profile`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw := "apiVersion: llm-d.ai/v1alpha1\nkind: EndpointPickerConfig\n" + tt.yaml
			cfg, err := scheduling.ParseEndpointPickerConfig([]byte(raw))
			if err == nil {
				_, err = scheduling.NewScheduler(cfg, plugins.NewRegistry())
			}
			if err == nil {
				t.Fatal("built a scheduler from a bad configuration")
			}
			t.Log(err)
			for _, want := range tt.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("err = %v, want it to contain %q", err, want)
				}
			}
		})
	}
}

func TestNewScheduler_WithoutProfilesUsesEveryPlugin(t *testing.T) {
	cfg, err := scheduling.ParseEndpointPickerConfig([]byte(`
apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: label-selector-filter
  parameters: {matchLabels: {role: decode}}
- type: queue-scorer
- type: random-picker
`))
	if err != nil {
		t.Fatal(err)
	}
	s, err := scheduling.NewScheduler(cfg, plugins.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	p := s.Profiles()[0]
	if p.Name() != "default" || len(p.Filters()) != 1 || len(p.Scorers()) != 1 || p.Picker().TypedName().Type != "random-picker" {
		t.Fatalf("profile %q: %d filters, %d scorers, picker %v", p.Name(), len(p.Filters()), len(p.Scorers()), p.Picker().TypedName())
	}
	if w := p.Scorers()[0].Weight; w != 1 {
		t.Fatalf("weight %v, want default 1", w)
	}
}

func TestNewDefaultScheduler_IsQueueKVPrefix223(t *testing.T) {
	s, err := plugins.NewDefaultScheduler()
	if err != nil {
		t.Fatal(err)
	}
	p := s.Profiles()[0]
	var got []string
	for _, ws := range p.Scorers() {
		got = append(got, fmt.Sprintf("%s=%g", ws.Scorer.TypedName().Type, ws.Weight))
	}
	want := "queue-scorer=2 kv-cache-utilization-scorer=2 prefix-cache-scorer=3"
	if strings.Join(got, " ") != want || p.Picker().TypedName().Type != "max-score-picker" {
		t.Fatalf("default profile %v with %v, want %s with max-score-picker", got, p.Picker().TypedName(), want)
	}
}
