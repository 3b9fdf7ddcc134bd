package auth

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/igw-dev/igw/pkg/config"
	"github.com/igw-dev/igw/pkg/openai"
)

// Header names that carry credentials.
const (
	HeaderAuthorization = "Authorization"
	HeaderAPIKey        = "X-Api-Key"
	// HeaderWWWAuthenticate is the challenge sent with every 401 (RFC 6750).
	HeaderWWWAuthenticate = "WWW-Authenticate"
)

// Reasons a request is refused, as reported in Failure.Reason and in the
// igw_auth_rejections_total metric. They are a fixed set, so a client
// cannot create metric series.
const (
	ReasonMissing             = "missing"
	ReasonInvalidKey          = "invalid_key"
	ReasonInvalidToken        = "invalid_token"
	ReasonExpiredToken        = "expired_token"
	ReasonModelNotAllowed     = "model_not_allowed"
	ReasonObjectiveNotAllowed = "objective_not_allowed"
)

// Failure is a refused request: why (one of the Reason constants) and the
// error to send, with its status.
type Failure struct {
	Reason string
	Err    *openai.Error
	// Challenge is the WWW-Authenticate value to send with a 401, or "".
	Challenge string
}

// Authenticator checks credentials against one configuration's keys and
// JWT settings. It is immutable and safe for concurrent use; a reload
// builds a new one.
type Authenticator struct {
	keys map[[sha256.Size]byte]*keyEntry
	jwt  *jwtVerifier // nil without an AuthPolicy
	// now is the clock JWT expiry is checked against (time.Now outside
	// tests).
	now func() time.Time
}

// keyEntry is one API key: its hash (compared again in constant time on
// lookup) and its grant.
type keyEntry struct {
	hash     [sha256.Size]byte
	identity *Identity
}

// New builds the Authenticator of cfg, or returns nil when the
// configuration turns authentication off (no APIKeys and no AuthPolicy).
// Errors (an unreadable JWKS) fail the load.
func New(cfg *config.Config) (*Authenticator, error) {
	if !Enabled(cfg) {
		return nil, nil
	}
	a := &Authenticator{keys: map[[sha256.Size]byte]*keyEntry{}, now: time.Now}
	for _, doc := range Keys(cfg) {
		for _, list := range [][]APIKey{doc.Spec.Keys, doc.FileKeys} {
			for i := range list {
				k := &list[i]
				var e keyEntry
				if n, err := hex.Decode(e.hash[:], []byte(strings.TrimPrefix(k.Hash, APIKeyHashPrefix))); err != nil || n != sha256.Size {
					return nil, fmt.Errorf("APIKeys %q key %q: hash is not %d hex bytes", doc.Name, k.ID, sha256.Size)
				}
				quotas, err := resolveQuotas(cfg, doc.Namespace, k.Quotas)
				if err != nil {
					return nil, fmt.Errorf("APIKeys %q key %q: %w", doc.Name, k.ID, err)
				}
				e.identity = &Identity{
					Method: MethodAPIKey, Subject: k.ID, Tenant: k.Tenant,
					Models: k.Models, Objective: k.Objective, AllowedObjectives: k.AllowedObjectives,
					Quotas: quotas,
				}
				a.keys[e.hash] = &e
			}
		}
	}
	if p := Policy(cfg); p != nil && p.Spec.JWT != nil {
		quotas, err := resolveQuotas(cfg, p.Namespace, p.Spec.JWT.Grant.Quotas)
		if err != nil {
			return nil, fmt.Errorf("AuthPolicy: %w", err)
		}
		v, err := newJWTVerifier(p.Spec.JWT, quotas)
		if err != nil {
			return nil, fmt.Errorf("%s: AuthPolicy %q: spec.jwt.jwksFile: %w", cfg.Source, p.Name, err)
		}
		a.jwt = v
	}
	return a, nil
}

