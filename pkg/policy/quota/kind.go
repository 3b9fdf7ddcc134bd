package quota

import (
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/igw-dev/igw/pkg/config"
	"github.com/igw-dev/igw/pkg/policy/auth"
)

// Kinds of the documents that configure token quotas (igw.dev/v1alpha1).
// See docs/security.md.
const (
	KindQuotaPolicy = "QuotaPolicy"
	KindQuotaStore  = "QuotaStore"
)

// The kinds are functions, not package variables, so that no caller can
// change another's.

// PolicyKind declares the QuotaPolicy kind: token budgets per key, tenant
// and model. API keys and JWT grants name them (package auth refers to
// them by KindQuotaPolicy, which is auth.QuotaPolicyKind).
func PolicyKind() config.Kind {
	return config.Kind{
		Kind: KindQuotaPolicy, APIVersions: []string{config.IGWAPIVersion}, Named: true,
		New:      func() config.Object { return new(QuotaPolicy) },
		Validate: func(o config.Object, f *config.Fields) { validatePolicy(o.(*QuotaPolicy), f) },
	}
}

// StoreKind declares the QuotaStore kind: where quota counters live
// (memory or Redis). At most one per file; a file without one gets the
// in-memory store.
func StoreKind() config.Kind {
	return config.Kind{
		Kind: KindQuotaStore, APIVersions: []string{config.IGWAPIVersion}, Singleton: true,
		New: func() config.Object { return new(QuotaStore) },
		Default: func() config.Object {
			qs := &QuotaStore{}
			qs.APIVersion, qs.Kind = config.IGWAPIVersion, KindQuotaStore
			defaultStore(&qs.Spec)
			return qs
		},
		Validate: func(o config.Object, f *config.Fields) { validateStore(o.(*QuotaStore), f) },
	}
}

// Policies are the QuotaPolicies of cfg, in document order.
func Policies(cfg *config.Config) []*QuotaPolicy { return config.All[*QuotaPolicy](cfg) }

// StoreConfig is the QuotaStore of cfg (with the kind registered, the
// in-memory default when the file has none), or nil.
func StoreConfig(cfg *config.Config) *QuotaStore {
	s, _ := config.First[*QuotaStore](cfg)
	return s
}

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
	Redis *RedisStoreSpec `json:"redis,omitempty"`

	// FailureMode applies while Redis cannot be reached: FailOpen (default)
	// admits against per-replica counters, FailClose refuses with 503.
	FailureMode QuotaFailureMode `json:"failureMode,omitempty"`
}

// RedisStoreSpec is how to reach Redis.
type RedisStoreSpec struct {
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

// Defaults and bounds of the quota kinds.
const (
	DefaultQuotaOutputTokens   = DefaultOutputTokens
	DefaultQuotaRedisTimeout   = 50 * time.Millisecond
	DefaultQuotaRedisKeyPrefix = "igw:quota:"
	MaxQuotaWindow             = 31 * 24 * time.Hour
)

// maxQuotaLimits bounds the windows of one QuotaPolicy.
const maxQuotaLimits = 8

func validatePolicy(q *QuotaPolicy, f *config.Fields) {
	s := &q.Spec
	switch s.Scope {
	case "":
		s.Scope = QuotaScopeTenant
	case QuotaScopeKey, QuotaScopeTenant:
	default:
		f.Errorf("spec.scope", "must be %s or %s, not %q", QuotaScopeKey, QuotaScopeTenant, s.Scope)
	}
	auth.ValidateModelPatterns(f, "spec.models", s.Models)
	switch n := len(s.Limits); {
	case n == 0:
		f.Errorf("spec.limits", "required: at least one window with a limit")
	case n > maxQuotaLimits:
		f.Errorf("spec.limits", "at most %d windows, not %d", maxQuotaLimits, n)
	}
	seen := map[time.Duration]int{}
	for i, l := range s.Limits {
		lf := fmt.Sprintf("spec.limits[%d]", i)
		switch w := l.Window.Duration; {
		case w < time.Second || w > MaxQuotaWindow:
			f.Errorf(lf+".window", "must be 1s..%s, not %s", MaxQuotaWindow, w)
		case w%time.Second != 0:
			f.Errorf(lf+".window", "must be a whole number of seconds, not %s", w)
		}
		if j, dup := seen[l.Window.Duration]; dup {
			f.Errorf(lf+".window", "duplicate window %s (also limits[%d]); put its limits in one entry", l.Window.Duration, j)
		}
		seen[l.Window.Duration] = i
		set := 0
		for name, n := range map[string]*int64{"requests": l.Requests, "inputTokens": l.InputTokens, "outputTokens": l.OutputTokens, "totalTokens": l.TotalTokens} {
			if n == nil {
				continue
			}
			set++
			if *n <= 0 {
				f.Errorf(lf+"."+name, "must be positive, not %d (leave it out for no limit)", *n)
			}
		}
		if set == 0 {
			f.Errorf(lf, "set at least one of requests, inputTokens, outputTokens, totalTokens")
		}
	}
	if s.DefaultOutputTokens == nil {
		n := int32(DefaultQuotaOutputTokens)
		s.DefaultOutputTokens = &n
	}
	if *s.DefaultOutputTokens < 0 {
		f.Errorf("spec.defaultOutputTokens", "must not be negative, not %d", *s.DefaultOutputTokens)
	}
	switch s.Stream {
	case "":
		s.Stream = QuotaStreamFinish
	case QuotaStreamCut, QuotaStreamFinish:
	default:
		f.Errorf("spec.stream", "must be %s or %s, not %q", QuotaStreamCut, QuotaStreamFinish, s.Stream)
	}
}

// defaultStore fills in every unset QuotaStore field.
func defaultStore(s *QuotaStoreSpec) {
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

func validateStore(q *QuotaStore, f *config.Fields) {
	s := &q.Spec
	defaultStore(s)
	switch s.Type {
	case QuotaStoreMemory:
		if s.Redis != nil {
			f.Errorf("spec.redis", "only for type %s", QuotaStoreRedis)
		}
	case QuotaStoreRedis:
		if s.Redis == nil {
			f.Errorf("spec.redis", "required for type %s", QuotaStoreRedis)
			break
		}
		f.HostPort("spec.redis.address", s.Redis.Address)
		f.PositiveDuration("spec.redis.timeout", s.Redis.Timeout.Duration)
		if s.Redis.DB < 0 {
			f.Errorf("spec.redis.db", "must not be negative, not %d", s.Redis.DB)
		}
	default:
		f.Errorf("spec.type", "must be %s or %s, not %q", QuotaStoreMemory, QuotaStoreRedis, s.Type)
	}
	switch s.FailureMode {
	case QuotaFailOpen, QuotaFailClose:
	default:
		f.Errorf("spec.failureMode", "must be %s or %s, not %q", QuotaFailOpen, QuotaFailClose, s.FailureMode)
	}
}
