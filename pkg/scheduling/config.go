package scheduling

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"

	"sigs.k8s.io/yaml"
)

// API versions and kind accepted for EndpointPickerConfig: the Gateway API
// Inference Extension group and the llm-d group, so configurations written
// for either picker load unchanged.
const (
	APIVersionInferenceExtension = "inference.networking.x-k8s.io/v1alpha1"
	APIVersionLLMD               = "llm-d.ai/v1alpha1"
	KindEndpointPickerConfig     = "EndpointPickerConfig"
)

// Type names of the plugins the framework falls back to when a
// configuration does not name one. They must be registered in the registry
// used to build a scheduler (plugins.NewRegistry registers them).
const (
	DefaultPickerType         = "max-score-picker"
	DefaultProfileHandlerType = "single-profile-handler"
	DefaultProfileName        = "default"
)

// EndpointPickerConfig is the EndpointPickerConfig resource (REFERENCE §1):
// plugin instances and the scheduling profiles that reference them. Field
// names and shape match the Kubernetes resource exactly, so the same YAML
// works with igw and other pickers.
type EndpointPickerConfig struct {
	// APIVersion must be APIVersionInferenceExtension or APIVersionLLMD.
	APIVersion string `json:"apiVersion"`
	// Kind must be KindEndpointPickerConfig; the config loader dispatches
	// documents on it.
	Kind string `json:"kind"`
	// Metadata is accepted (and ignored) so a manifest copied from a
	// cluster parses.
	Metadata *ObjectMeta `json:"metadata,omitempty"`
	// Plugins are the plugin instances.
	Plugins []PluginSpec `json:"plugins"`
	// SchedulingProfiles reference plugin instances. When empty, one
	// profile named "default" references every filter, scorer and picker
	// instance in order, scorers with weight 1.
	SchedulingProfiles []SchedulingProfile `json:"schedulingProfiles,omitempty"`
}

