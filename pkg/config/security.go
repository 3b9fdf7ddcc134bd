package config

import (
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Kinds of the protection layer (igw.dev/v1alpha1): who may call, how much
// they may spend, and what a request may look like. See docs/security.md.
const (
	KindAPIKeys      = "APIKeys"
	KindAuthPolicy   = "AuthPolicy"
	KindRequestGuard = "RequestGuard"
	KindQuotaPolicy  = "QuotaPolicy"
	KindQuotaStore   = "QuotaStore"
)

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

// Defaults and bounds of the protection layer.
const (
	DefaultJWTLeeway           = 30 * time.Second
	MaxJWTLeeway               = 5 * time.Minute
	DefaultJWTTenantClaim      = "sub"
	DefaultQuotaOutputTokens   = 256
	DefaultQuotaRedisTimeout   = 50 * time.Millisecond
	DefaultQuotaRedisKeyPrefix = "igw:quota:"
	MaxQuotaWindow             = 31 * 24 * time.Hour
)

// RequestGuard (kind RequestGuard, igw.dev/v1alpha1) bounds what a request
// may look like before it costs anything: size, shape, length and content.
// A Route names one in spec.guard. Every limit is optional; a rejection is
// a 400, 413, 422 or 431 whose error message and X-Gateway-Guard-Rule
// header name the rule.
//
//	apiVersion: igw.dev/v1alpha1
//	kind: RequestGuard
//	metadata:
//	  name: public
//	spec:
//	  maxBodySize: 1Mi               # 413 max-body-size
//	  maxMessages: 64                # 413 max-messages
//	  maxPromptTokens: 8000          # 413 max-prompt-tokens (igw's estimate)
//	  maxTokens: {limit: 2048, action: Clamp}  # Reject (422 max-tokens) or Clamp
//	  validate: true                 # 400 schema: types of the known OpenAI fields
//	  maxHeaders: 64                 # 431 max-headers
//	  maxHeaderSize: 16Ki            # 431 max-header-size (names + values)
//	  denyRules:                     # Go regular expressions over the prompt text
//	  - name: ignore-previous
//	    pattern: '(?i)ignore (all )?previous instructions'
//	    mode: Block                  # Block (422) or Log
type RequestGuard struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec is the guard's limits and rules.
	Spec RequestGuardSpec `json:"spec,omitempty"`
}

// RequestGuardSpec is the limits and rules of a RequestGuard.
type RequestGuardSpec struct {
	// MaxBodySize bounds the body in bytes (a quantity: 1Mi, 1048576). It
	// can only lower the Gateway's maxRequestBodySize.
	MaxBodySize *resource.Quantity `json:"maxBodySize,omitempty"`

	// MaxMessages bounds the messages of a chat completion.
	MaxMessages *int32 `json:"maxMessages,omitempty"`

	// MaxPromptTokens bounds the prompt as igw's tokenizer counts it (an
	// estimate close to Llama-class BPE tokenizers on English).
	MaxPromptTokens *int32 `json:"maxPromptTokens,omitempty"`

	// MaxTokens caps the output the client asks for.
	MaxTokens *MaxTokensGuard `json:"maxTokens,omitempty"`

	// Validate checks the JSON types of the fields OpenAI defines for chat
	// completions and completions (unknown fields are allowed, as vLLM
	// extensions are common) and rejects a mismatch with 400, so that a
	// malformed request never reaches a model server.
	Validate bool `json:"validate,omitempty"`

	// MaxHeaders bounds the number of request header lines.
	MaxHeaders *int32 `json:"maxHeaders,omitempty"`

	// MaxHeaderSize bounds the total size of header names and values.
	MaxHeaderSize *resource.Quantity `json:"maxHeaderSize,omitempty"`

	// DenyRules match regular expressions against the prompt text.
	DenyRules []DenyRule `json:"denyRules,omitempty"`
}

// MaxTokensGuard caps max_tokens (and max_completion_tokens,
// max_output_tokens).
type MaxTokensGuard struct {
	// Limit is the largest output a request may ask for.
	Limit int32 `json:"limit"`

	// Action is Reject (422, the default) or Clamp: the request's value is
	// lowered to Limit in the forwarded body. A request without max_tokens
	// is left alone by Reject and gets Limit under Clamp.
	Action MaxTokensAction `json:"action,omitempty"`
}

// MaxTokensAction is what a guard does with a max_tokens over the limit.
type MaxTokensAction string

// Max-tokens actions.
const (
	MaxTokensReject MaxTokensAction = "Reject"
	MaxTokensClamp  MaxTokensAction = "Clamp"
)

// DenyRule refuses (or only records) requests whose prompt text matches a
// pattern, e.g. known prompt-injection phrases. It is a tripwire, not a
// defence: a determined client rephrases (see docs/security.md).
type DenyRule struct {
	// Name identifies the rule in errors, headers and metrics.
	Name string `json:"name"`

	// Pattern is a Go (RE2) regular expression, matched against the
	// prompt: for chat, every message as "role\ncontent\n".
	Pattern string `json:"pattern"`

	// Mode is Block (422, the default) or Log (counted and logged, the
	// request continues).
	Mode DenyMode `json:"mode,omitempty"`
}

// DenyMode is what a matching deny rule does.
type DenyMode string

// Deny rule modes.
const (
	DenyBlock DenyMode = "Block"
	DenyLog   DenyMode = "Log"
)

