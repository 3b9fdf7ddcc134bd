package config

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"fmt"
	"reflect"
	"regexp"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/validate/content"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// Limits of the protection kinds' lists and values.
const (
	maxKeysPerDocument = 100_000
	maxGrantEntries    = 256
	maxDenyRules       = 256
	maxDenyPattern     = 4096
	maxQuotaLimits     = 8
	maxKeyIDLength     = 128
)

// GuardRuleNames returns the names of a RequestGuard's built-in limits, as
// they appear in errors, the X-Gateway-Guard-Rule header and metrics; a
// deny rule may not take one of them. It returns a new slice each call,
// so no caller can change another's.
func GuardRuleNames() []string {
	return []string{"max-body-size", "max-messages", "max-prompt-tokens", "max-tokens", "schema", "max-headers", "max-header-size"}
}

type readFileFunc func(path string) ([]byte, error)

func (v validator) apiKeys(k *APIKeys, readFile readFileFunc) {
	g := &k.Spec.KeyGrant
	if g.Tenant == "" {
		g.Tenant = k.Name
	}
	if len(g.Models) == 0 {
		g.Models = []string{AnyModel}
	}
	v.grant("spec", g, false)
	if n := len(k.Spec.Keys); n > maxKeysPerDocument {
		v.errf("spec.keys", "at most %d keys, not %d", maxKeysPerDocument, n)
	}
	for i := range k.Spec.Keys {
		key := &k.Spec.Keys[i]
		f := fmt.Sprintf("spec.keys[%d]", i)
		v.key(f, key)
		inheritGrant(&key.KeyGrant, g)
		v.grant(f, &key.KeyGrant, true)
	}
	if k.Spec.KeysFile != "" {
		data, err := readFile(k.Spec.KeysFile)
		if err != nil {
			v.errs.add(v.ref, "spec.keysFile", err)
		} else {
			keys, problems := parseKeysFile(data)
			for _, p := range problems {
				v.errf("spec.keysFile", "%s: %s", k.Spec.KeysFile, p)
			}
			for i := range keys {
				key := &keys[i]
				f := fmt.Sprintf("spec.keysFile: %s: keys[%d]", k.Spec.KeysFile, i)
				v.key(f, key)
				inheritGrant(&key.KeyGrant, g)
				v.grant(f, &key.KeyGrant, true)
			}
			k.FileKeys = keys
		}
	}
	if len(k.Spec.Keys) == 0 && k.Spec.KeysFile == "" {
		v.errf("spec.keys", "required: at least one key, or spec.keysFile")
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

func (v validator) key(f string, k *APIKey) {
	switch {
	case k.ID == "":
		v.errf(f+".id", "required: a name for the key in logs and metrics")
	case len(k.ID) > maxKeyIDLength:
		v.errf(f+".id", "at most %d bytes, not %d", maxKeyIDLength, len(k.ID))
	case !printableASCII(k.ID):
		v.errf(f+".id", "must be printable ASCII without spaces, not %q", k.ID)
	}
	if err := checkKeyHash(k.Hash); err != nil {
		v.errf(f+".hash", "%s", err)
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

// grant validates a key grant; complete says Tenant and Models must be set.
func (v validator) grant(f string, g *KeyGrant, complete bool) {
	if g.Tenant != "" && (!printableASCII(g.Tenant) || len(g.Tenant) > maxKeyIDLength) {
		v.errf(f+".tenant", "must be printable ASCII without spaces, at most %d bytes, not %q", maxKeyIDLength, g.Tenant)
	}
	if complete && g.Tenant == "" {
		v.errf(f+".tenant", "required")
	}
	v.modelPatterns(f+".models", g.Models)
	if g.Objective != "" {
		v.objectiveName(f+".objective", g.Objective)
	}
	v.nameList(f+".allowedObjectives", g.AllowedObjectives, v.objectiveName)
	v.nameList(f+".quotas", g.Quotas, func(field, name string) {
		for _, msg := range content.IsDNS1123Subdomain(name) {
			v.errf(field, "%s", msg)
		}
	})
}

func (v validator) objectiveName(field, name string) {
	for _, msg := range content.IsDNS1123Subdomain(name) {
		v.errf(field, "%s", msg)
	}
}

func (v validator) nameList(field string, names []string, check func(field, name string)) {
	if len(names) > maxGrantEntries {
		v.errf(field, "at most %d entries, not %d", maxGrantEntries, len(names))
	}
	seen := map[string]int{}
	for i, n := range names {
		ef := fmt.Sprintf("%s[%d]", field, i)
		check(ef, n)
		if j, dup := seen[n]; dup {
			v.errf(ef, "duplicate %q (also [%d])", n, j)
		}
		seen[n] = i
	}
}

// modelPatterns validates model names and prefixes ("llama-*", "*").
func (v validator) modelPatterns(field string, patterns []string) {
	v.nameList(field, patterns, func(f, p string) {
		name, prefix := strings.CutSuffix(p, "*")
		if strings.Contains(name, "*") {
			v.errf(f, "only a trailing * is allowed, not %q", p)
			return
		}
		if !prefix {
			v.modelName(f, name)
		} else if len(name) > maxModelNameLength {
			v.errf(f, "at most %d bytes, not %d", maxModelNameLength, len(name))
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
	js, err := yaml.YAMLToJSONStrict(data)
	if err != nil {
		return nil, []string{fmt.Sprintf("invalid YAML: %v", err)}
	}
	gv, err := decodeGeneric(js)
	if err != nil {
		return nil, []string{fmt.Sprintf("invalid YAML: %v", err)}
	}
	if gv == nil {
		return nil, []string{"empty: want `keys:` and a list, or one \"sha256:<hex> [id]\" per line"}
	}
	var shapeErrs []shapeError
	checkShape("", gv, reflect.TypeFor[keysFileDoc](), &shapeErrs)
	if len(shapeErrs) > 0 {
		out := make([]string, 0, len(shapeErrs))
		for _, se := range shapeErrs {
			out = append(out, se.field+": "+se.err.Error())
		}
		return nil, out
	}
	var doc keysFileDoc
	if err := decodeStrict(gv, &doc); err != nil {
		return nil, []string{err.Error()}
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

func (v validator) authPolicy(a *AuthPolicy, readFile readFileFunc) {
	j := a.Spec.JWT
	if j == nil {
		v.errf("spec.jwt", "required: an AuthPolicy configures JWT validation (API keys need only APIKeys documents)")
		return
	}
	const f = "spec.jwt"
	if j.JWKSFile == "" {
		v.errf(f+".jwksFile", "required: the JSON Web Key Set with the issuer's public keys")
	} else if data, err := readFile(j.JWKSFile); err != nil {
		v.errs.add(v.ref, f+".jwksFile", err)
	} else {
		j.JWKS = data
	}
	if len(j.Algorithms) == 0 {
		j.Algorithms = []string{JWTAlgRS256, JWTAlgES256}
	}
	v.nameList(f+".algorithms", j.Algorithms, func(field, alg string) {
		switch alg {
		case JWTAlgRS256, JWTAlgRS384, JWTAlgRS512, JWTAlgPS256, JWTAlgES256, JWTAlgES384:
		default:
			v.errf(field, "must be one of RS256, RS384, RS512, PS256, ES256, ES384, not %q", alg)
		}
	})
	v.nameList(f+".audiences", j.Audiences, func(field, aud string) {
		if aud == "" {
			v.errf(field, "must not be empty")
		}
	})
	if j.Leeway == nil {
		j.Leeway = &metav1.Duration{Duration: DefaultJWTLeeway}
	}
	if d := j.Leeway.Duration; d < 0 || d > MaxJWTLeeway {
		v.errf(f+".leeway", "must be 0s..%s, not %s", MaxJWTLeeway, d)
	}
	if j.Claims.Tenant == "" {
		j.Claims.Tenant = DefaultJWTTenantClaim
	}
	if j.Grant.Tenant != "" {
		v.errf(f+".grant.tenant", "not allowed: the tenant comes from the token's %q claim", j.Claims.Tenant)
	}
	if len(j.Grant.Models) == 0 {
		j.Grant.Models = []string{AnyModel}
	}
	v.grant(f+".grant", &j.Grant, false)
}

func (v validator) requestGuard(g *RequestGuard) {
	s := &g.Spec
	if q := s.MaxBodySize; q != nil && q.Sign() <= 0 {
		v.errf("spec.maxBodySize", "must be positive, not %s", q)
	}
	if q := s.MaxHeaderSize; q != nil && q.Sign() <= 0 {
		v.errf("spec.maxHeaderSize", "must be positive, not %s", q)
	}
	v.positiveInt("spec.maxMessages", s.MaxMessages)
	v.positiveInt("spec.maxPromptTokens", s.MaxPromptTokens)
	v.positiveInt("spec.maxHeaders", s.MaxHeaders)
	if m := s.MaxTokens; m != nil {
		if m.Limit <= 0 {
			v.errf("spec.maxTokens.limit", "must be positive, not %d", m.Limit)
		}
		switch m.Action {
		case "":
			m.Action = MaxTokensReject
		case MaxTokensReject, MaxTokensClamp:
		default:
			v.errf("spec.maxTokens.action", "must be %s or %s, not %q", MaxTokensReject, MaxTokensClamp, m.Action)
		}
	}
	if n := len(s.DenyRules); n > maxDenyRules {
		v.errf("spec.denyRules", "at most %d rules, not %d", maxDenyRules, n)
	}
	seen := map[string]int{}
	for i := range s.DenyRules {
		r := &s.DenyRules[i]
		f := fmt.Sprintf("spec.denyRules[%d]", i)
		switch {
		case r.Name == "":
			v.errf(f+".name", "required")
		case contains(GuardRuleNames(), r.Name):
			v.errf(f+".name", "%q is the name of a built-in limit; choose another", r.Name)
		default:
			for _, msg := range content.IsDNS1123Label(r.Name) {
				v.errf(f+".name", "%s", msg)
			}
		}
		if j, dup := seen[r.Name]; dup {
			v.errf(f+".name", "duplicate rule %q (also denyRules[%d])", r.Name, j)
		}
		seen[r.Name] = i
		switch {
		case r.Pattern == "":
			v.errf(f+".pattern", "required")
		case len(r.Pattern) > maxDenyPattern:
			v.errf(f+".pattern", "at most %d bytes, not %d", maxDenyPattern, len(r.Pattern))
		default:
			if _, err := regexp.Compile(r.Pattern); err != nil {
				v.errf(f+".pattern", "invalid regular expression: %v", err)
			}
		}
		switch r.Mode {
		case "":
			r.Mode = DenyBlock
		case DenyBlock, DenyLog:
		default:
			v.errf(f+".mode", "must be %s or %s, not %q", DenyBlock, DenyLog, r.Mode)
		}
	}
}

func (v validator) positiveInt(field string, n *int32) {
	if n != nil && *n <= 0 {
		v.errf(field, "must be positive, not %d", *n)
	}
}

func (v validator) quotaPolicy(q *QuotaPolicy) {
	s := &q.Spec
	switch s.Scope {
	case "":
		s.Scope = QuotaScopeTenant
	case QuotaScopeKey, QuotaScopeTenant:
	default:
		v.errf("spec.scope", "must be %s or %s, not %q", QuotaScopeKey, QuotaScopeTenant, s.Scope)
	}
	v.modelPatterns("spec.models", s.Models)
	switch n := len(s.Limits); {
	case n == 0:
		v.errf("spec.limits", "required: at least one window with a limit")
	case n > maxQuotaLimits:
		v.errf("spec.limits", "at most %d windows, not %d", maxQuotaLimits, n)
	}
	seen := map[time.Duration]int{}
	for i, l := range s.Limits {
		f := fmt.Sprintf("spec.limits[%d]", i)
		switch w := l.Window.Duration; {
		case w < time.Second || w > MaxQuotaWindow:
			v.errf(f+".window", "must be 1s..%s, not %s", MaxQuotaWindow, w)
		case w%time.Second != 0:
			v.errf(f+".window", "must be a whole number of seconds, not %s", w)
		}
		if j, dup := seen[l.Window.Duration]; dup {
			v.errf(f+".window", "duplicate window %s (also limits[%d]); put its limits in one entry", l.Window.Duration, j)
		}
		seen[l.Window.Duration] = i
		set := 0
		for name, n := range map[string]*int64{"requests": l.Requests, "inputTokens": l.InputTokens, "outputTokens": l.OutputTokens, "totalTokens": l.TotalTokens} {
			if n == nil {
				continue
			}
			set++
			if *n <= 0 {
				v.errf(f+"."+name, "must be positive, not %d (leave it out for no limit)", *n)
			}
		}
		if set == 0 {
			v.errf(f, "set at least one of requests, inputTokens, outputTokens, totalTokens")
		}
	}
	if s.DefaultOutputTokens == nil {
		n := int32(DefaultQuotaOutputTokens)
		s.DefaultOutputTokens = &n
	}
	if *s.DefaultOutputTokens < 0 {
		v.errf("spec.defaultOutputTokens", "must not be negative, not %d", *s.DefaultOutputTokens)
	}
	switch s.Stream {
	case "":
		s.Stream = QuotaStreamFinish
	case QuotaStreamCut, QuotaStreamFinish:
	default:
		v.errf("spec.stream", "must be %s or %s, not %q", QuotaStreamCut, QuotaStreamFinish, s.Stream)
	}
}

// defaultQuotaStore fills in every unset QuotaStore field.
func defaultQuotaStore(s *QuotaStoreSpec) {
	if s.Type == "" {
		s.Type = QuotaStoreMemory
	}
	if s.FailureMode == "" {
		s.FailureMode = QuotaFailOpen
	}
	if r := s.Redis; r != nil {
		if r.Timeout == nil {
			r.Timeout = &metav1.Duration{Duration: DefaultQuotaRedisTimeout}
		}
		if r.KeyPrefix == "" {
			r.KeyPrefix = DefaultQuotaRedisKeyPrefix
		}
	}
}

func (v validator) quotaStore(q *QuotaStore) {
	s := &q.Spec
	defaultQuotaStore(s)
	switch s.Type {
	case QuotaStoreMemory:
		if s.Redis != nil {
			v.errf("spec.redis", "only for type %s", QuotaStoreRedis)
		}
	case QuotaStoreRedis:
		if s.Redis == nil {
			v.errf("spec.redis", "required for type %s", QuotaStoreRedis)
			break
		}
		v.listenAddress("spec.redis.address", s.Redis.Address)
		v.positiveDuration("spec.redis.timeout", s.Redis.Timeout.Duration)
		if s.Redis.DB < 0 {
			v.errf("spec.redis.db", "must not be negative, not %d", s.Redis.DB)
		}
	default:
		v.errf("spec.type", "must be %s or %s, not %q", QuotaStoreMemory, QuotaStoreRedis, s.Type)
	}
	switch s.FailureMode {
	case QuotaFailOpen, QuotaFailClose:
	default:
		v.errf("spec.failureMode", "must be %s or %s, not %q", QuotaFailOpen, QuotaFailClose, s.FailureMode)
	}
}

// crossValidateSecurity checks the protection kinds' references: routes'
// guards, keys' quotas, and keys that would be ambiguous (one hash twice,
// one id twice).
func (p *parser) crossValidateSecurity(cfg *Config, refs map[any]docRef) {
	for _, r := range cfg.Routes {
		if r.Spec.Guard != "" && cfg.Guard(r.Namespace, r.Spec.Guard) == nil {
			p.errs.addf(refs[r], "spec.guard", "RequestGuard %q not found in namespace %q", r.Spec.Guard, r.Namespace)
		}
	}
	checkQuotas := func(ref docRef, field, ns string, quotas []string) {
		for i, q := range quotas {
			if cfg.QuotaPolicy(ns, q) == nil {
				p.errs.addf(ref, fmt.Sprintf("%s[%d]", field, i), "QuotaPolicy %q not found in namespace %q", q, ns)
			}
		}
	}
	byHash := map[string]string{}
	byID := map[string]string{}
	for _, k := range cfg.APIKeys {
		ref := refs[k]
		checkQuotas(ref, "spec.quotas", k.Namespace, k.Spec.Quotas)
		check := func(field string, key *APIKey) {
			if len(key.Quotas) > 0 && !sameStrings(key.Quotas, k.Spec.Quotas) {
				checkQuotas(ref, field+".quotas", k.Namespace, key.Quotas)
			}
			where := fmt.Sprintf("APIKeys %q %s", k.Name, field)
			if prev, dup := byHash[key.Hash]; dup {
				p.errs.addf(ref, field+".hash", "the same key as %s", prev)
			} else {
				byHash[key.Hash] = where
			}
			if prev, dup := byID[key.ID]; dup {
				p.errs.addf(ref, field+".id", "duplicate key id %q (also %s)", key.ID, prev)
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
	if a := cfg.AuthPolicy; a != nil && a.Spec.JWT != nil {
		checkQuotas(refs[a], "spec.jwt.grant.quotas", a.Namespace, a.Spec.JWT.Grant.Quotas)
	}
}

func sameStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
