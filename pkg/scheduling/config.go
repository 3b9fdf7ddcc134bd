package scheduling

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/igw-dev/igw/pkg/flowcontrol"
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
	// SaturationDetector overrides the thresholds past which an endpoint
	// has no headroom (admission queues or sheds while every endpoint is
	// past them). Optional; unset fields keep the defaults.
	SaturationDetector *SaturationDetectorConfig `json:"saturationDetector,omitempty"`
	// FlowControl overrides the bounds of the admission queues. Optional;
	// unset fields keep the defaults.
	FlowControl *FlowControlConfig `json:"flowControl,omitempty"`
}

// SaturationDetectorConfig is the saturationDetector section. Every field
// is optional so a file states only what it changes; pointers tell "unset"
// from zero, which Validate refuses.
type SaturationDetectorConfig struct {
	// QueueDepthThreshold: waiting requests at which an endpoint is
	// saturated (default 5).
	QueueDepthThreshold *int `json:"queueDepthThreshold,omitempty"`
	// KVCacheUtilThreshold: KV-cache utilization (0..1] at which an
	// endpoint is saturated (default 0.8).
	KVCacheUtilThreshold *float64 `json:"kvCacheUtilThreshold,omitempty"`
	// MetricsStalenessThreshold: metrics older than this count as saturated
	// (default 200ms; igw epp: its --metrics-max-age).
	MetricsStalenessThreshold *Duration `json:"metricsStalenessThreshold,omitempty"`
	// ReservedSlots: running slots per endpoint that sheddable requests
	// may not take (default 1; 0 turns it off).
	ReservedSlots *int `json:"reservedSlots,omitempty"`
}

// FlowControlConfig is the flowControl section.
type FlowControlConfig struct {
	// MaxRequestsPerBand bounds each priority band's queue (default 1000).
	MaxRequestsPerBand *int `json:"maxRequestsPerBand,omitempty"`
	// MaxBytesPerBand bounds the request bytes queued per band (default
	// 64 MiB).
	MaxBytesPerBand *int64 `json:"maxBytesPerBand,omitempty"`
	// TTL is how long a request may wait before 429 (default 60s).
	TTL *Duration `json:"ttl,omitempty"`
	// Ordering orders each flow's queue: slo-deadline (default), edf or
	// fcfs (see flowcontrol.OrderingSLODeadline).
	Ordering *string `json:"ordering,omitempty"`
}

// Duration is a Go duration string ("200ms", "60s"). It is kept as text
// until Validate so that a malformed value is reported with its field's
// path, which a decoder error would not carry.
type Duration string

// parse returns d as a time.Duration, refusing non-positive values.
func (d Duration) parse() (time.Duration, error) {
	v, err := time.ParseDuration(string(d))
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration (e.g. 200ms, 60s)", string(d))
	}
	if v <= 0 {
		return 0, fmt.Errorf("must be > 0, got %s", d)
	}
	return v, nil
}

// Admission returns the saturation thresholds and flow-control bounds
// this configuration asks for: base with the fields the file sets
// replaced. base lets a caller supply its own defaults (igw epp derives
// the staleness threshold from its --metrics-max-age). Errors name the
// field by its path, e.g. flowControl.ttl.
func (c *EndpointPickerConfig) Admission(sat flowcontrol.SaturationConfig, flow flowcontrol.Config) (flowcontrol.SaturationConfig, flowcontrol.Config, error) {
	var errs []error
	if s := c.SaturationDetector; s != nil {
		if s.QueueDepthThreshold != nil {
			sat.QueueDepthThreshold = *s.QueueDepthThreshold
		}
		if s.KVCacheUtilThreshold != nil {
			sat.KVCacheUtilThreshold = *s.KVCacheUtilThreshold
		}
		if s.ReservedSlots != nil {
			sat.ReservedSlots = *s.ReservedSlots
		}
		if s.MetricsStalenessThreshold != nil {
			d, err := s.MetricsStalenessThreshold.parse()
			if err != nil {
				errs = append(errs, fmt.Errorf("EndpointPickerConfig: saturationDetector.metricsStalenessThreshold: %w", err))
			}
			sat.MetricsStalenessThreshold = d
		}
		if len(errs) == 0 {
			if err := sat.Validate(); err != nil {
				errs = append(errs, fmt.Errorf("EndpointPickerConfig: saturationDetector.%w", err))
			}
		}
	}
	if f := c.FlowControl; f != nil {
		n := len(errs)
		if f.MaxRequestsPerBand != nil {
			flow.MaxRequestsPerBand = *f.MaxRequestsPerBand
		}
		if f.MaxBytesPerBand != nil {
			flow.MaxBytesPerBand = *f.MaxBytesPerBand
		}
		if f.Ordering != nil {
			flow.Ordering = *f.Ordering
		}
		if f.TTL != nil {
			d, err := f.TTL.parse()
			if err != nil {
				errs = append(errs, fmt.Errorf("EndpointPickerConfig: flowControl.ttl: %w", err))
			}
			flow.TTL = d
		}
		if len(errs) == n {
			if err := flow.Validate(); err != nil {
				errs = append(errs, fmt.Errorf("EndpointPickerConfig: flowControl.%w", err))
			}
		}
	}
	return sat, flow, errors.Join(errs...)
}

// AdmissionFromYAML is Admission of the EndpointPickerConfig document raw
// over the defaults (base sat and flowcontrol.DefaultConfig()); an empty
// raw yields them unchanged.
func AdmissionFromYAML(raw []byte, sat flowcontrol.SaturationConfig) (flowcontrol.SaturationConfig, flowcontrol.Config, error) {
	if len(raw) == 0 {
		return sat, flowcontrol.DefaultConfig(), nil
	}
	cfg, err := ParseEndpointPickerConfig(raw)
	if err != nil {
		return sat, flowcontrol.Config{}, err
	}
	return cfg.Admission(sat, flowcontrol.DefaultConfig())
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
	if _, _, err := c.Admission(flowcontrol.DefaultSaturationConfig(), flowcontrol.DefaultConfig()); err != nil {
		errs = append(errs, err)
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