// QuotaPolicy (kind QuotaPolicy, igw.dev/v1alpha1) is a token budget.
// Keys (and JWT grants) name the policies they are charged to. At
// admission igw reserves the request's estimated cost (prompt tokens plus
// max_tokens, or defaultOutputTokens) in every window and refuses with 429
// when it does not fit; at completion it replaces the estimate by the real
// usage.
//
//	apiVersion: igw.dev/v1alpha1
//	kind: QuotaPolicy
//	metadata:
//	  name: team-a
//	spec:
//	  scope: Tenant                  # Key | Tenant: whose requests share a counter
//	  perModel: true                 # each model has its own counters
//	  models: ["llama-*"]            # only these models count; default all
//	  limits:
//	  - window: 1m                   # sliding
//	    requests: 600
//	    totalTokens: 200000
//	  - window: 24h                  # budget
//	    outputTokens: 5000000
//	  defaultOutputTokens: 512
//	  stream: Cut                    # Cut | Finish a stream that overruns
type QuotaPolicy struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec is the budget.
	Spec QuotaPolicySpec `json:"spec,omitempty"`
}

// QuotaPolicySpec is the budget of a QuotaPolicy. After Parse Scope,
// DefaultOutputTokens and Stream are set.
type QuotaPolicySpec struct {
	// Scope is whose requests share one set of counters: Key (each API
	// key, or JWT subject, its own) or Tenant (default).
	Scope QuotaScope `json:"scope,omitempty"`

	// PerModel gives every model its own counters.
	PerModel bool `json:"perModel,omitempty"`

	// Models restricts the policy to these models (names, prefixes ending
	// in "*"); default all.
	Models []string `json:"models,omitempty"`

	// Limits are the windows, at most one per window length.
	Limits []QuotaLimit `json:"limits"`

	// DefaultOutputTokens is the output reserved for a request without
	// max_tokens (default 256).
	DefaultOutputTokens *int32 `json:"defaultOutputTokens,omitempty"`

	// Stream is what happens to a streamed response whose tokens exceed
	// what remains: Cut ends it with a final SSE error event, Finish
	// (default) lets it complete and charges the overrun.
	Stream QuotaStreamPolicy `json:"stream,omitempty"`
}

// QuotaLimit bounds the usage in one window. Unset amounts are unlimited;
// at least one must be set.
type QuotaLimit struct {
	// Window is the window's length: 1m is a sliding minute; hour and day
	// budgets are 1h and 24h. From 1s to 744h (31 days).
	Window metav1.Duration `json:"window"`

	// Requests bounds how many requests are admitted in the window.
	Requests *int64 `json:"requests,omitempty"`
	// InputTokens bounds prompt tokens (reserved as estimated, then
	// corrected to the server's usage.prompt_tokens).
	InputTokens *int64 `json:"inputTokens,omitempty"`
	// OutputTokens bounds generated tokens (reserved as max_tokens or
	// defaultOutputTokens, then corrected to usage.completion_tokens).
	OutputTokens *int64 `json:"outputTokens,omitempty"`
	// TotalTokens bounds input and output together.
	TotalTokens *int64 `json:"totalTokens,omitempty"`
}

// QuotaScope is whose requests share counters.
type QuotaScope string

// Quota scopes.
const (
	QuotaScopeKey    QuotaScope = "Key"
	QuotaScopeTenant QuotaScope = "Tenant"
)

// QuotaStreamPolicy is what happens to a stream that overruns its budget.
type QuotaStreamPolicy string

// Stream policies.
const (
	QuotaStreamCut    QuotaStreamPolicy = "Cut"
	QuotaStreamFinish QuotaStreamPolicy = "Finish"
)

// QuotaStore (kind QuotaStore, igw.dev/v1alpha1) says where quota counters
// live: in this process (Memory, the default without a QuotaStore) or in
// Redis, shared by every replica. At most one per file.
//
//	apiVersion: igw.dev/v1alpha1
//	kind: QuotaStore
//	metadata:
//	  name: quotas
//	spec:
//	  type: Redis                    # Memory | Redis
//	  redis:
//	    address: 127.0.0.1:6379
//	    timeout: 50ms                # per round trip
//	    keyPrefix: "igw:quota:"
//	  failureMode: FailOpen          # FailOpen: local limits while Redis is down; FailClose: 503
type QuotaStore struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec is the store.
	Spec QuotaStoreSpec `json:"spec,omitempty"`
}

// QuotaStoreSpec is where the counters live. After Parse Type and
// FailureMode are set, and Redis is set (with Timeout and KeyPrefix) when
// Type is Redis.
type QuotaStoreSpec struct {
	// Type is Memory (default) or Redis.
	Type QuotaStoreType `json:"type,omitempty"`

	// Redis is required when Type is Redis.
	Redis *RedisStore `json:"redis,omitempty"`

	// FailureMode applies while Redis cannot be reached: FailOpen (default)
	// admits against per-replica counters, FailClose refuses with 503.
	FailureMode QuotaFailureMode `json:"failureMode,omitempty"`
}

// RedisStore is how to reach Redis.
type RedisStore struct {
	// Address is host:port.
	Address string `json:"address"`
	// Timeout bounds one round trip (default 50ms).
	Timeout *metav1.Duration `json:"timeout,omitempty"`
	// KeyPrefix starts every key igw writes (default "igw:quota:").
	KeyPrefix string `json:"keyPrefix,omitempty"`
	// DB is the Redis database number (default 0).
	DB int32 `json:"db,omitempty"`
}

// QuotaStoreType is where counters live.
type QuotaStoreType string

// Quota store types.
const (
	QuotaStoreMemory QuotaStoreType = "Memory"
	QuotaStoreRedis  QuotaStoreType = "Redis"
)

// QuotaFailureMode is the behaviour while the quota store is unreachable;
// the names are InferencePool's failureMode names.
type QuotaFailureMode string

// Quota failure modes.
const (
	QuotaFailOpen  QuotaFailureMode = "FailOpen"
	QuotaFailClose QuotaFailureMode = "FailClose"
)
