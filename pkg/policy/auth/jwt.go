package auth

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"strings"
	"time"

	"github.com/igw-dev/igw/pkg/config"
)

// jwtVerifier verifies JWTs (RFC 7519, compact JWS) against the public keys
// of a JWKS file. Only asymmetric algorithms are accepted: the gateway
// holds public keys and can verify tokens, never mint them.
type jwtVerifier struct {
	cfg    *JWTAuth
	algs   []string
	keys   []jwk
	quotas []config.Object
	cache  *tokenCache
}

// jwk is one usable public key of the set.
type jwk struct {
	kid string
	alg string // "" when the key does not restrict it
	rsa *rsa.PublicKey
	ec  *ecdsa.PublicKey
}

// jwksDoc is the JSON form of a key set (RFC 7517, the fields igw reads).
type jwksDoc struct {
	Keys []struct {
		Kty string `json:"kty"`
		Kid string `json:"kid"`
		Use string `json:"use"`
		Alg string `json:"alg"`
		N   string `json:"n"`
		E   string `json:"e"`
		Crv string `json:"crv"`
		X   string `json:"x"`
		Y   string `json:"y"`
	} `json:"keys"`
}

func newJWTVerifier(c *JWTAuth, quotas []config.Object) (*jwtVerifier, error) {
	var doc jwksDoc
	if err := json.Unmarshal(c.JWKS, &doc); err != nil {
		return nil, fmt.Errorf("not a JSON Web Key Set: %w", err)
	}
	v := &jwtVerifier{cfg: c, algs: c.Algorithms, quotas: quotas, cache: newTokenCache()}
	for i, k := range doc.Keys {
		if k.Use != "" && k.Use != "sig" {
			continue // an encryption key is not for us
		}
		key := jwk{kid: k.Kid, alg: k.Alg}
		switch k.Kty {
		case "RSA":
			n, err1 := b64Int(k.N)
			e, err2 := b64Int(k.E)
			if err := errors.Join(err1, err2); err != nil {
				return nil, fmt.Errorf("keys[%d] (kid %q): %w", i, k.Kid, err)
			}
			if n.BitLen() < 2048 {
				return nil, fmt.Errorf("keys[%d] (kid %q): RSA key of %d bits; at least 2048 are required", i, k.Kid, n.BitLen())
			}
			if !e.IsInt64() || e.Int64() < 3 || e.Int64() > 1<<31-1 {
				return nil, fmt.Errorf("keys[%d] (kid %q): invalid RSA exponent", i, k.Kid)
			}
			key.rsa = &rsa.PublicKey{N: n, E: int(e.Int64())}
		case "EC":
			size := map[string]int{"P-256": 32, "P-384": 48}[k.Crv]
			if size == 0 {
				return nil, fmt.Errorf("keys[%d] (kid %q): curve %q; want P-256 or P-384", i, k.Kid, k.Crv)
			}
			x, err1 := b64Fixed(k.X, size)
			y, err2 := b64Fixed(k.Y, size)
			if err := errors.Join(err1, err2); err != nil {
				return nil, fmt.Errorf("keys[%d] (kid %q): %w", i, k.Kid, err)
			}
			point := append(append([]byte{4}, x...), y...)
			curve := ecdsaCurve(k.Crv)
			pub, err := ecdsa.ParseUncompressedPublicKey(curve, point)
			if err != nil {
				return nil, fmt.Errorf("keys[%d] (kid %q): %w", i, k.Kid, err)
			}
			key.ec = pub
		default:
			continue // symmetric ("oct") and unknown key types are never used
		}
		v.keys = append(v.keys, key)
	}
	if len(v.keys) == 0 {
		return nil, errors.New("no RSA or EC signing key in the key set")
	}
	return v, nil
}

func b64Int(s string) (*big.Int, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) == 0 {
		return nil, errors.New("invalid base64url number")
	}
	return new(big.Int).SetBytes(b), nil
}

func b64Fixed(s string, size int) ([]byte, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) != size {
		return nil, fmt.Errorf("invalid curve coordinate: want %d base64url bytes", size)
	}
	return b, nil
}

// looksLikeJWT tells a compact JWS ("xxx.yyy.zzz") from an opaque API key.
func looksLikeJWT(s string) bool {
	return strings.Count(s, ".") == 2 && strings.HasPrefix(s, "eyJ")
}

// jwtHeader is the JOSE header fields igw reads.
type jwtHeader struct {
	Alg  string `json:"alg"`
	Kid  string `json:"kid"`
	Crit []any  `json:"crit"`
}

