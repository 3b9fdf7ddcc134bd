package singleprofile

import (
	"context"
	"testing"

	"github.com/igw-dev/igw/pkg/scheduling"
)

func TestSingleProfileHandler_RequiresExactlyOneProfile(t *testing.T) {
	tests := []struct {
		names   []string
		wantErr bool
	}{
		{[]string{"default"}, false},
		{nil, true},
		{[]string{"a", "b"}, true},
	}
	for _, tt := range tests {
		if err := New(Type).ValidateProfiles(tt.names); (err != nil) != tt.wantErr {
			t.Errorf("ValidateProfiles(%q) = %v, wantErr %v", tt.names, err, tt.wantErr)
		}
	}
}

func TestSingleProfileHandler_RunsTheProfileOnce(t *testing.T) {
	h := New(Type)
	profiles := []*scheduling.Profile{{}}
	if got := h.Pick(context.Background(), nil, profiles, nil); len(got) != 1 {
		t.Fatalf("first round ran %d profiles, want 1", len(got))
	}
	done := []scheduling.ProfileResult{{Profile: "default"}}
	if got := h.Pick(context.Background(), nil, profiles, done); len(got) != 0 {
		t.Fatalf("second round ran %d profiles, want 0", len(got))
	}
	if p, err := h.ProcessResults(context.Background(), nil, done); err != nil || p != "default" {
		t.Fatalf("primary = %q, %v", p, err)
	}
}
