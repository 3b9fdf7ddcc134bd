package auth

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/igw-dev/igw/pkg/config"
)

// Kinds of the documents that configure authentication (igw.dev/v1alpha1).
// See docs/security.md.
const (
	KindAPIKeys    = "APIKeys"
	KindAuthPolicy = "AuthPolicy"
)

// QuotaPolicyKind is the kind of the QuotaPolicies a key's grant names.
// Package quota declares it and builds on this package, so this one refers
// to quota policies by kind and name only (config.Config.Get) and hands
// them on as configuration objects (Identity.Quotas).
const QuotaPolicyKind = "QuotaPolicy"

// The kinds are functions, not package variables, so that no caller can
// change another's.

// APIKeysKind declares the APIKeys kind: API keys, stored as SHA-256
// hashes, inline or in a keys file. Any APIKeys document turns
// authentication on.
func APIKeysKind() config.Kind {
	return config.Kind{
		Kind: KindAPIKeys, APIVersions: []string{config.IGWAPIVersion}, Named: true,
		New:      func() config.Object { return new(APIKeys) },
		Validate: func(o config.Object, f *config.Fields) { validateAPIKeys(o.(*APIKeys), f) },
		Check:    checkAPIKeys,
	}
}

// AuthPolicyKind declares the AuthPolicy kind: JWT validation against a
// JWKS file. At most one per file; it turns authentication on.
func AuthPolicyKind() config.Kind {
	return config.Kind{
		Kind: KindAuthPolicy, APIVersions: []string{config.IGWAPIVersion}, Singleton: true,
		New:      func() config.Object { return new(AuthPolicy) },
		Validate: func(o config.Object, f *config.Fields) { validateAuthPolicy(o.(*AuthPolicy), f) },
		Check: func(cfg *config.Config, r *config.Report) {
			if a := Policy(cfg); a != nil && a.Spec.JWT != nil {
				checkQuotas(cfg, r.In(a), "spec.jwt.grant.quotas", a.Namespace, a.Spec.JWT.Grant.Quotas)
			}
		},
	}
}

// Keys are the APIKeys documents of cfg, in document order.
func Keys(cfg *config.Config) []*APIKeys { return config.All[*APIKeys](cfg) }

// Policy is the AuthPolicy of cfg, or nil.
func Policy(cfg *config.Config) *AuthPolicy {
	p, _ := config.First[*AuthPolicy](cfg)
	return p
}

// Enabled reports whether every inference request must carry a
// credential: cfg has an APIKeys document or an AuthPolicy.
func Enabled(cfg *config.Config) bool {
	return len(Keys(cfg)) > 0 || Policy(cfg) != nil
}

// APIKeyHashPrefix starts every stored key hash: keys are never written to
// a configuration in clear, only as "sha256:" and the lower-case hex
// SHA-256 of the key (`printf %s "$KEY" | sha256sum`).
const APIKeyHashPrefix = "sha256:"

// AnyModel, as the only entry of a models list, allows every model; an
// entry ending in "*" allows the models starting with what precedes it.
const AnyModel = "*"

// APIKeys (kind APIKeys, igw.dev/v1alpha1) is a set of API keys, usually
// one tenant's. Fields set on the spec are every key's defaults; a key
// overrides any of them. Keys are stored hashed, so the file can be read
// by more people than the keys themselves. Any APIKeys document (or an
// AuthPolicy) turns authentication on for every inference request.
//
//	apiVersion: igw.dev/v1alpha1
//	kind: APIKeys
//	metadata:
//	  name: team-a
//	spec:
//	  tenant: team-a                 # default: metadata.name
//	  models: [llama-3.1-8b, "qwen-*"]  # exact names or prefixes; default ["*"]
//	  objective: interactive         # InferenceObjective used when the client names none
//	  allowedObjectives: [batch]     # others the client may name (x-gateway-inference-objective)
//	  quotas: [team-a]               # QuotaPolicies, same namespace
//	  keys:
//	  - id: ci                       # shown in logs and metrics, never the key
//	    hash: sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae
//	  keysFile: team-a.keys          # more keys; relative to this file
type APIKeys struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec is the keys and their defaults.
	Spec APIKeysSpec `json:"spec,omitempty"`

	// FileKeys are the keys read from Spec.KeysFile at load, with the
	// spec's defaults applied like Spec.Keys. They are not part of the
	// document's schema: a reload re-reads the file.
	FileKeys []APIKey `json:"-"`
}

