package auth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const testModelServer = `apiVersion: igw.dev/v1alpha1
kind: ModelServer
metadata: {name: s, labels: {app: llama}}
spec: {address: 127.0.0.1}
---
apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata: {name: llama}
spec:
  selector: {matchLabels: {app: llama}}
  targetPorts: [{number: 8000}]
---
apiVersion: igw.dev/v1alpha1
kind: QuotaPolicy
metadata: {name: gold}
spec:
  limits: [{window: 1m, requests: 10}]
`

// load writes a configuration (and side files) to a temporary directory
// and builds its Authenticator.
func load(t testing.TB, side map[string][]byte, yaml string) *Authenticator {
	t.Helper()
	dir := t.TempDir()
	for name, data := range side {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(dir, "igw.yaml")
	if err := os.WriteFile(path, []byte(testModelServer+"---\n"+yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := testSchema.Load(path)
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	a, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return a
}

func keysDoc() string {
	return `apiVersion: igw.dev/v1alpha1
kind: APIKeys
metadata: {name: team-a}
spec:
  models: [llama-3.1-8b, "qwen-*"]
  objective: interactive
  allowedObjectives: [batch]
  quotas: [gold]
  keys:
  - {id: a-ci, hash: ` + HashKey("sk-team-a") + `}
  - {id: a-admin, hash: ` + HashKey("sk-admin") + `, models: ["*"], tenant: ops}
  keysFile: more.keys
`
}

func TestAuthenticate_APIKeys(t *testing.T) {
	a := load(t, map[string][]byte{"more.keys": []byte(HashKey("sk-from-file") + " file-key\n")}, keysDoc())
	tests := []struct {
		name       string
		header     http.Header
		wantTenant string
		wantID     string
		wantReason string
	}{
		{"bearer", http.Header{"Authorization": {"Bearer sk-team-a"}}, "team-a", "a-ci", ""},
		{"bearer scheme is case-insensitive", http.Header{"Authorization": {"bearer sk-team-a"}}, "team-a", "a-ci", ""},
		{"x-api-key", http.Header{"X-Api-Key": {"sk-admin"}}, "ops", "a-admin", ""},
		{"key from the keys file", http.Header{"X-Api-Key": {"sk-from-file"}}, "team-a", "file-key", ""},
		{"no credential", http.Header{}, "", "", ReasonMissing},
		{"basic auth is no credential", http.Header{"Authorization": {"Basic YTpi"}}, "", "", ReasonMissing},
		{"empty bearer", http.Header{"Authorization": {"Bearer "}}, "", "", ReasonMissing},
		{"wrong key", http.Header{"Authorization": {"Bearer sk-team-b"}}, "", "", ReasonInvalidKey},
		{"the hash is not the key", http.Header{"X-Api-Key": {HashKey("sk-team-a")}}, "", "", ReasonInvalidKey},
		{"JWT-shaped without an AuthPolicy is an unknown key", http.Header{"Authorization": {"Bearer eyJa.eyJb.c"}}, "", "", ReasonInvalidKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := tt.header.Clone()
			h.Set("Content-Type", "application/json")
			id, f := a.Authenticate(h)
			if h.Get("Authorization") != "" || h.Get("X-Api-Key") != "" {
				t.Errorf("credential headers left for the model server: %v", h)
			}
			if h.Get("Content-Type") == "" {
				t.Error("other headers were removed too")
			}
			if tt.wantReason != "" {
				if f == nil {
					t.Fatalf("authenticated as %+v, want %s", id, tt.wantReason)
				}
				if f.Reason != tt.wantReason || f.Err.Status() != http.StatusUnauthorized || !strings.HasPrefix(f.Challenge, `Bearer realm="igw"`) {
					t.Errorf("failure = %+v (%v)", f, f.Err)
				}
				return
			}
			if f != nil {
				t.Fatalf("refused: %s %v", f.Reason, f.Err)
			}
			if id.Tenant != tt.wantTenant || id.Subject != tt.wantID || id.Method != MethodAPIKey {
				t.Errorf("identity = %+v", id)
			}
			if len(id.Quotas) != 1 || id.Quotas[0].GetName() != "gold" {
				t.Errorf("quotas not resolved: %+v", id.Quotas)
			}
		})
	}
}

func TestAuthorize_ModelsAndObjectives(t *testing.T) {
	a := load(t, map[string][]byte{"more.keys": []byte(HashKey("x") + "\n")}, keysDoc())
	id, f := a.Authenticate(http.Header{"X-Api-Key": {"sk-team-a"}})
	if f != nil {
		t.Fatal(f.Err)
	}
	tests := []struct {
		model, objective string
		want             string // objective applied
		wantReason       string
	}{
		{"llama-3.1-8b", "", "interactive", ""},
		{"qwen-2.5", "batch", "batch", ""},
		{"qwen-2.5", "interactive", "interactive", ""},
		{"llama-3.1-70b", "", "", ReasonModelNotAllowed},
		{"llama-3.1-8b", "critical", "", ReasonObjectiveNotAllowed},
	}
	for _, tt := range tests {
		got, f := Authorize(id, tt.model, tt.objective)
		switch {
		case tt.wantReason != "":
			if f == nil || f.Reason != tt.wantReason || f.Err.Status() != http.StatusForbidden {
				t.Errorf("Authorize(%q, %q) = %q, %+v; want 403 %s", tt.model, tt.objective, got, f, tt.wantReason)
			}
		case f != nil || got != tt.want:
			t.Errorf("Authorize(%q, %q) = %q, %+v; want %q", tt.model, tt.objective, got, f, tt.want)
		}
	}
}

func TestNew_AuthOffWithoutKeysOrPolicy(t *testing.T) {
	cfg, err := testSchema.Parse("x.yaml", []byte(testModelServer))
	if err != nil {
		t.Fatal(err)
	}
	if a, err := New(cfg); a != nil || err != nil {
		t.Errorf("New = %v, %v; want nil, nil", a, err)
	}
}

// Test JWTs: keys generated per test run, tokens signed here with the
// standard library, the way an identity provider would.

type signer struct {
	kid string
	alg string
	rsa *rsa.PrivateKey
	ec  *ecdsa.PrivateKey
}

func (s signer) jwk() map[string]string {
	b64 := base64.RawURLEncoding.EncodeToString
	if s.rsa != nil {
		return map[string]string{"kty": "RSA", "kid": s.kid, "use": "sig", "n": b64(s.rsa.N.Bytes()), "e": b64(big.NewInt(int64(s.rsa.E)).Bytes())}
	}
	size := (s.ec.Curve.Params().BitSize + 7) / 8
	pt, _ := s.ec.PublicKey.Bytes() // 0x04 || x || y
	return map[string]string{"kty": "EC", "kid": s.kid, "crv": s.ec.Curve.Params().Name,
		"x": b64(pt[1 : 1+size]), "y": b64(pt[1+size:])}
}

func (s signer) sign(t testing.TB, header map[string]any, claims map[string]any) string {
	t.Helper()
	if header == nil {
		header = map[string]any{"alg": s.alg, "kid": s.kid, "typ": "JWT"}
	}
	hb, _ := json.Marshal(header)
	cb, _ := json.Marshal(claims)
	enc := base64.RawURLEncoding.EncodeToString
	signed := enc(hb) + "." + enc(cb)
	digest := sha256.Sum256([]byte(signed))
	var sig []byte
	var err error
	switch {
	case s.rsa != nil && s.alg == "PS256":
		sig, err = rsa.SignPSS(rand.Reader, s.rsa, crypto.SHA256, digest[:], &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash})
	case s.rsa != nil:
		sig, err = rsa.SignPKCS1v15(rand.Reader, s.rsa, crypto.SHA256, digest[:])
	default:
		r, ss, e := ecdsa.Sign(rand.Reader, s.ec, digest[:])
		err = e
		sig = append(r.FillBytes(make([]byte, 32)), ss.FillBytes(make([]byte, 32))...)
	}
	if err != nil {
		t.Fatal(err)
	}
	return signed + "." + enc(sig)
}

func jwtSetup(t testing.TB, extra string) (*Authenticator, signer, signer, time.Time) {
	t.Helper()
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ek, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rs := signer{kid: "r1", alg: "RS256", rsa: rk}
	es := signer{kid: "e1", alg: "ES256", ec: ek}
	jwks, _ := json.Marshal(map[string]any{"keys": []any{rs.jwk(), es.jwk(), map[string]string{"kty": "oct", "k": "c2VjcmV0"}}})
	a := load(t, map[string][]byte{"jwks.json": jwks}, `apiVersion: igw.dev/v1alpha1
kind: AuthPolicy
metadata: {name: auth}
spec:
  jwt:
    jwksFile: jwks.json
    issuer: https://id.example
    audiences: [igw]
    algorithms: [RS256, PS256, ES256]
    leeway: 10s
    claims: {tenant: org, models: models, objective: objective}
    grant: {models: [llama-3.1-8b], quotas: [gold]}
`+extra)
	now := time.Unix(1_800_000_000, 0)
	a.now = func() time.Time { return now }
	return a, rs, es, now
}

func TestAuthenticate_JWT(t *testing.T) {
	a, rs, es, now := jwtSetup(t, "")
	claims := func(mod func(map[string]any)) map[string]any {
		c := map[string]any{"iss": "https://id.example", "aud": []string{"other", "igw"}, "sub": "u1", "org": "acme",
			"exp": now.Add(time.Minute).Unix(), "nbf": now.Add(-time.Minute).Unix()}
		if mod != nil {
			mod(c)
		}
		return c
	}
	ps := rs
	ps.alg = "PS256"
	ok := rs.sign(t, nil, claims(nil))
	tampered := ok[:len(ok)-4] + strings.Map(func(r rune) rune {
		if r == 'A' {
			return 'B'
		}
		return 'A'
	}, ok[len(ok)-4:])
	tests := []struct {
		name       string
		token      string
		wantReason string
		check      func(*Identity) bool
	}{
		{"RS256", ok, "", func(id *Identity) bool {
			return id.Tenant == "acme" && id.Subject == "acme/u1" && id.Method == MethodJWT && id.Models[0] == "llama-3.1-8b" && id.Quotas[0].GetName() == "gold"
		}},
		{"PS256", ps.sign(t, nil, claims(nil)), "", nil},
		{"ES256", es.sign(t, nil, claims(nil)), "", nil},
		{"no kid tries every key", es.sign(t, map[string]any{"alg": "ES256"}, claims(nil)), "", nil},
		{"aud as a string", rs.sign(t, nil, claims(func(c map[string]any) { c["aud"] = "igw" })), "", nil},
		{"claims grant models and objective", rs.sign(t, nil, claims(func(c map[string]any) { c["models"] = "qwen-* mistral"; c["objective"] = "batch" })), "",
			func(id *Identity) bool {
				return id.AllowsModel("qwen-7b") && !id.AllowsModel("llama-3.1-8b") && id.Objective == "batch"
			}},
		{"within leeway after exp", rs.sign(t, nil, claims(func(c map[string]any) { c["exp"] = now.Add(-5 * time.Second).Unix() })), "", nil},
		{"expired", rs.sign(t, nil, claims(func(c map[string]any) { c["exp"] = now.Add(-time.Minute).Unix() })), ReasonExpiredToken, nil},
		{"no exp", rs.sign(t, nil, claims(func(c map[string]any) { delete(c, "exp") })), ReasonInvalidToken, nil},
		{"exp beyond time.Duration", rs.sign(t, nil, claims(func(c map[string]any) { c["exp"] = 1e300 })), ReasonInvalidToken, nil},
		{"exp as a string", rs.sign(t, nil, claims(func(c map[string]any) { c["exp"] = "tomorrow" })), ReasonInvalidToken, nil},
		{"not yet valid", rs.sign(t, nil, claims(func(c map[string]any) { c["nbf"] = now.Add(time.Minute).Unix() })), ReasonInvalidToken, nil},
		{"wrong issuer", rs.sign(t, nil, claims(func(c map[string]any) { c["iss"] = "https://evil.example" })), ReasonInvalidToken, nil},
		{"wrong audience", rs.sign(t, nil, claims(func(c map[string]any) { c["aud"] = []string{"other"} })), ReasonInvalidToken, nil},
		{"no tenant claim", rs.sign(t, nil, claims(func(c map[string]any) { delete(c, "org") })), ReasonInvalidToken, nil},
		{"models claim of the wrong type", rs.sign(t, nil, claims(func(c map[string]any) { c["models"] = 7 })), ReasonInvalidToken, nil},
		{"tampered signature", tampered, ReasonInvalidToken, nil},
		{"unknown kid", rs.sign(t, map[string]any{"alg": "RS256", "kid": "r2"}, claims(nil)), ReasonInvalidToken, nil},
		{"alg none", func() string {
			enc := base64.RawURLEncoding.EncodeToString
			hb, _ := json.Marshal(map[string]any{"alg": "none"})
			cb, _ := json.Marshal(claims(nil))
			return enc(hb) + "." + enc(cb) + "."
		}(), ReasonInvalidToken, nil},
		{"HS256 with the public key as secret", rs.sign(t, map[string]any{"alg": "HS256", "kid": "r1"}, claims(nil)), ReasonInvalidToken, nil},
		{"RSA key claimed as ES256", rs.sign(t, map[string]any{"alg": "ES256", "kid": "r1"}, claims(nil)), ReasonInvalidToken, nil},
		{"algorithm not configured", rs.sign(t, map[string]any{"alg": "RS512", "kid": "r1"}, claims(nil)), ReasonInvalidToken, nil},
		{"crit header", rs.sign(t, map[string]any{"alg": "RS256", "kid": "r1", "crit": []string{"x"}}, claims(nil)), ReasonInvalidToken, nil},
		{"garbage", "eyJhbGciOi.eyJ.!!!", ReasonInvalidToken, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{"Authorization": {"Bearer " + tt.token}}
			id, f := a.Authenticate(h)
			if h.Get("Authorization") != "" {
				t.Error("token forwarded")
			}
			if tt.wantReason != "" {
				if f == nil {
					t.Fatalf("accepted: %+v", id)
				}
				if f.Reason != tt.wantReason || f.Err.Status() != 401 || f.Challenge != `Bearer realm="igw", error="invalid_token"` {
					t.Errorf("failure = %s %q %v", f.Reason, f.Challenge, f.Err)
				}
				return
			}
			if f != nil {
				t.Fatalf("refused: %s: %v", f.Reason, f.Err)
			}
			if tt.check != nil && !tt.check(id) {
				t.Errorf("identity = %+v", id)
			}
		})
	}
}

