package static

import (
	v1 "github.com/igw-dev/igw/api/v1"
	"github.com/igw-dev/igw/api/v1alpha2"
	"github.com/igw-dev/igw/pkg/config"
)

// Kinds of the Kubernetes resources a standalone file declares, with
// their Kubernetes names.
const (
	KindInferencePool         = "InferencePool"
	KindInferenceObjective    = "InferenceObjective"
	KindInferenceModelRewrite = "InferenceModelRewrite"
)

// The kinds are functions, not package variables, so that no caller can
// change another's.

// InferencePoolKind declares the InferencePool kind: a set of model
// servers selected by labels, on one or more target ports.
func InferencePoolKind() config.Kind {
	return config.Kind{
		Kind: KindInferencePool, APIVersions: []string{v1.GroupVersion.String()}, Named: true,
		New:      func() config.Object { return new(v1.InferencePool) },
		Validate: func(o config.Object, f *config.Fields) { validatePool(o.(*v1.InferencePool), f) },
		Check:    checkPools,
	}
}

// InferenceObjectiveKind declares the InferenceObjective kind: a request
// priority for a pool.
func InferenceObjectiveKind() config.Kind {
	return config.Kind{
		Kind: KindInferenceObjective, APIVersions: []string{v1alpha2.GroupVersion.String(), v1alpha2.LLMDGroupVersion.String()}, Named: true,
		New: func() config.Object { return new(v1alpha2.InferenceObjective) },
		Validate: func(o config.Object, f *config.Fields) {
			obj := o.(*v1alpha2.InferenceObjective)
			validatePoolRef(f, "spec.poolRef", &obj.Spec.PoolRef)
			if _, _, err := obj.LatencyObjectives(); err != nil {
				f.Error("metadata.annotations", err)
			}
		},
		Check: func(cfg *config.Config, r *config.Report) {
			for _, o := range Objectives(cfg) {
				checkPoolRef(cfg, r.In(o), o.Namespace, o.Spec.PoolRef)
			}
		},
	}
}

// InferenceModelRewriteKind declares the InferenceModelRewrite kind:
// weighted model-name rewrites for a pool.
func InferenceModelRewriteKind() config.Kind {
	return config.Kind{
		Kind: KindInferenceModelRewrite, APIVersions: []string{v1alpha2.GroupVersion.String(), v1alpha2.LLMDGroupVersion.String()}, Named: true,
		New:      func() config.Object { return new(v1alpha2.InferenceModelRewrite) },
		Validate: func(o config.Object, f *config.Fields) { validateRewrite(o.(*v1alpha2.InferenceModelRewrite), f) },
		Check: func(cfg *config.Config, r *config.Report) {
			for _, rw := range Rewrites(cfg) {
				checkPoolRef(cfg, r.In(rw), rw.Namespace, rw.Spec.PoolRef)
			}
		},
	}
}

// ModelServerKind declares the ModelServer kind.
func ModelServerKind() config.Kind {
	return config.Kind{
		Kind: KindModelServer, APIVersions: []string{config.IGWAPIVersion}, Named: true,
		New:      func() config.Object { return new(ModelServer) },
		Validate: func(o config.Object, f *config.Fields) { validateModelServer(o.(*ModelServer), f) },
	}
}

// Pools are the file's InferencePools, in document order.
func Pools(cfg *config.Config) []*v1.InferencePool { return config.All[*v1.InferencePool](cfg) }

// Pool returns the InferencePool with this namespace ("" for the default)
// and name, or nil.
func Pool(cfg *config.Config, namespace, name string) *v1.InferencePool {
	return config.Find[*v1.InferencePool](cfg, namespace, name)
}

// ModelServers are the file's ModelServers, in document order.
func ModelServers(cfg *config.Config) []*ModelServer { return config.All[*ModelServer](cfg) }

// Objectives are the file's InferenceObjectives, in document order.
func Objectives(cfg *config.Config) []*v1alpha2.InferenceObjective {
	return config.All[*v1alpha2.InferenceObjective](cfg)
}

// Rewrites are the file's InferenceModelRewrites, in document order.
func Rewrites(cfg *config.Config) []*v1alpha2.InferenceModelRewrite {
	return config.All[*v1alpha2.InferenceModelRewrite](cfg)
}

// ObjectivesFor returns the InferenceObjectives that refer to pool, in
// document order.
func ObjectivesFor(cfg *config.Config, pool *v1.InferencePool) []*v1alpha2.InferenceObjective {
	var out []*v1alpha2.InferenceObjective
	for _, o := range Objectives(cfg) {
		if o.Namespace == pool.Namespace && string(o.Spec.PoolRef.Name) == pool.Name {
			out = append(out, o)
		}
	}
	return out
}

// RewritesFor returns the InferenceModelRewrites that refer to pool, in
// document order (which, in a file, stands for "oldest first" in the
// rewrite precedence rules).
func RewritesFor(cfg *config.Config, pool *v1.InferencePool) []*v1alpha2.InferenceModelRewrite {
	var out []*v1alpha2.InferenceModelRewrite
	for _, r := range Rewrites(cfg) {
		if r.Namespace == pool.Namespace && string(r.Spec.PoolRef.Name) == pool.Name {
			out = append(out, r)
		}
	}
	return out
}

// PoolEndpoints resolves pool's endpoints from the file's ModelServers; see
// ResolveEndpoints.
func PoolEndpoints(cfg *config.Config, pool *v1.InferencePool) []Endpoint {
	return ResolveEndpoints(pool, ModelServers(cfg))
}
