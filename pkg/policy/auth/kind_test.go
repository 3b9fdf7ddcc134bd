package auth_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/igw-dev/igw/internal/configtest"
	"github.com/igw-dev/igw/pkg/config"
	"github.com/igw-dev/igw/pkg/engine"
	"github.com/igw-dev/igw/pkg/policy/auth"
)

// The APIKeys and AuthPolicy kinds, parsed as igw serve parses them.

// schema is igw's configuration schema: a kind's documents refer to
// other modules' kinds (a route to a pool, a key to a quota), so the
// tests parse with all of them.
var schema = engine.Schema()

const (
	hashA = "sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae" // "foo"
	hashB = "sha256:fcde2b2edba56bf408601fb721fe9b5c338d10ee429ea04fae5511b68fbf8fb9" // "bar"
)

func TestParse_SecurityInvalidValues(t *testing.T) {
	keys := "apiVersion: igw.dev/v1alpha1\nkind: APIKeys\nmetadata: {name: k}\nspec:\n"
	auth := "apiVersion: igw.dev/v1alpha1\nkind: AuthPolicy\nspec:\n"
	tests := []struct {
		name, doc, want string
	}{
		{"key in clear", keys + "  keys: [{id: a, hash: hunter2}]\n",
			`(APIKeys "k"): spec.keys[0].hash: must start with "sha256:" (the key's SHA-256, never the key itself)`},
		{"short hash", keys + "  keys: [{id: a, hash: 'sha256:abc'}]\n",
			`(APIKeys "k"): spec.keys[0].hash: must be "sha256:" followed by 64 lower-case hex digits`},
		{"key without id", keys + "  keys: [{hash: " + hashA + "}]\n",
			`(APIKeys "k"): spec.keys[0].id: required`},
		{"no keys", keys + "  tenant: t\n", `(APIKeys "k"): spec.keys: required`},
		{"bad model pattern", keys + "  models: ['l*ma']\n  keys: [{id: a, hash: " + hashA + "}]\n",
			`(APIKeys "k"): spec.models[0]: only a trailing * is allowed, not "l*ma"`},
		{"tenant with space", keys + "  keys: [{id: a, hash: " + hashA + ", tenant: 'a b'}]\n",
			`(APIKeys "k"): spec.keys[0].tenant: must be printable ASCII`},
		{"missing keys file", keys + "  keysFile: nope.keys\n", `(APIKeys "k"): spec.keysFile: reading`},
		{"unknown quota", keys + "  quotas: [gold]\n  keys: [{id: a, hash: " + hashA + "}]\n",
			`(APIKeys "k"): spec.quotas[0]: QuotaPolicy "gold" not found in namespace "default"`},
		{"same key twice", keys + "  keys: [{id: a, hash: " + hashA + "}, {id: b, hash: " + hashA + "}]\n",
			`(APIKeys "k"): spec.keys[1].hash: the same key as APIKeys "k" spec.keys[0]`},
		{"auth without jwt", auth + "  {}\n", `(AuthPolicy): spec.jwt: required`},
		{"jwt alg none", auth + "  jwt: {jwksFile: x.json, algorithms: [none]}\n", `(AuthPolicy): spec.jwt.algorithms[0]: must be one of RS256`},
		{"jwt grant tenant", auth + "  jwt: {jwksFile: x.json, grant: {tenant: t}}\n", `(AuthPolicy): spec.jwt.grant.tenant: not allowed`},
		{"jwt leeway", auth + "  jwt: {jwksFile: x.json, leeway: 1h}\n", `(AuthPolicy): spec.jwt.leeway: must be 0s..5m0s, not 1h0m0s`},
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

func TestParse_KeysFileYAMLIsStrict(t *testing.T) {
	keysDoc := "apiVersion: igw.dev/v1alpha1\nkind: APIKeys\nmetadata: {name: t}\nspec: {keysFile: k.yaml}\n"
	cfg, err := configtest.Load(t, schema, map[string]string{"k.yaml": "keys:\n- {id: one, hash: " + hashA + ", tenant: x}\n"}, keysDoc)
	if err != nil {
		t.Fatal(err)
	}
	if k := auth.Keys(cfg)[0].FileKeys; len(k) != 1 || k[0].Tenant != "x" {
		t.Errorf("keys = %+v", k)
	}
	_, err = configtest.Load(t, schema, map[string]string{"k.yaml": "keys:\n- {id: one, hash: " + hashA + ", tenat: x}\n"}, keysDoc)
	if err == nil || !strings.Contains(err.Error(), `document 1 (APIKeys "t"): spec.keysFile: k.yaml: keys[0].tenat: unknown field`) {
		t.Errorf("err = %v", err)
	}
}

func TestModelAllowed(t *testing.T) {
	for _, tt := range []struct {
		patterns []string
		model    string
		want     bool
	}{
		{[]string{"*"}, "anything", true},
		{[]string{"llama-3"}, "llama-3", true},
		{[]string{"llama-3"}, "llama-3.1", false},
		{[]string{"llama-*"}, "llama-3.1", true},
		{[]string{"qwen", "llama-*"}, "mistral", false},
		{nil, "llama", false},
	} {
		if got := auth.ModelAllowed(tt.patterns, tt.model); got != tt.want {
			t.Errorf("ModelAllowed(%v, %q) = %v", tt.patterns, tt.model, got)
		}
	}
}