func TestAuthenticate_JWTAndAPIKeysTogether(t *testing.T) {
	a, _, _, _ := jwtSetup(t, "---\n"+strings.Replace(keysDoc(), "  keysFile: more.keys\n", "", 1))
	if _, f := a.Authenticate(http.Header{"Authorization": {"Bearer sk-team-a"}}); f != nil {
		t.Errorf("API key refused next to JWT: %v", f.Err)
	}
}

func TestNew_RejectsBadJWKS(t *testing.T) {
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	for name, jwks := range map[string]string{
		"not JSON":        "{",
		"no signing keys": `{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}`,
		"small RSA key": func() string {
			b, _ := json.Marshal(map[string]any{"keys": []any{signer{kid: "s", rsa: small}.jwk()}})
			return string(b)
		}(),
		"point not on the curve": `{"keys":[{"kty":"EC","crv":"P-256","x":"` + strings.Repeat("A", 43) + `","y":"` + strings.Repeat("A", 42) + `E"}]}`,
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			_ = os.WriteFile(filepath.Join(dir, "jwks.json"), []byte(jwks), 0o600)
			path := filepath.Join(dir, "igw.yaml")
			_ = os.WriteFile(path, []byte(testModelServer+"---\napiVersion: igw.dev/v1alpha1\nkind: AuthPolicy\nspec: {jwt: {jwksFile: jwks.json}}\n"), 0o600)
			cfg, err := testSchema.Load(path)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := New(cfg); err == nil || !strings.Contains(err.Error(), "spec.jwt.jwksFile") {
				t.Errorf("New error = %v, want one naming spec.jwt.jwksFile", err)
			}
		})
	}
}