// APIKeysSpec is the keys of an APIKeys document; its other fields are
// every key's defaults.
type APIKeysSpec struct {
	KeyGrant `json:",inline"`

	// Keys are the keys, each with its hash.
	Keys []APIKey `json:"keys,omitempty"`

	// KeysFile names a file with more keys, relative to the configuration
	// file, read at every load; the Watcher reloads the configuration when
	// it changes, so keys rotate without editing the configuration. Either YAML, `keys:` followed by a list
	// as in spec.keys, or one key per line: "sha256:<hex> [id]", with #
	// comments; a line key's id defaults to the hash's first 12 hex digits.
	KeysFile string `json:"keysFile,omitempty"`
}

// KeyGrant is what a credential entitles its holder to. After Parse every
// key's grant is complete: Tenant and Models are set.
type KeyGrant struct {
	// Tenant owns the requests: it becomes the flow-control fairness id
	// (x-gateway-inference-fairness-id), replacing any value the client
	// sent, and the unit of tenant quotas. Default: the document's
	// metadata.name.
	Tenant string `json:"tenant,omitempty"`

	// Models the key may request (the body's model, before any rewrite):
	// exact names, prefixes ending in "*", or "*" for all. Default ["*"].
	// Another model is refused with 403.
	Models []string `json:"models,omitempty"`

	// Objective is the InferenceObjective applied when the client sends
	// no x-gateway-inference-objective header.
	Objective string `json:"objective,omitempty"`

	// AllowedObjectives are the other objectives the client may select
	// with the header. Any other name is refused with 403, so a key can
	// never raise its priority above what it was given.
	AllowedObjectives []string `json:"allowedObjectives,omitempty"`

	// Quotas name the QuotaPolicies (same namespace) charged for this
	// key's requests.
	Quotas []string `json:"quotas,omitempty"`
}

// APIKey is one key.
type APIKey struct {
	// ID names the key in logs, metrics and quota counters; unique in the
	// file. Required in spec.keys.
	ID string `json:"id"`

	// Hash is "sha256:" followed by the 64 lower-case hex digits of the
	// key's SHA-256.
	Hash string `json:"hash"`

	KeyGrant `json:",inline"`
}

// AuthPolicy (kind AuthPolicy, igw.dev/v1alpha1) configures authentication
// beyond API keys: JSON Web Tokens signed by an identity provider whose
// public keys are in a JWKS file. At most one per file; it turns
// authentication on even without APIKeys.
//
//	apiVersion: igw.dev/v1alpha1
//	kind: AuthPolicy
//	metadata:
//	  name: auth
//	spec:
//	  jwt:
//	    jwksFile: jwks.json          # relative to this file; reloaded when it changes
//	    issuer: https://id.example.com
//	    audiences: [igw]
//	    algorithms: [RS256, ES256]   # default: both
//	    leeway: 30s                  # clock skew allowed on exp and nbf
//	    claims:
//	      tenant: tenant             # default "sub"
//	      models: models             # a list of names or prefixes; default: grant.models
//	      objective: objective
//	    grant:                       # defaults for claims a token lacks
//	      models: ["*"]
//	      quotas: [jwt-default]
type AuthPolicy struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec is the authentication settings.
	Spec AuthPolicySpec `json:"spec,omitempty"`
}