// verify checks a token's signature and claims at time now and returns its
// identity, or the failure reason and cause.
func (v *jwtVerifier) verify(token string, now time.Time) (*Identity, string, error) {
	key := sha256.Sum256([]byte(token))
	if t := v.cache.get(key); t != nil {
		if reason, err := v.checkTimes(t.exp, t.nbf, now); err != nil {
			return nil, reason, err
		}
		return t.id, "", nil
	}
	id, t, reason, err := v.verifyUncached(token, now)
	if err != nil {
		return nil, reason, err
	}
	v.cache.put(key, t)
	return id, "", nil
}

// checkTimes applies exp and nbf (nbf zero: none) with the leeway.
func (v *jwtVerifier) checkTimes(exp, nbf time.Time, now time.Time) (string, error) {
	leeway := v.cfg.Leeway.Duration
	if now.After(exp.Add(leeway)) {
		return ReasonExpiredToken, errors.New("the token has expired")
	}
	if !nbf.IsZero() && now.Add(leeway).Before(nbf) {
		return ReasonInvalidToken, errors.New("the token is not valid yet (nbf)")
	}
	return "", nil
}

// verifyUncached verifies the signature and every claim.
func (v *jwtVerifier) verifyUncached(token string, now time.Time) (*Identity, *cachedToken, string, error) {
	h64, rest, _ := strings.Cut(token, ".")
	p64, s64, _ := strings.Cut(rest, ".")
	hb, err1 := base64.RawURLEncoding.DecodeString(h64)
	pb, err2 := base64.RawURLEncoding.DecodeString(p64)
	sig, err3 := base64.RawURLEncoding.DecodeString(s64)
	if errors.Join(err1, err2, err3) != nil {
		return nil, nil, ReasonInvalidToken, errors.New("malformed token")
	}
	var hdr jwtHeader
	if err := json.Unmarshal(hb, &hdr); err != nil {
		return nil, nil, ReasonInvalidToken, errors.New("malformed token header")
	}
	if !slices.Contains(v.algs, hdr.Alg) {
		return nil, nil, ReasonInvalidToken, fmt.Errorf("algorithm %q is not accepted", hdr.Alg)
	}
	if len(hdr.Crit) > 0 {
		return nil, nil, ReasonInvalidToken, errors.New("critical header extensions are not supported")
	}
	signed := token[:len(h64)+1+len(p64)]
	if !v.checkSignature(hdr, []byte(signed), sig) {
		return nil, nil, ReasonInvalidToken, errors.New("signature does not verify")
	}
	return v.claims(pb, now)
}

// checkSignature tries the keys the header can mean: the one with its kid,
// or, without a kid, every key of the algorithm's type.
func (v *jwtVerifier) checkSignature(hdr jwtHeader, signed, sig []byte) bool {
	for i := range v.keys {
		k := &v.keys[i]
		if hdr.Kid != "" && k.kid != hdr.Kid {
			continue
		}
		if k.alg != "" && k.alg != hdr.Alg {
			continue
		}
		if verifySignature(k, hdr.Alg, signed, sig) {
			return true
		}
	}
	return false
}

func verifySignature(k *jwk, alg string, signed, sig []byte) bool {
	var h crypto.Hash
	switch alg {
	case JWTAlgRS256, JWTAlgPS256, JWTAlgES256:
		h = crypto.SHA256
	case JWTAlgRS384, JWTAlgES384:
		h = crypto.SHA384
	case JWTAlgRS512:
		h = crypto.SHA512
	default:
		return false
	}
	digest := hashOf(h, signed)
	switch alg[0] {
	case 'R':
		return k.rsa != nil && rsa.VerifyPKCS1v15(k.rsa, h, digest, sig) == nil
	case 'P':
		return k.rsa != nil && rsa.VerifyPSS(k.rsa, h, digest, sig, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash}) == nil
	case 'E':
		if k.ec == nil {
			return false
		}
		size := (k.ec.Curve.Params().BitSize + 7) / 8
		if (alg == JWTAlgES256) != (size == 32) || len(sig) != 2*size {
			return false // the curve must be the algorithm's, and JWS signatures are r||s
		}
		r := new(big.Int).SetBytes(sig[:size])
		s := new(big.Int).SetBytes(sig[size:])
		return ecdsa.Verify(k.ec, digest, r, s)
	}
	return false
}

