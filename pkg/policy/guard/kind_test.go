package guard_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/igw-dev/igw/internal/configtest"
	"github.com/igw-dev/igw/pkg/config"
	"github.com/igw-dev/igw/pkg/engine"
)

// The RequestGuard kind, parsed as igw serve parses them.

// schema is igw's configuration schema: a kind's documents refer to
// other modules' kinds (a route to a pool, a key to a quota), so the
// tests parse with all of them.
var schema = engine.Schema()

func TestParse_SecurityInvalidValues(t *testing.T) {
	guard := "apiVersion: igw.dev/v1alpha1\nkind: RequestGuard\nmetadata: {name: g}\nspec:\n"
	tests := []struct {
		name, doc, want string
	}{
		{"guard bad regexp", guard + "  denyRules: [{name: x, pattern: '(unclosed'}]\n",
			`(RequestGuard "g"): spec.denyRules[0].pattern: invalid regular expression`},
		{"guard rule named like a limit", guard + "  denyRules: [{name: schema, pattern: x}]\n",
			`(RequestGuard "g"): spec.denyRules[0].name: "schema" is the name of a built-in limit`},
		{"guard mode", guard + "  denyRules: [{name: x, pattern: x, mode: Warn}]\n",
			`(RequestGuard "g"): spec.denyRules[0].mode: must be Block or Log, not "Warn"`},
		{"guard max tokens action", guard + "  maxTokens: {limit: 5, action: Truncate}\n",
			`(RequestGuard "g"): spec.maxTokens.action: must be Reject or Clamp, not "Truncate"`},
		{"guard zero messages", guard + "  maxMessages: 0\n", `(RequestGuard "g"): spec.maxMessages: must be positive, not 0`},
		{"guard body size", guard + "  maxBodySize: 0\n", `(RequestGuard "g"): spec.maxBodySize: must be positive, not 0`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := configtest.Load(t, schema, map[string]string{"x.json": `{"keys":[]}`}, configtest.ServerDoc, configtest.PoolDoc, tt.doc)
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), "igw.yaml: document 3 "+tt.want) {
				t.Errorf("error:\n%v\nwant a line containing:\n%s", err, tt.want)
			}
			var ce *config.Error
			if !errors.As(err, &ce) {
				t.Errorf("not a *config.Error: %T", err)
			}
		})
	}
}