// AuthPolicySpec is the authentication settings of an AuthPolicy.
type AuthPolicySpec struct {
	// JWT, when set, accepts bearer tokens that are JWTs signed by a key
	// of the JWKS file. API keys keep working alongside.
	JWT *JWTAuth `json:"jwt,omitempty"`
}

// JWTAuth validates JSON Web Tokens.
type JWTAuth struct {
	// JWKSFile is the JSON Web Key Set (RFC 7517) with the issuer's public
	// keys, relative to the configuration file, re-read like a keys file.
	// Required.
	JWKSFile string `json:"jwksFile"`

	// JWKS is the content of JWKSFile, read at load. Not part of the
	// schema.
	JWKS []byte `json:"-"`

	// Issuer, when set, must equal the token's iss claim.
	Issuer string `json:"issuer,omitempty"`

	// Audiences, when set, must include one of the token's aud values.
	Audiences []string `json:"audiences,omitempty"`

	// Algorithms accepted in the token's header: RS256, RS384, RS512,
	// PS256, ES256, ES384. Default [RS256, ES256]. "none" and HMAC
	// algorithms are never accepted: the gateway holds only public keys.
	Algorithms []string `json:"algorithms,omitempty"`

	// Leeway is the clock skew tolerated on exp and nbf (default 30s, at
	// most 5m).
	Leeway *metav1.Duration `json:"leeway,omitempty"`

	// Claims names the claims the grant is read from.
	Claims JWTClaims `json:"claims,omitempty"`

	// Grant is what a token gets for each claim it does not carry (and
	// its quotas, always). Grant.Tenant is not allowed: the tenant comes
	// from the token.
	Grant KeyGrant `json:"grant,omitempty"`
}

// JWTClaims names the token claims that carry a grant. After Parse Tenant
// is set.
type JWTClaims struct {
	// Tenant is a string claim naming the tenant (default "sub").
	Tenant string `json:"tenant,omitempty"`
	// Models is a claim with a list of model names or prefixes, or a
	// space-separated string of them; optional.
	Models string `json:"models,omitempty"`
	// Objective is a string claim naming the default InferenceObjective;
	// optional.
	Objective string `json:"objective,omitempty"`
}

// JWT algorithms igw verifies.
const (
	JWTAlgRS256 = "RS256"
	JWTAlgRS384 = "RS384"
	JWTAlgRS512 = "RS512"
	JWTAlgPS256 = "PS256"
	JWTAlgES256 = "ES256"
	JWTAlgES384 = "ES384"
)

// Defaults and bounds of authentication.
const (
	DefaultJWTLeeway      = 30 * time.Second
	MaxJWTLeeway          = 5 * time.Minute
	DefaultJWTTenantClaim = "sub"
)

// Limits of the lists and values of the authentication kinds.
const (
	maxKeysPerDocument = 100_000
	maxGrantEntries    = 256
	maxKeyIDLength     = 128
)

func validateAPIKeys(k *APIKeys, f *config.Fields) {
	g := &k.Spec.KeyGrant
	if g.Tenant == "" {
		g.Tenant = k.Name
	}
	if len(g.Models) == 0 {
		g.Models = []string{AnyModel}
	}
	validateGrant(f, "spec", g, false)
	if n := len(k.Spec.Keys); n > maxKeysPerDocument {
		f.Errorf("spec.keys", "at most %d keys, not %d", maxKeysPerDocument, n)
	}
	for i := range k.Spec.Keys {
		key := &k.Spec.Keys[i]
		kf := fmt.Sprintf("spec.keys[%d]", i)
		validateKey(f, kf, key)
		inheritGrant(&key.KeyGrant, g)
		validateGrant(f, kf, &key.KeyGrant, true)
	}
	if k.Spec.KeysFile != "" {
		data, err := f.ReadFile(k.Spec.KeysFile)
		if err != nil {
			f.Error("spec.keysFile", err)
		} else {
			keys, problems := parseKeysFile(data)
			for _, p := range problems {
				f.Errorf("spec.keysFile", "%s: %s", k.Spec.KeysFile, p)
			}
			for i := range keys {
				key := &keys[i]
				kf := fmt.Sprintf("spec.keysFile: %s: keys[%d]", k.Spec.KeysFile, i)
				validateKey(f, kf, key)
				inheritGrant(&key.KeyGrant, g)
				validateGrant(f, kf, &key.KeyGrant, true)
			}
			k.FileKeys = keys
		}
	}
	if len(k.Spec.Keys) == 0 && k.Spec.KeysFile == "" {
		f.Errorf("spec.keys", "required: at least one key, or spec.keysFile")
	}
}