// ObjectMeta is the subset of Kubernetes object metadata a config file may
// carry.
type ObjectMeta struct {
	// Name and Namespace identify the object in a cluster; igw ignores them.
	Name      string `json:"name,omitempty"`
	Namespace string `json:"namespace,omitempty"`
	// Labels and Annotations are accepted and ignored.
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

// PluginSpec is one plugin instance.
type PluginSpec struct {
	// Type is the registered plugin type, e.g. "prefix-cache-scorer".
	Type string `json:"type"`
	// Name is the instance name profiles reference; defaults to Type.
	Name string `json:"name,omitempty"`
	// Parameters are handed to the plugin's factory, which parses them
	// strictly.
	Parameters json.RawMessage `json:"parameters,omitempty"`
}

// InstanceName is Name, or Type when Name is empty.
func (p PluginSpec) InstanceName() string {
	if p.Name != "" {
		return p.Name
	}
	return p.Type
}

// SchedulingProfile is a named pipeline of filters, weighted scorers and a
// picker.
type SchedulingProfile struct {
	// Name identifies the profile to the profile handler; unique.
	Name string `json:"name"`
	// Plugins are the profile's filters (run in this order), scorers and
	// at most one picker.
	Plugins []ProfilePluginRef `json:"plugins"`
}

// ProfilePluginRef references a plugin instance from a profile.
type ProfilePluginRef struct {
	// PluginRef is the instance name.
	PluginRef string `json:"pluginRef"`
	// Weight multiplies a scorer's 0..1 output; default 1, must be >= 0.
	// It is ignored for plugins that are not scorers.
	Weight *float64 `json:"weight,omitempty"`
}

// EffectiveWeight is Weight, or 1 when unset.
func (r ProfilePluginRef) EffectiveWeight() float64 {
	if r.Weight == nil {
		return 1
	}
	return *r.Weight
}

// ParseEndpointPickerConfig parses one EndpointPickerConfig YAML (or JSON)
// document strictly: unknown fields are errors naming the field, and
// apiVersion and kind must be the accepted ones. It checks the structure
// (names, references, weights); plugin types and parameters are checked
// when a scheduler is built from the result with NewScheduler.
func ParseEndpointPickerConfig(raw []byte) (*EndpointPickerConfig, error) {
	var cfg EndpointPickerConfig
	// Exact field names first (encoding/json, under sigs.k8s.io/yaml, would
	// accept "Weight" for "weight"), then the strict typed decode.
	var generic any
	if err := yaml.Unmarshal(raw, &generic); err != nil {
		return nil, fmt.Errorf("EndpointPickerConfig: %w", err)
	}
	if err := checkFields(generic, reflect.TypeOf(&cfg), ""); err != nil {
		return nil, fmt.Errorf("EndpointPickerConfig: %w", err)
	}
	if err := yaml.UnmarshalStrict(raw, &cfg); err != nil {
		return nil, fmt.Errorf("EndpointPickerConfig: %w", err)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &cfg, nil
}

// Validate checks what can be checked without a registry: apiVersion,
// kind, plugin and profile names, references and weights. Errors name the
// offending field by its path, e.g. schedulingProfiles[0].plugins[1].weight.
func (c *EndpointPickerConfig) Validate() error {
	var errs []error
	add := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("EndpointPickerConfig: "+format, args...))
	}
	switch c.APIVersion {
	case APIVersionInferenceExtension, APIVersionLLMD:
	case "":
		add("apiVersion: required (%s or %s)", APIVersionInferenceExtension, APIVersionLLMD)
	default:
		add("apiVersion: %q is not supported (use %s or %s)", c.APIVersion, APIVersionInferenceExtension, APIVersionLLMD)
	}
	if c.Kind != KindEndpointPickerConfig {
		add("kind: %q, want %s", c.Kind, KindEndpointPickerConfig)
	}
	names := map[string]bool{}
	for i, p := range c.Plugins {
		if p.Type == "" {
			add("plugins[%d].type: required", i)
			continue
		}
		n := p.InstanceName()
		if names[n] {
			add("plugins[%d].name: duplicate plugin name %q", i, n)
		}
		names[n] = true
	}
	profiles := map[string]bool{}
	for i, prof := range c.SchedulingProfiles {
		if prof.Name == "" {
			add("schedulingProfiles[%d].name: required", i)
		} else if profiles[prof.Name] {
			add("schedulingProfiles[%d].name: duplicate profile name %q", i, prof.Name)
		}
		profiles[prof.Name] = true
		refs := map[string]bool{}
		for j, ref := range prof.Plugins {
			path := fmt.Sprintf("schedulingProfiles[%d].plugins[%d]", i, j)
			switch {
			case ref.PluginRef == "":
				add("%s.pluginRef: required", path)
			case !names[ref.PluginRef]:
				add("%s.pluginRef: no plugin named %q in plugins", path, ref.PluginRef)
			case refs[ref.PluginRef]:
				add("%s.pluginRef: %q referenced twice in profile %q", path, ref.PluginRef, prof.Name)
			}
			refs[ref.PluginRef] = true
			if ref.Weight != nil {
				w := *ref.Weight
				if math.IsNaN(w) || math.IsInf(w, 0) || w < 0 {
					add("%s.weight: must be a finite number >= 0, got %v", path, w)
				}
			}
		}
	}
	return errors.Join(errs...)
}

// DefaultConfig is the configuration used when none is given: the widely
// used default profile (REFERENCE §1) — queue-scorer weight 2,
// kv-cache-utilization-scorer weight 2, prefix-cache-scorer weight 3 — with
// a max-score picker and the single-profile handler.
func DefaultConfig() *EndpointPickerConfig {
	w := func(v float64) *float64 { return &v }
	return &EndpointPickerConfig{
		APIVersion: APIVersionInferenceExtension,
		Kind:       KindEndpointPickerConfig,
		Plugins: []PluginSpec{
			{Type: "queue-scorer"},
			{Type: "kv-cache-utilization-scorer"},
			{Type: "prefix-cache-scorer"},
			{Type: DefaultPickerType},
			{Type: DefaultProfileHandlerType},
		},
		SchedulingProfiles: []SchedulingProfile{{
			Name: DefaultProfileName,
			Plugins: []ProfilePluginRef{
				{PluginRef: "queue-scorer", Weight: w(2)},
				{PluginRef: "kv-cache-utilization-scorer", Weight: w(2)},
				{PluginRef: "prefix-cache-scorer", Weight: w(3)},
				{PluginRef: DefaultPickerType},
			},
		}},
	}
}
