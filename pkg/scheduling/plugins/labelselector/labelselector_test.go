package labelselector

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/igw-dev/igw/pkg/datastore"
	"github.com/igw-dev/igw/pkg/scheduling"
	"github.com/igw-dev/igw/pkg/scheduling/schedtest"
)

func TestLabelSelectorFilter_KeepsMatchingEndpoints(t *testing.T) {
	mk := func(addr string, labels map[string]string) *datastore.Endpoint {
		return datastore.NewEndpoint(addr, addr, "p", "", labels)
	}
	eps := []*datastore.Endpoint{
		mk("a", map[string]string{"gpu": "h100", "role": "decode"}),
		mk("b", map[string]string{"gpu": "a100", "role": "decode"}),
		mk("c", nil),
		mk("d", map[string]string{"gpu": "h100"}),
	}
	tests := []struct {
		name     string
		selector map[string]string
		want     string
	}{
		{"one label", map[string]string{"gpu": "h100"}, "ad"},
		{"all labels must match", map[string]string{"gpu": "h100", "role": "decode"}, "a"},
		{"no match empties the set", map[string]string{"gpu": "b200"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kept := New(Type, tt.selector).Filter(context.Background(), &scheduling.Request{}, schedtest.Candidates(eps...))
			var got string
			for _, c := range kept {
				got += c.Endpoint.Address
			}
			if got != tt.want {
				t.Fatalf("kept %q, want %q", got, tt.want)
			}
		})
	}
}

func TestLabelSelectorFilter_Parameters(t *testing.T) {
	tests := []struct{ raw, wantErr string }{
		{`{"matchLabels": {"gpu": "h100"}}`, ""},
		{``, `parameter "matchLabels": required`},
		{`{"matchLabels": {}}`, `parameter "matchLabels": required`},
		{`{"matchlabels": {"a": "b"}}`, `unknown parameter "matchlabels"`},
		{`{"matchLabels": {"a": 1}}`, `parameter "matchLabels`},
	}
	for _, tt := range tests {
		t.Run(tt.raw, func(t *testing.T) {
			_, err := Factory("f", json.RawMessage(tt.raw))
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}