// resolveQuotas finds the QuotaPolicies a grant names, by kind and name
// (see QuotaPolicyKind).
func resolveQuotas(cfg *config.Config, namespace string, names []string) ([]config.Object, error) {
	if len(names) == 0 {
		return nil, nil
	}
	out := make([]config.Object, 0, len(names))
	for _, n := range names {
		q := cfg.Get(QuotaPolicyKind, namespace, n)
		if q == nil {
			return nil, fmt.Errorf("QuotaPolicy %q not found in namespace %q", n, namespace)
		}
		out = append(out, q)
	}
	return out, nil
}

// HashKey is the stored form of an API key: "sha256:" and the hex
// SHA-256 of the key, what an APIKeys document lists.
func HashKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	return fmt.Sprintf("%s%x", APIKeyHashPrefix, sum)
}

// Authenticate finds the identity of the credential in h and removes the
// credential headers from h, whatever the outcome, so that no key or token
// is ever forwarded to a model server.
func (a *Authenticator) Authenticate(h http.Header) (*Identity, *Failure) {
	cred, fromAuthorization, present := credential(h)
	h.Del(HeaderAuthorization)
	h.Del(HeaderAPIKey)
	if !present {
		return nil, unauthorized(ReasonMissing, "",
			"missing API key: send it as `Authorization: Bearer <key>` or `x-api-key: <key>`")
	}
	if fromAuthorization && a.jwt != nil && looksLikeJWT(cred) {
		id, reason, err := a.jwt.verify(cred, a.now())
		if err != nil {
			return nil, unauthorized(reason, "invalid_token", "invalid token: "+err.Error())
		}
		return id, nil
	}
	sum := sha256.Sum256([]byte(cred))
	e, ok := a.keys[sum]
	if !ok || subtle.ConstantTimeCompare(e.hash[:], sum[:]) != 1 {
		return nil, unauthorized(ReasonInvalidKey, "invalid_token", "invalid API key")
	}
	return e.identity, nil
}

// credential extracts the presented credential: the Authorization header's
// bearer value first, then x-api-key. present is false when neither header
// carries one.
func credential(h http.Header) (cred string, fromAuthorization, present bool) {
	if v := h.Get(HeaderAuthorization); v != "" {
		scheme, rest, _ := strings.Cut(v, " ")
		if strings.EqualFold(scheme, "Bearer") {
			if tok := strings.TrimSpace(rest); tok != "" {
				return tok, true, true
			}
		}
	}
	if v := strings.TrimSpace(h.Get(HeaderAPIKey)); v != "" {
		return v, false, true
	}
	return "", false, false
}

// Authorize checks what the identity asks for: the body's model and the
// objective the client selected (x-gateway-inference-objective, "" for
// none). It returns the objective to apply: the client's when allowed, the
// identity's default when the client named none.
func Authorize(id *Identity, model, objective string) (string, *Failure) {
	if !id.AllowsModel(model) {
		e := openai.NewError(http.StatusForbidden, openai.ErrTypeInvalidRequest,
			fmt.Sprintf("this credential may not use the model `%s`", model))
		e.Param = "model"
		return "", &Failure{Reason: ReasonModelNotAllowed, Err: e}
	}
	if objective == "" {
		return id.Objective, nil
	}
	if !id.AllowsObjective(objective) {
		return "", &Failure{Reason: ReasonObjectiveNotAllowed, Err: openai.NewError(http.StatusForbidden, openai.ErrTypeInvalidRequest,
			fmt.Sprintf("this credential may not select the objective %q", openai.Echo(objective)))}
	}
	return objective, nil
}

// unauthorized is a 401 with its RFC 6750 challenge text (errCode is the
// challenge's error attribute, "" for a request without credentials).
func unauthorized(reason, errCode, msg string) *Failure {
	e := openai.NewError(http.StatusUnauthorized, openai.ErrTypeInvalidRequest, msg)
	return &Failure{Reason: reason, Err: e, Challenge: challenge(errCode)}
}

func challenge(errCode string) string {
	if errCode == "" {
		return `Bearer realm="igw"`
	}
	return `Bearer realm="igw", error="` + errCode + `"`
}
