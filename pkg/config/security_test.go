package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const (
	hashA = "sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae" // "foo"
	hashB = "sha256:fcde2b2edba56bf408601fb721fe9b5c338d10ee429ea04fae5511b68fbf8fb9" // "bar"
)

// writeConfig writes docs (and side files) into a temporary directory and
// loads the configuration from there, so relative paths resolve as they
// would for an operator's file.
func writeConfig(t *testing.T, side map[string]string, docs ...string) (*Config, error) {
	t.Helper()
	dir := t.TempDir()
	for name, content := range side {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(dir, "igw.yaml")
	if err := os.WriteFile(path, file(docs...), 0o600); err != nil {
		t.Fatal(err)
	}
	return Load(path)
}

func TestParse_SecurityKindsLoadWithDefaults(t *testing.T) {
	cfg, err := writeConfig(t, map[string]string{
		"team-b.keys": "# rotated 2026-11\n" + hashB + " b-ci\n",
		"jwks.json":   `{"keys":[]}`,
	}, serverDoc, poolDoc,
		`apiVersion: igw.dev/v1alpha1
kind: Route
metadata: {name: r}
spec:
  backends: [{pool: llama}]
  guard: public
`, `apiVersion: igw.dev/v1alpha1
kind: RequestGuard
metadata: {name: public}
spec:
  maxBodySize: 1Mi
  maxTokens: {limit: 100}
  denyRules: [{name: inject, pattern: '(?i)ignore previous'}]
`, `apiVersion: igw.dev/v1alpha1
kind: APIKeys
metadata: {name: team-a}
spec:
  objective: interactive
  quotas: [team]
  keys:
  - {id: a-ci, hash: `+hashA+`}
`, `apiVersion: igw.dev/v1alpha1
kind: APIKeys
metadata: {name: team-b}
spec:
  tenant: b
  models: ["qwen-*"]
  keysFile: team-b.keys
`, `apiVersion: igw.dev/v1alpha1
kind: QuotaPolicy
metadata: {name: team}
spec:
  limits: [{window: 1m, totalTokens: 1000}, {window: 24h, requests: 10}]
`, `apiVersion: igw.dev/v1alpha1
kind: AuthPolicy
metadata: {name: auth}
spec:
  jwt: {jwksFile: jwks.json, issuer: https://id.example}
`)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if !cfg.AuthEnabled() {
		t.Error("AuthEnabled = false with APIKeys and an AuthPolicy")
	}
	a := cfg.APIKeys[0].Spec.Keys[0]
	if a.Tenant != "team-a" || strings.Join(a.Models, ",") != "*" || a.Objective != "interactive" || strings.Join(a.Quotas, ",") != "team" {
		t.Errorf("key a grant = %+v, want the document's defaults", a.KeyGrant)
	}
	fk := cfg.APIKeys[1].FileKeys
	if len(fk) != 1 || fk[0].ID != "b-ci" || fk[0].Hash != hashB || fk[0].Tenant != "b" || fk[0].Models[0] != "qwen-*" {
		t.Errorf("file keys = %+v", fk)
	}
	g := cfg.Guard("default", "public")
	if g == nil || g.Spec.MaxTokens.Action != MaxTokensReject || g.Spec.DenyRules[0].Mode != DenyBlock {
		t.Errorf("guard defaults not applied: %+v", g)
	}
	q := cfg.QuotaPolicy("", "team")
	if q.Spec.Scope != QuotaScopeTenant || *q.Spec.DefaultOutputTokens != DefaultQuotaOutputTokens || q.Spec.Stream != QuotaStreamFinish {
		t.Errorf("quota defaults = %+v", q.Spec)
	}
	if s := cfg.QuotaStore.Spec; s.Type != QuotaStoreMemory || s.FailureMode != QuotaFailOpen {
		t.Errorf("default quota store = %+v", s)
	}
	j := cfg.AuthPolicy.Spec.JWT
	if string(j.JWKS) != `{"keys":[]}` || j.Leeway.Duration != 30*time.Second || j.Claims.Tenant != "sub" || len(j.Algorithms) != 2 {
		t.Errorf("jwt defaults = %+v", j)
	}
}

func TestParse_KeysFileYAMLIsStrict(t *testing.T) {
	keysDoc := "apiVersion: igw.dev/v1alpha1\nkind: APIKeys\nmetadata: {name: t}\nspec: {keysFile: k.yaml}\n"
	cfg, err := writeConfig(t, map[string]string{"k.yaml": "keys:\n- {id: one, hash: " + hashA + ", tenant: x}\n"}, keysDoc)
	if err != nil {
		t.Fatal(err)
	}
	if k := cfg.APIKeys[0].FileKeys; len(k) != 1 || k[0].Tenant != "x" {
		t.Errorf("keys = %+v", k)
	}
	_, err = writeConfig(t, map[string]string{"k.yaml": "keys:\n- {id: one, hash: " + hashA + ", tenat: x}\n"}, keysDoc)
	if err == nil || !strings.Contains(err.Error(), `document 1 (APIKeys "t"): spec.keysFile: k.yaml: keys[0].tenat: unknown field`) {
		t.Errorf("err = %v", err)
	}
}

func TestParse_SecurityInvalidValues(t *testing.T) {
	keys := "apiVersion: igw.dev/v1alpha1\nkind: APIKeys\nmetadata: {name: k}\nspec:\n"
	guard := "apiVersion: igw.dev/v1alpha1\nkind: RequestGuard\nmetadata: {name: g}\nspec:\n"
	quota := "apiVersion: igw.dev/v1alpha1\nkind: QuotaPolicy\nmetadata: {name: q}\nspec:\n"
	store := "apiVersion: igw.dev/v1alpha1\nkind: QuotaStore\nspec:\n"
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
		{"quota without limits", quota + "  scope: Key\n", `(QuotaPolicy "q"): spec.limits: required`},
		{"quota empty window", quota + "  limits: [{window: 1m}]\n", `(QuotaPolicy "q"): spec.limits[0]: set at least one of`},
		{"quota window too long", quota + "  limits: [{window: 1000h, requests: 1}]\n", `(QuotaPolicy "q"): spec.limits[0].window: must be 1s..744h0m0s, not 1000h0m0s`},
		{"quota duplicate window", quota + "  limits: [{window: 1m, requests: 1}, {window: 60s, requests: 2}]\n",
			`(QuotaPolicy "q"): spec.limits[1].window: duplicate window 1m0s (also limits[0])`},
		{"quota stream", quota + "  limits: [{window: 1m, requests: 1}]\n  stream: cut\n", `(QuotaPolicy "q"): spec.stream: must be Cut or Finish, not "cut"`},
		{"quota scope", quota + "  limits: [{window: 1m, requests: 1}]\n  scope: Model\n", `(QuotaPolicy "q"): spec.scope: must be Key or Tenant, not "Model"`},
		{"store redis without address", store + "  type: Redis\n", `(QuotaStore): spec.redis: required for type Redis`},
		{"store bad address", store + "  type: Redis\n  redis: {address: localhost}\n", `(QuotaStore): spec.redis.address: must be host:port`},
		{"store failure mode", store + "  failureMode: Closed\n", `(QuotaStore): spec.failureMode: must be FailOpen or FailClose, not "Closed"`},
		{"auth without jwt", auth + "  {}\n", `(AuthPolicy): spec.jwt: required`},
		{"jwt alg none", auth + "  jwt: {jwksFile: x.json, algorithms: [none]}\n", `(AuthPolicy): spec.jwt.algorithms[0]: must be one of RS256`},
		{"jwt grant tenant", auth + "  jwt: {jwksFile: x.json, grant: {tenant: t}}\n", `(AuthPolicy): spec.jwt.grant.tenant: not allowed`},
		{"jwt leeway", auth + "  jwt: {jwksFile: x.json, leeway: 1h}\n", `(AuthPolicy): spec.jwt.leeway: must be 0s..5m0s, not 1h0m0s`},
		{"route unknown guard", "apiVersion: igw.dev/v1alpha1\nkind: Route\nmetadata: {name: r}\nspec: {backends: [{pool: llama}], guard: nope}\n",
			`(Route "r"): spec.guard: RequestGuard "nope" not found in namespace "default"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := writeConfig(t, map[string]string{"x.json": `{"keys":[]}`}, serverDoc, poolDoc, tt.doc)
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), "igw.yaml: document 3 "+tt.want) {
				t.Errorf("error:\n%v\nwant a line containing:\n%s", err, tt.want)
			}
			var ce *Error
			if !errors.As(err, &ce) {
				t.Errorf("not a *config.Error: %T", err)
			}
		})
	}
}

func TestParse_SecuritySingletons(t *testing.T) {
	store := "apiVersion: igw.dev/v1alpha1\nkind: QuotaStore\nspec: {type: Memory}\n"
	_, err := Parse("x.yaml", file(serverDoc, poolDoc, store, store))
	if err == nil || !strings.Contains(err.Error(), "only one QuotaStore is allowed; the first is document 3") {
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
		if got := ModelAllowed(tt.patterns, tt.model); got != tt.want {
			t.Errorf("ModelAllowed(%v, %q) = %v", tt.patterns, tt.model, got)
		}
	}
}

func TestWatcher_ReloadsWhenAKeysFileChanges(t *testing.T) {
	dir := t.TempDir()
	keys := filepath.Join(dir, "team.keys")
	writeAtomically(t, keys, []byte(hashA+" first\n"))
	path := filepath.Join(dir, "igw.yaml")
	writeAtomically(t, path, file(serverDoc, poolDoc, "apiVersion: igw.dev/v1alpha1\nkind: APIKeys\nmetadata: {name: team}\nspec: {keysFile: team.keys}\n"))
	h := startWatcher(t, &Watcher{Path: path, Interval: 10 * time.Millisecond, Signals: make(chan os.Signal)})
	keyIDs := func(c *Config) string {
		var ids []string
		for _, k := range c.APIKeys[0].FileKeys {
			ids = append(ids, k.ID)
		}
		return strings.Join(ids, ",")
	}
	c := h.nextReload(t)
	if got := keyIDs(c); got != "first" || len(c.SideFiles) != 1 || c.SideFiles[0].Path != keys {
		t.Fatalf("initial keys %q, side files %+v", got, c.SideFiles)
	}
	h.quiet(t, 100*time.Millisecond) // an unchanged side file reloads nothing

	// Only the keys file changes: the configuration is reloaded.
	writeAtomically(t, keys, []byte(hashA+" first\n"+hashB+" second\n"))
	if got := keyIDs(h.nextReload(t)); got != "first,second" {
		t.Fatalf("keys after edit = %q", got)
	}
	// A broken keys file is reported once and the keys stay.
	writeAtomically(t, keys, []byte("sha256:nothex\n"))
	if err := h.nextError(t); !strings.Contains(err.Error(), "spec.keysFile") {
		t.Fatalf("error = %v", err)
	}
	h.quiet(t, 100*time.Millisecond)
	// Deleted: one error, not one per poll.
	if err := os.Remove(keys); err != nil {
		t.Fatal(err)
	}
	if err := h.nextError(t); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("error = %v", err)
	}
	h.quiet(t, 100*time.Millisecond)
	writeAtomically(t, keys, []byte(hashB+" only\n"))
	if got := keyIDs(h.nextReload(t)); got != "only" {
		t.Fatalf("keys after restore = %q", got)
	}
}