// inheritGrant fills the unset fields of g from the document's defaults.
func inheritGrant(g, defaults *KeyGrant) {
	if g.Tenant == "" {
		g.Tenant = defaults.Tenant
	}
	if len(g.Models) == 0 {
		g.Models = defaults.Models
	}
	if g.Objective == "" {
		g.Objective = defaults.Objective
	}
	if len(g.AllowedObjectives) == 0 {
		g.AllowedObjectives = defaults.AllowedObjectives
	}
	if len(g.Quotas) == 0 {
		g.Quotas = defaults.Quotas
	}
}

func validateKey(f *config.Fields, kf string, k *APIKey) {
	switch {
	case k.ID == "":
		f.Errorf(kf+".id", "required: a name for the key in logs and metrics")
	case len(k.ID) > maxKeyIDLength:
		f.Errorf(kf+".id", "at most %d bytes, not %d", maxKeyIDLength, len(k.ID))
	case !printableASCII(k.ID):
		f.Errorf(kf+".id", "must be printable ASCII without spaces, not %q", k.ID)
	}
	if err := checkKeyHash(k.Hash); err != nil {
		f.Errorf(kf+".hash", "%s", err)
	}
}

// checkKeyHash accepts "sha256:" and 64 lower-case hex digits.
func checkKeyHash(h string) error {
	hexPart, ok := strings.CutPrefix(h, APIKeyHashPrefix)
	if !ok {
		return fmt.Errorf("must start with %q (the key's SHA-256, never the key itself)", APIKeyHashPrefix)
	}
	if len(hexPart) != 64 || strings.ToLower(hexPart) != hexPart {
		return fmt.Errorf("must be %q followed by 64 lower-case hex digits", APIKeyHashPrefix)
	}
	if _, err := hex.DecodeString(hexPart); err != nil {
		return fmt.Errorf("must be %q followed by 64 lower-case hex digits", APIKeyHashPrefix)
	}
	return nil
}

// validateGrant validates a key grant; complete says Tenant and Models
// must be set.
func validateGrant(f *config.Fields, gf string, g *KeyGrant, complete bool) {
	if g.Tenant != "" && (!printableASCII(g.Tenant) || len(g.Tenant) > maxKeyIDLength) {
		f.Errorf(gf+".tenant", "must be printable ASCII without spaces, at most %d bytes, not %q", maxKeyIDLength, g.Tenant)
	}
	if complete && g.Tenant == "" {
		f.Errorf(gf+".tenant", "required")
	}
	ValidateModelPatterns(f, gf+".models", g.Models)
	if g.Objective != "" {
		f.DNSSubdomain(gf+".objective", g.Objective)
	}
	validateNames(f, gf+".allowedObjectives", g.AllowedObjectives, f.DNSSubdomain)
	validateNames(f, gf+".quotas", g.Quotas, f.DNSSubdomain)
}

