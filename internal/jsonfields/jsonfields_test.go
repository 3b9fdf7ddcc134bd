package jsonfields

import (
	"reflect"
	"slices"
	"testing"
)

type inner struct {
	Shared string `json:"shared"`
	Deep   int    `json:"deep"`
}

type outer struct {
	inner  `json:",inline"`
	Shared bool   `json:"shared"` // shadows inner.Shared
	Plain  string // no tag: the Go name
	Skip   string `json:"-"`
	hidden string
	Opt    *int `json:"opt,omitempty"`
}

func TestOf_FollowsEncodingJSONRules(t *testing.T) {
	got := Of(reflect.TypeOf(outer{}))
	keys := make([]string, 0, len(got))
	for k := range got {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	if want := []string{"Plain", "deep", "opt", "shared"}; !slices.Equal(keys, want) {
		t.Fatalf("keys %v, want %v", keys, want)
	}
	if got["shared"].Kind() != reflect.Bool {
		t.Errorf("the outer field must shadow the embedded one, got %v", got["shared"])
	}
	_ = outer{}.hidden
}
