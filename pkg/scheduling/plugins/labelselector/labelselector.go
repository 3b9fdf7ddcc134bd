package labelselector

import (
	"context"
	"encoding/json"

	"github.com/igw-dev/igw/pkg/scheduling"
)

// Type is the plugin's type name in EndpointPickerConfig.
const Type = "label-selector-filter"

var _ scheduling.Filter = (*Filter)(nil)

// Parameters are the filter's configuration; see the package doc.
type Parameters struct {
	// MatchLabels are the labels an endpoint must carry, with these values.
	MatchLabels map[string]string `json:"matchLabels"`
}

// Filter keeps endpoints whose labels match a selector.
type Filter struct {
	name   string
	labels map[string]string
}

// New returns a label selector filter named name. An empty selector
// matches every endpoint (only Factory rejects it, as a likely mistake).
func New(name string, matchLabels map[string]string) *Filter {
	return &Filter{name: name, labels: matchLabels}
}

// Factory builds a label-selector-filter from configuration; matchLabels is
// required.
func Factory(name string, raw json.RawMessage) (scheduling.Plugin, error) {
	var p Parameters
	if err := scheduling.DecodeParameters(raw, &p); err != nil {
		return nil, err
	}
	if len(p.MatchLabels) == 0 {
		return nil, scheduling.ParamError("matchLabels", "required and must not be empty")
	}
	for k := range p.MatchLabels {
		if k == "" {
			return nil, scheduling.ParamError("matchLabels", "label keys must not be empty")
		}
	}
	return New(name, p.MatchLabels), nil
}

// Register adds the label-selector-filter type to r.
func Register(r *scheduling.Registry) error { return r.Register(Type, Factory) }

// TypedName identifies the instance.
func (f *Filter) TypedName() scheduling.TypedName {
	return scheduling.TypedName{Type: Type, Name: f.name}
}

// Filter implements scheduling.Filter; it compacts candidates in place.
func (f *Filter) Filter(_ context.Context, _ *scheduling.Request, cands []scheduling.Candidate) []scheduling.Candidate {
	kept := cands[:0]
	for _, c := range cands {
		if f.matches(c.Endpoint.Labels) {
			kept = append(kept, c)
		}
	}
	return kept
}

func (f *Filter) matches(labels map[string]string) bool {
	for k, v := range f.labels {
		if got, ok := labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}