// validateNames checks a list of names with check, bounds its length and
// reports duplicates.
func validateNames(f *config.Fields, field string, names []string, check func(field, name string)) {
	if len(names) > maxGrantEntries {
		f.Errorf(field, "at most %d entries, not %d", maxGrantEntries, len(names))
	}
	seen := map[string]int{}
	for i, n := range names {
		ef := fmt.Sprintf("%s[%d]", field, i)
		check(ef, n)
		if j, dup := seen[n]; dup {
			f.Errorf(ef, "duplicate %q (also [%d])", n, j)
		}
		seen[n] = i
	}
}

// ValidateModelPatterns validates a models list as ModelAllowed reads it:
// model names and prefixes ending in "*" ("llama-*", "*"). Quota policies
// use it too, so that keys, tokens and quotas accept the same lists.
func ValidateModelPatterns(f *config.Fields, field string, patterns []string) {
	validateNames(f, field, patterns, func(pf, p string) {
		name, prefix := strings.CutSuffix(p, "*")
		if strings.Contains(name, "*") {
			f.Errorf(pf, "only a trailing * is allowed, not %q", p)
			return
		}
		if !prefix {
			f.ModelName(pf, name)
		} else if len(name) > config.MaxModelNameLength {
			f.Errorf(pf, "at most %d bytes, not %d", config.MaxModelNameLength, len(name))
		}
	})
}

// ModelAllowed reports whether model matches one of patterns (exact names,
// prefixes ending in "*", "*"). It is defined here, next to the schema,
// so that keys, tokens and quotas read a models list identically.
func ModelAllowed(patterns []string, model string) bool {
	for _, p := range patterns {
		if prefix, ok := strings.CutSuffix(p, "*"); ok {
			if strings.HasPrefix(model, prefix) {
				return true
			}
		} else if p == model {
			return true
		}
	}
	return false
}

// keysFileDoc is the YAML form of a keys file.
type keysFileDoc struct {
	Keys []APIKey `json:"keys"`
}

// parseKeysFile reads a keys file: YAML (`keys:` and a list) or one
// "sha256:<hex> [id]" per line. It returns the keys and the problems
// found, each naming its line or field.
func parseKeysFile(data []byte) ([]APIKey, []string) {
	if looksLikeKeyLines(data) {
		return parseKeyLines(data)
	}
	var doc keysFileDoc
	found, problems := config.DecodeYAML(data, &doc)
	if len(problems) > 0 {
		return nil, problems
	}
	if !found {
		return nil, []string{"empty: want `keys:` and a list, or one \"sha256:<hex> [id]\" per line"}
	}
	return doc.Keys, nil
}

func looksLikeKeyLines(data []byte) bool {
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		return strings.HasPrefix(line, APIKeyHashPrefix)
	}
	return false
}

func parseKeyLines(data []byte) ([]APIKey, []string) {
	var keys []APIKey
	var problems []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line, _, _ := strings.Cut(sc.Text(), "#")
		fields := strings.Fields(line)
		switch len(fields) {
		case 0:
			continue
		case 1, 2:
		default:
			problems = append(problems, fmt.Sprintf("line %d: want \"sha256:<hex> [id]\", not %d fields", n, len(fields)))
			continue
		}
		k := APIKey{Hash: fields[0]}
		if len(fields) == 2 {
			k.ID = fields[1]
		} else if len(k.Hash) >= len(APIKeyHashPrefix)+12 {
			k.ID = k.Hash[len(APIKeyHashPrefix) : len(APIKeyHashPrefix)+12]
		}
		if err := checkKeyHash(k.Hash); err != nil {
			problems = append(problems, fmt.Sprintf("line %d: %v", n, err))
			continue
		}
		keys = append(keys, k)
	}
	if err := sc.Err(); err != nil {
		problems = append(problems, err.Error())
	}
	return keys, problems
}

func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] > '~' {
			return false
		}
	}
	return s != ""
}

