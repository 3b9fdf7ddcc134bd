package singleprofile

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/igw-dev/igw/pkg/scheduling"
)

// Type is the plugin's type name in EndpointPickerConfig.
const Type = "single-profile-handler"

var (
	_ scheduling.ProfileHandler   = (*Handler)(nil)
	_ scheduling.ProfileValidator = (*Handler)(nil)
)

// Handler runs the single configured profile.
type Handler struct{ name string }

// New returns a single-profile handler named name.
func New(name string) *Handler { return &Handler{name: name} }

// Factory builds a single-profile-handler; it takes no parameters.
func Factory(name string, raw json.RawMessage) (scheduling.Plugin, error) {
	if err := scheduling.DecodeParameters(raw, &struct{}{}); err != nil {
		return nil, err
	}
	return New(name), nil
}

// Register adds the single-profile-handler type to r.
func Register(r *scheduling.Registry) error { return r.Register(Type, Factory) }

// TypedName identifies the instance.
func (h *Handler) TypedName() scheduling.TypedName {
	return scheduling.TypedName{Type: Type, Name: h.name}
}

// ValidateProfiles requires exactly one profile.
func (h *Handler) ValidateProfiles(names []string) error {
	if len(names) != 1 {
		return fmt.Errorf("%s needs exactly one scheduling profile, got %d %q", Type, len(names), names)
	}
	return nil
}

// Pick runs the first (only) profile once.
func (h *Handler) Pick(_ context.Context, _ *scheduling.Request, profiles []*scheduling.Profile, results []scheduling.ProfileResult) []*scheduling.Profile {
	if len(results) > 0 || len(profiles) == 0 {
		return nil
	}
	return profiles[:1]
}

// ProcessResults makes the profile's choice primary.
func (h *Handler) ProcessResults(_ context.Context, _ *scheduling.Request, results []scheduling.ProfileResult) (string, error) {
	if len(results) == 0 {
		return "", fmt.Errorf("%s: no profile result", Type)
	}
	return results[0].Profile, nil
}