func hashOf(h crypto.Hash, data []byte) []byte {
	switch h {
	case crypto.SHA384:
		s := sha512.Sum384(data)
		return s[:]
	case crypto.SHA512:
		s := sha512.Sum512(data)
		return s[:]
	default:
		s := sha256.Sum256(data)
		return s[:]
	}
}

// claims validates the registered claims and maps the grant claims to an
// Identity.
func (v *jwtVerifier) claims(payload []byte, now time.Time) (*Identity, *cachedToken, string, error) {
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.UseNumber()
	var c map[string]any
	if err := dec.Decode(&c); err != nil {
		return nil, nil, ReasonInvalidToken, errors.New("malformed token claims")
	}
	exp, ok, err := numericDate(c, "exp")
	switch {
	case err != nil:
		return nil, nil, ReasonInvalidToken, err
	case !ok:
		return nil, nil, ReasonInvalidToken, errors.New("the token has no exp claim")
	}
	nbf, _, err := numericDate(c, "nbf")
	if err != nil {
		return nil, nil, ReasonInvalidToken, err
	}
	if reason, err := v.checkTimes(exp, nbf, now); err != nil {
		return nil, nil, reason, err
	}
	if v.cfg.Issuer != "" {
		if iss, _ := c["iss"].(string); iss != v.cfg.Issuer {
			return nil, nil, ReasonInvalidToken, errors.New("the token's issuer is not accepted")
		}
	}
	if len(v.cfg.Audiences) > 0 && !audienceMatches(c["aud"], v.cfg.Audiences) {
		return nil, nil, ReasonInvalidToken, errors.New("the token's audience is not accepted")
	}
	names := v.cfg.Claims
	tenant, _ := c[names.Tenant].(string)
	if tenant == "" {
		return nil, nil, ReasonInvalidToken, fmt.Errorf("the token has no %q claim naming the tenant", names.Tenant)
	}
	sub, _ := c["sub"].(string)
	g := v.cfg.Grant
	id := &Identity{
		Method: MethodJWT, Subject: tenant + "/" + sub, Tenant: tenant,
		Models: g.Models, Objective: g.Objective, AllowedObjectives: g.AllowedObjectives, Quotas: v.quotas,
	}
	if names.Models != "" {
		if raw, present := c[names.Models]; present {
			models, ok := stringList(raw)
			if !ok {
				return nil, nil, ReasonInvalidToken, fmt.Errorf("the %q claim must be a list of strings or a space-separated string", names.Models)
			}
			id.Models = models
		}
	}
	if names.Objective != "" {
		if o, ok := c[names.Objective].(string); ok && o != "" {
			id.Objective = o
		}
	}
	return id, &cachedToken{id: id, exp: exp, nbf: nbf}, "", nil
}

// maxNumericDate is the latest NumericDate accepted (year 2262, where a
// time.Duration since the epoch overflows); later values are malformed.
const maxNumericDate = 9.2e9

// numericDate reads a NumericDate claim (seconds since the epoch).
func numericDate(c map[string]any, name string) (time.Time, bool, error) {
	raw, ok := c[name]
	if !ok {
		return time.Time{}, false, nil
	}
	n, ok := raw.(json.Number)
	if !ok {
		return time.Time{}, false, fmt.Errorf("the %s claim must be a number", name)
	}
	f, err := n.Float64()
	if err != nil {
		return time.Time{}, false, fmt.Errorf("the %s claim must be a number", name)
	}
	if f < 0 || f > maxNumericDate {
		return time.Time{}, false, fmt.Errorf("the %s claim is out of range", name)
	}
	return time.Unix(0, 0).Add(time.Duration(f * float64(time.Second))), true, nil
}

func audienceMatches(aud any, accepted []string) bool {
	if s, ok := aud.(string); ok {
		return slices.Contains(accepted, s)
	}
	list, ok := stringList(aud)
	if !ok {
		return false
	}
	for _, a := range list {
		if slices.Contains(accepted, a) {
			return true
		}
	}
	return false
}

// stringList reads a claim that is a string (space-separated values, as
// OAuth scopes are) or a list of strings.
func stringList(v any) ([]string, bool) {
	switch v := v.(type) {
	case string:
		return strings.Fields(v), true
	case []any:
		out := make([]string, 0, len(v))
		for _, x := range v {
			s, ok := x.(string)
			if !ok {
				return nil, false
			}
			out = append(out, s)
		}
		return out, true
	}
	return nil, false
}

func ecdsaCurve(crv string) elliptic.Curve {
	if crv == "P-384" {
		return elliptic.P384()
	}
	return elliptic.P256()
}