// BenchmarkAuthenticate_APIKey is the per-request cost of an API key
// lookup (one SHA-256 of the key, one map lookup).
func BenchmarkAuthenticate_APIKey(b *testing.B) {
	a := load(b, map[string][]byte{"more.keys": []byte(HashKey("x") + "\n")}, keysDoc())
	h := http.Header{}
	b.ReportAllocs()
	for b.Loop() {
		h.Set("Authorization", "Bearer sk-team-a")
		if _, f := a.Authenticate(h); f != nil {
			b.Fatal(f.Err)
		}
	}
}

// BenchmarkAuthenticate_JWT is the per-request cost of a token: the first
// time (signature and claims, "uncached") and when it comes again (the
// verified-token cache).
func BenchmarkAuthenticate_JWT(b *testing.B) {
	a, rs, es, now := jwtSetup(b, "")
	claims := map[string]any{"iss": "https://id.example", "aud": "igw", "sub": "u1", "org": "acme", "exp": now.Add(time.Hour).Unix()}
	for _, s := range []signer{rs, es} {
		tok := s.sign(b, nil, claims)
		b.Run(s.alg+"/uncached", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, _, _, err := a.jwt.verifyUncached(tok, now); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(s.alg+"/cached", func(b *testing.B) {
			h := http.Header{}
			b.ReportAllocs()
			for b.Loop() {
				h.Set("Authorization", "Bearer "+tok)
				if _, f := a.Authenticate(h); f != nil {
					b.Fatal(f.Err)
				}
			}
		})
	}
}

func TestAuthenticate_CachedTokenStillExpires(t *testing.T) {
	a, rs, _, now := jwtSetup(t, "")
	tok := rs.sign(t, nil, map[string]any{"iss": "https://id.example", "aud": "igw", "org": "acme", "sub": "u", "exp": now.Add(time.Minute).Unix()})
	for i := range 2 { // verified, then from the cache
		if _, f := a.Authenticate(http.Header{"Authorization": {"Bearer " + tok}}); f != nil {
			t.Fatalf("attempt %d: %v", i, f.Err)
		}
	}
	if a.jwt.cache.get(sha256.Sum256([]byte(tok))) == nil {
		t.Fatal("a verified token was not cached")
	}
	later := now.Add(2 * time.Minute)
	a.now = func() time.Time { return later }
	if _, f := a.Authenticate(http.Header{"Authorization": {"Bearer " + tok}}); f == nil || f.Reason != ReasonExpiredToken {
		t.Fatalf("expired cached token: %+v", f)
	}
}

func TestTokenCache_StaysBounded(t *testing.T) {
	c := newTokenCache()
	for i := range 3 * tokenCacheSize {
		var k [32]byte
		k[0], k[1], k[2] = byte(i), byte(i>>8), byte(i>>16)
		c.put(k, &cachedToken{})
	}
	if n := len(c.cur) + len(c.old); n > tokenCacheSize {
		t.Errorf("cache holds %d entries, bound %d", n, tokenCacheSize)
	}
}

// FuzzAuthenticate feeds arbitrary bearer credentials to an authenticator
// with API keys and JWT: it never panics, never accepts what it did not
// issue, and always removes the credential.
func FuzzAuthenticate(f *testing.F) {
	a, rs, es, now := jwtSetup(f, "---\n"+strings.Replace(keysDoc(), "  keysFile: more.keys\n", "", 1))
	claims := map[string]any{"iss": "https://id.example", "aud": "igw", "sub": "u1", "org": "acme", "exp": now.Add(time.Hour).Unix()}
	for _, seed := range []string{
		rs.sign(f, nil, claims), es.sign(f, nil, claims), "sk-team-a", "eyJ.eyJ.", "eyJhbGciOiJub25lIn0.e30.", "eyJ..", "...",
		"eyJhbGciOiJFUzI1NiJ9.eyJleHAiOjF9.AAAA", "Basic x",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, cred string) {
		h := http.Header{"Authorization": {"Bearer " + cred}, "X-Api-Key": {cred}}
		id, fail := a.Authenticate(h)
		if len(h) != 0 {
			t.Fatalf("credential headers left: %v", h)
		}
		if id == nil && fail == nil {
			t.Fatal("neither identity nor failure")
		}
		if id != nil && id.Method == MethodAPIKey && cred != "sk-team-a" && cred != "sk-admin" {
			t.Fatalf("accepted %q as an API key", cred)
		}
		if id != nil && id.Method == MethodJWT && id.Tenant != "acme" {
			t.Fatalf("accepted a token for tenant %q", id.Tenant)
		}
	})
}
