package config

import (
	v1 "github.com/igw-dev/igw/api/v1"
	"github.com/igw-dev/igw/api/v1alpha2"
)

// Config is one loaded, defaulted and validated standalone configuration
// file. It is immutable once returned: a reload produces a new Config, so a
// request in flight keeps the one it started with. Callers must not modify
// it.
//
// Objects appear in document order. Every object's namespace is set
// (DefaultNamespace when the file left it out) and every defaulted field is
// filled in, so consumers never re-apply defaults.
type Config struct {
	// Source is the name the file was parsed under (its path, for Load).
	Source string
	// Digest is the hex SHA-256 of the file's bytes; it identifies a
	// configuration version in logs and lets the Watcher skip unchanged
	// content.
	Digest string
	// SideFiles are the other files the configuration was built from (keys
	// files, JWKS files), with the digest of the content read, so that the
	// Watcher reloads when one of them changes.
	SideFiles []SideFile

	// Gateway configures the listeners. It is never nil: without a Gateway
	// document it holds the defaults.
	Gateway *Gateway

	// Pools are the InferencePools (inference.networking.k8s.io/v1).
	Pools []*v1.InferencePool
	// ModelServers are the static model servers the pools select.
	ModelServers []*ModelServer
	// Routes map requests to pools and URLs.
	Routes []*Route
	// Objectives are the InferenceObjectives
	// (inference.networking.x-k8s.io/v1alpha2).
	Objectives []*v1alpha2.InferenceObjective
	// Rewrites are the InferenceModelRewrites
	// (inference.networking.x-k8s.io/v1alpha2).
	Rewrites []*v1alpha2.InferenceModelRewrite

	// APIKeys are the API key sets; with AuthPolicy they decide whether
	// authentication is on (see AuthEnabled).
	APIKeys []*APIKeys
	// AuthPolicy configures JWT validation, or is nil.
	AuthPolicy *AuthPolicy
	// Guards are the RequestGuards routes refer to.
	Guards []*RequestGuard
	// Quotas are the QuotaPolicies keys refer to.
	Quotas []*QuotaPolicy
	// QuotaStore says where quota counters live. It is never nil: without
	// a QuotaStore document it is the in-memory store.
	QuotaStore *QuotaStore

	// EndpointPickerConfig is the EndpointPickerConfig document exactly as
	// written (YAML), or nil when the file has none and the default
	// scheduling profile applies. Only its apiVersion and kind are checked
	// here: the scheduler owns its schema (scheduling.ParseEndpointPickerConfig),
	// and this package must not depend on the scheduler.
	EndpointPickerConfig []byte
	// EndpointPickerConfigSource locates that document for error messages,
	// e.g. `standalone.yaml: document 7 (EndpointPickerConfig)`; a caller
	// prefixes the scheduler's errors with it so they name the file and
	// document like every other configuration error.
	EndpointPickerConfigSource string
}

// SideFile is a file a document names, as read at load.
type SideFile struct {
	// Path is the path read (relative ones resolved against the
	// configuration file's directory).
	Path string
	// Digest is the hex SHA-256 of the content read.
	Digest string
}

// AuthEnabled reports whether every inference request must carry a
// credential: the file has an APIKeys document or an AuthPolicy.
func (c *Config) AuthEnabled() bool {
	return len(c.APIKeys) > 0 || c.AuthPolicy != nil
}

// Guard returns the RequestGuard with this namespace and name, or nil.
func (c *Config) Guard(namespace, name string) *RequestGuard {
	namespace = orDefaultNamespace(namespace)
	for _, g := range c.Guards {
		if g.Namespace == namespace && g.Name == name {
			return g
		}
	}
	return nil
}

// QuotaPolicy returns the QuotaPolicy with this namespace and name, or nil.
func (c *Config) QuotaPolicy(namespace, name string) *QuotaPolicy {
	namespace = orDefaultNamespace(namespace)
	for _, q := range c.Quotas {
		if q.Namespace == namespace && q.Name == name {
			return q
		}
	}
	return nil
}

// Pool returns the InferencePool with this namespace and name, or nil.
func (c *Config) Pool(namespace, name string) *v1.InferencePool {
	namespace = orDefaultNamespace(namespace)
	for _, p := range c.Pools {
		if p.Namespace == namespace && p.Name == name {
			return p
		}
	}
	return nil
}

// ObjectivesFor returns the InferenceObjectives that refer to pool, in
// document order.
func (c *Config) ObjectivesFor(pool *v1.InferencePool) []*v1alpha2.InferenceObjective {
	var out []*v1alpha2.InferenceObjective
	for _, o := range c.Objectives {
		if o.Namespace == pool.Namespace && string(o.Spec.PoolRef.Name) == pool.Name {
			out = append(out, o)
		}
	}
	return out
}

// RewritesFor returns the InferenceModelRewrites that refer to pool, in
// document order (which, in a file, stands for "oldest first" in the
// rewrite precedence rules).
func (c *Config) RewritesFor(pool *v1.InferencePool) []*v1alpha2.InferenceModelRewrite {
	var out []*v1alpha2.InferenceModelRewrite
	for _, r := range c.Rewrites {
		if r.Namespace == pool.Namespace && string(r.Spec.PoolRef.Name) == pool.Name {
			out = append(out, r)
		}
	}
	return out
}

// PoolEndpoints resolves pool's endpoints from the file's ModelServers; see
// ResolveEndpoints.
func (c *Config) PoolEndpoints(pool *v1.InferencePool) []Endpoint {
	return ResolveEndpoints(pool, c.ModelServers)
}

func orDefaultNamespace(ns string) string {
	if ns == "" {
		return DefaultNamespace
	}
	return ns
}

// NamespacedName renders namespace/name, the form used for pools in the
// datastore and in messages.
func NamespacedName(namespace, name string) string {
	return orDefaultNamespace(namespace) + "/" + name
}
