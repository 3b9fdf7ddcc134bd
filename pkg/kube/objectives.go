package kube

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/igw-dev/igw/api/v1alpha2"
	"github.com/igw-dev/igw/pkg/config"
	"github.com/igw-dev/igw/pkg/datastore"
)

// refersToPool reports whether a poolRef names an InferencePool (the only
// kind igw serves; group and kind are defaulted by the CRD) and returns the
// datastore key of that pool in namespace.
func refersToPool(namespace string, ref v1alpha2.PoolObjectReference) (string, bool) {
	if (ref.Group != "" && ref.Group != v1alpha2.PoolGroup) || (ref.Kind != "" && ref.Kind != v1alpha2.PoolKind) || ref.Name == "" {
		return "", false
	}
	return config.NamespacedName(namespace, string(ref.Name)), true
}

// Groups says which API groups of the objective and rewrite kinds the API
// server serves: the seeds' inference.networking.x-k8s.io, llm-d's
// llm-d.ai, or both (REFERENCE.md §8). Objects of both are read alike.
type Groups struct{ Seeds, LLMD bool }

// Any reports whether either group is served.
func (g Groups) Any() bool { return g.Seeds || g.LLMD }

// ListObjectives lists the InferenceObjectives of every served group.
func ListObjectives(ctx context.Context, r client.Reader, g Groups, opts ...client.ListOption) ([]v1alpha2.InferenceObjective, error) {
	var out []v1alpha2.InferenceObjective
	if g.Seeds {
		var l v1alpha2.InferenceObjectiveList
		if err := r.List(ctx, &l, opts...); err != nil {
			return nil, fmt.Errorf("kube: listing InferenceObjectives: %w", err)
		}
		out = l.Items
	}
	if g.LLMD {
		items, err := listConverted[v1alpha2.InferenceObjective](ctx, r, v1alpha2.LLMDGroupVersion.WithKind("InferenceObjectiveList"), opts...)
		if err != nil {
			return nil, err
		}
		out = append(out, items...)
	}
	return out, nil
}

// ListRewrites lists the InferenceModelRewrites of every served group.
func ListRewrites(ctx context.Context, r client.Reader, g Groups, opts ...client.ListOption) ([]v1alpha2.InferenceModelRewrite, error) {
	var out []v1alpha2.InferenceModelRewrite
	if g.Seeds {
		var l v1alpha2.InferenceModelRewriteList
		if err := r.List(ctx, &l, opts...); err != nil {
			return nil, fmt.Errorf("kube: listing InferenceModelRewrites: %w", err)
		}
		out = l.Items
	}
	if g.LLMD {
		items, err := listConverted[v1alpha2.InferenceModelRewrite](ctx, r, v1alpha2.LLMDGroupVersion.WithKind("InferenceModelRewriteList"), opts...)
		if err != nil {
			return nil, err
		}
		out = append(out, items...)
	}
	return out, nil
}

// listConverted lists a kind of llm-d.ai as unstructured objects and
// converts them to the seeds' Go type of the same schema.
func listConverted[T any](ctx context.Context, r client.Reader, listGVK schema.GroupVersionKind, opts ...client.ListOption) ([]T, error) {
	ul := &unstructured.UnstructuredList{}
	ul.SetGroupVersionKind(listGVK)
	if err := r.List(ctx, ul, opts...); err != nil {
		return nil, fmt.Errorf("kube: listing %s: %w", listGVK, err)
	}
	out := make([]T, 0, len(ul.Items))
	for i := range ul.Items {
		var t T
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(ul.Items[i].Object, &t); err != nil {
			return nil, fmt.Errorf("kube: %s %s/%s: %w", listGVK.Kind, ul.Items[i].GetNamespace(), ul.Items[i].GetName(), err)
		}
		out = append(out, t)
	}
	return out, nil
}

// objectiveReconciler keeps the datastore's objective priorities equal to
// the InferenceObjectives of the namespace.
type objectiveReconciler struct {
	reader    client.Reader
	groups    Groups
	store     *datastore.Store
	log       *slog.Logger
	namespace string
}

var _ reconcile.Reconciler = (*objectiveReconciler)(nil)

// Reconcile recomputes every pool's objectives from the cache.
func (r *objectiveReconciler) Reconcile(ctx context.Context, _ reconcile.Request) (reconcile.Result, error) {
	items, err := ListObjectives(ctx, r.reader, r.groups, client.InNamespace(r.namespace))
	if err != nil {
		return reconcile.Result{}, err
	}
	byPool := map[string]map[string]int32{}
	latency := map[string]map[string]datastore.LatencyObjective{}
	for i := range items {
		o := &items[i]
		pool, ok := refersToPool(o.Namespace, o.Spec.PoolRef)
		if !ok || o.DeletionTimestamp != nil {
			continue
		}
		if byPool[pool] == nil {
			byPool[pool] = map[string]int32{}
		}
		byPool[pool][o.Name] = o.Spec.EffectivePriority()
		ttft, tpot, err := o.LatencyObjectives()
		if err != nil {
			// The objective keeps its priority; a bad annotation only
			// loses its defaults, and says so.
			r.log.Warn("InferenceObjective latency annotations ignored", "objective", o.Namespace+"/"+o.Name, "error", err)
		} else if ttft > 0 || tpot > 0 {
			if latency[pool] == nil {
				latency[pool] = map[string]datastore.LatencyObjective{}
			}
			latency[pool][o.Name] = datastore.LatencyObjective{TTFT: ttft, TPOT: tpot}
		}
	}
	r.store.SetObjectives(byPool)
	r.store.SetLatencyObjectives(latency)
	r.log.Debug("objectives", "namespace", r.namespace, "count", len(items))
	return reconcile.Result{}, nil
}

// rewriteReconciler keeps the datastore's model rewrites equal to the
// InferenceModelRewrites of the namespace.
type rewriteReconciler struct {
	reader    client.Reader
	groups    Groups
	store     *datastore.Store
	log       *slog.Logger
	namespace string
}

var _ reconcile.Reconciler = (*rewriteReconciler)(nil)

// Reconcile recomputes every pool's rewrite rules from the cache, in the
// precedence REFERENCE §1 gives: oldest object first (name breaks ties of
// the one-second creation timestamps), then rule order.
func (r *rewriteReconciler) Reconcile(ctx context.Context, _ reconcile.Request) (reconcile.Result, error) {
	items, err := ListRewrites(ctx, r.reader, r.groups, client.InNamespace(r.namespace))
	if err != nil {
		return reconcile.Result{}, err
	}
	slices.SortFunc(items, func(a, b v1alpha2.InferenceModelRewrite) int {
		if c := a.CreationTimestamp.Compare(b.CreationTimestamp.Time); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})
	byPool := map[string][]datastore.RewriteRule{}
	for i := range items {
		rw := &items[i]
		pool, ok := refersToPool(rw.Namespace, rw.Spec.PoolRef)
		if !ok || rw.DeletionTimestamp != nil {
			continue
		}
		byPool[pool] = append(byPool[pool], datastore.RewriteRules(rw)...)
	}
	r.store.SetRewrites(byPool)
	r.log.Debug("model rewrites", "namespace", r.namespace, "count", len(items))
	return reconcile.Result{}, nil
}
