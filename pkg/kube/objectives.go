package kube

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"

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

// objectiveReconciler keeps the datastore's objective priorities equal to
// the InferenceObjectives of the namespace.
type objectiveReconciler struct {
	reader    client.Reader
	store     *datastore.Store
	log       *slog.Logger
	namespace string
}

var _ reconcile.Reconciler = (*objectiveReconciler)(nil)

// Reconcile recomputes every pool's objectives from the cache.
func (r *objectiveReconciler) Reconcile(ctx context.Context, _ reconcile.Request) (reconcile.Result, error) {
	var list v1alpha2.InferenceObjectiveList
	if err := r.reader.List(ctx, &list, client.InNamespace(r.namespace)); err != nil {
		return reconcile.Result{}, fmt.Errorf("kube: listing InferenceObjectives: %w", err)
	}
	byPool := map[string]map[string]int32{}
	latency := map[string]map[string]datastore.LatencyObjective{}
	for i := range list.Items {
		o := &list.Items[i]
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
	r.log.Debug("objectives", "namespace", r.namespace, "count", len(list.Items))
	return reconcile.Result{}, nil
}

// rewriteReconciler keeps the datastore's model rewrites equal to the
// InferenceModelRewrites of the namespace.
type rewriteReconciler struct {
	reader    client.Reader
	store     *datastore.Store
	log       *slog.Logger
	namespace string
}

var _ reconcile.Reconciler = (*rewriteReconciler)(nil)

// Reconcile recomputes every pool's rewrite rules from the cache, in the
// precedence REFERENCE §1 gives: oldest object first (name breaks ties of
// the one-second creation timestamps), then rule order.
func (r *rewriteReconciler) Reconcile(ctx context.Context, _ reconcile.Request) (reconcile.Result, error) {
	var list v1alpha2.InferenceModelRewriteList
	if err := r.reader.List(ctx, &list, client.InNamespace(r.namespace)); err != nil {
		return reconcile.Result{}, fmt.Errorf("kube: listing InferenceModelRewrites: %w", err)
	}
	items := list.Items
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