func validateAuthPolicy(a *AuthPolicy, f *config.Fields) {
	j := a.Spec.JWT
	if j == nil {
		f.Errorf("spec.jwt", "required: an AuthPolicy configures JWT validation (API keys need only APIKeys documents)")
		return
	}
	const jf = "spec.jwt"
	if j.JWKSFile == "" {
		f.Errorf(jf+".jwksFile", "required: the JSON Web Key Set with the issuer's public keys")
	} else if data, err := f.ReadFile(j.JWKSFile); err != nil {
		f.Error(jf+".jwksFile", err)
	} else {
		j.JWKS = data
	}
	if len(j.Algorithms) == 0 {
		j.Algorithms = []string{JWTAlgRS256, JWTAlgES256}
	}
	validateNames(f, jf+".algorithms", j.Algorithms, func(field, alg string) {
		switch alg {
		case JWTAlgRS256, JWTAlgRS384, JWTAlgRS512, JWTAlgPS256, JWTAlgES256, JWTAlgES384:
		default:
			f.Errorf(field, "must be one of RS256, RS384, RS512, PS256, ES256, ES384, not %q", alg)
		}
	})
	validateNames(f, jf+".audiences", j.Audiences, func(field, aud string) {
		if aud == "" {
			f.Errorf(field, "must not be empty")
		}
	})
	if j.Leeway == nil {
		j.Leeway = &metav1.Duration{Duration: DefaultJWTLeeway}
	}
	if d := j.Leeway.Duration; d < 0 || d > MaxJWTLeeway {
		f.Errorf(jf+".leeway", "must be 0s..%s, not %s", MaxJWTLeeway, d)
	}
	if j.Claims.Tenant == "" {
		j.Claims.Tenant = DefaultJWTTenantClaim
	}
	if j.Grant.Tenant != "" {
		f.Errorf(jf+".grant.tenant", "not allowed: the tenant comes from the token's %q claim", j.Claims.Tenant)
	}
	if len(j.Grant.Models) == 0 {
		j.Grant.Models = []string{AnyModel}
	}
	validateGrant(f, jf+".grant", &j.Grant, false)
}

// checkQuotas reports the quota names that name no QuotaPolicy of
// namespace.
func checkQuotas(cfg *config.Config, f *config.Fields, field, namespace string, quotas []string) {
	for i, q := range quotas {
		if cfg.Get(QuotaPolicyKind, namespace, q) == nil {
			f.Errorf(fmt.Sprintf("%s[%d]", field, i), "QuotaPolicy %q not found in namespace %q", q, namespace)
		}
	}
}

// checkAPIKeys checks the keys' quota references and the keys that would
// be ambiguous: one hash twice, one id twice, across every APIKeys
// document.
func checkAPIKeys(cfg *config.Config, r *config.Report) {
	byHash := map[string]string{}
	byID := map[string]string{}
	for _, k := range Keys(cfg) {
		f := r.In(k)
		checkQuotas(cfg, f, "spec.quotas", k.Namespace, k.Spec.Quotas)
		check := func(field string, key *APIKey) {
			if len(key.Quotas) > 0 && !slices.Equal(key.Quotas, k.Spec.Quotas) {
				checkQuotas(cfg, f, field+".quotas", k.Namespace, key.Quotas)
			}
			where := fmt.Sprintf("APIKeys %q %s", k.Name, field)
			if prev, dup := byHash[key.Hash]; dup {
				f.Errorf(field+".hash", "the same key as %s", prev)
			} else {
				byHash[key.Hash] = where
			}
			if prev, dup := byID[key.ID]; dup {
				f.Errorf(field+".id", "duplicate key id %q (also %s)", key.ID, prev)
			} else {
				byID[key.ID] = where
			}
		}
		for i := range k.Spec.Keys {
			check(fmt.Sprintf("spec.keys[%d]", i), &k.Spec.Keys[i])
		}
		for i := range k.FileKeys {
			check(fmt.Sprintf("spec.keysFile: %s: keys[%d]", k.Spec.KeysFile, i), &k.FileKeys[i])
		}
	}
}
