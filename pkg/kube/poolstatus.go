package kube

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	v1 "github.com/igw-dev/igw/api/v1"
)

// PickerControllerName is the controllerName of the InferencePool
// status.parents entries igw epp writes: one per Gateway whose HTTPRoutes
// send to the pool it picks for. The Gateway's own controller writes its
// entries beside them under its name.
const PickerControllerName = "igw.dev/endpoint-picker"

// PoolConditions are the conditions igw reports for a pool under one
// parent (REFERENCE.md §8): Accepted (or HTTPRouteNotAccepted when no route
// to it through that parent is served) and ResolvedRefs. Both igw serve
// --kubernetes and igw epp write them.
func PoolConditions(accepted bool, generation int64, acceptedMessage, resolvedMessage string) []metav1.Condition {
	st, reason := metav1.ConditionTrue, string(v1.InferencePoolReasonAccepted)
	if !accepted {
		st, reason = metav1.ConditionFalse, string(v1.InferencePoolReasonHTTPRouteNotAccepted)
	}
	return []metav1.Condition{
		{Type: string(v1.InferencePoolConditionAccepted), Status: st, Reason: reason, Message: acceptedMessage, ObservedGeneration: generation},
		{Type: string(v1.InferencePoolConditionResolvedRefs), Status: metav1.ConditionTrue, Reason: string(v1.InferencePoolReasonResolvedRefs),
			Message: resolvedMessage, ObservedGeneration: generation},
	}
}

// SetPoolParents makes pool's status.parents hold, for controller, exactly
// one entry per gateway in parents (with conditions from conds), keeping
// other controllers' entries and the transition times of unchanged
// conditions. It reports whether anything changed.
func SetPoolParents(pool *v1.InferencePool, controller string, parents []types.NamespacedName, conds func(types.NamespacedName) []metav1.Condition) bool {
	before := pool.Status.DeepCopy()
	var out []v1.ParentStatus
	for _, ps := range pool.Status.Parents {
		if string(ps.ControllerName) != controller {
			out = append(out, ps)
		}
	}
	slices.SortFunc(parents, func(a, b types.NamespacedName) int { return strings.Compare(a.String(), b.String()) })
	for _, g := range slices.Compact(parents) {
		group := v1.Group(gwv1.GroupName)
		ref := v1.ParentReference{Group: &group, Kind: "Gateway", Name: v1.ObjectName(g.Name), Namespace: v1.Namespace(g.Namespace)}
		ps := v1.ParentStatus{ParentRef: ref, ControllerName: v1.ControllerName(controller)}
		for _, o := range before.Parents {
			if string(o.ControllerName) == controller && equality.Semantic.DeepEqual(o.ParentRef, ref) {
				ps.Conditions = slices.Clone(o.Conditions)
			}
		}
		for _, c := range conds(g) {
			meta.SetStatusCondition(&ps.Conditions, c)
		}
		out = append(out, ps)
	}
	pool.Status.Parents = out
	return !equality.Semantic.DeepEqual(*before, pool.Status)
}

// poolStatusReconciler writes igw epp's status.parents entries of its pool:
// one per Gateway that an HTTPRoute of the pool's namespace, naming the pool
// in a backendRef, has as a parent. It runs on the leader only.
type poolStatusReconciler struct {
	reader client.Reader
	writer client.Client
	pool   types.NamespacedName
	log    *slog.Logger
}

var _ reconcile.Reconciler = (*poolStatusReconciler)(nil)

// Reconcile recomputes the pool's parents from the HTTPRoutes in the cache.
func (r *poolStatusReconciler) Reconcile(ctx context.Context, _ reconcile.Request) (reconcile.Result, error) {
	var pool v1.InferencePool
	if err := r.reader.Get(ctx, r.pool, &pool); err != nil {
		if apierrors.IsNotFound(err) {
			return reconcile.Result{}, nil
		}
		return reconcile.Result{}, fmt.Errorf("kube: reading InferencePool %s: %w", r.pool, err)
	}
	var routes gwv1.HTTPRouteList
	if err := r.reader.List(ctx, &routes, client.InNamespace(r.pool.Namespace)); err != nil {
		return reconcile.Result{}, fmt.Errorf("kube: listing HTTPRoutes: %w", err)
	}
	parents := RouteParentsOfPool(routes.Items, r.pool)
	changed := SetPoolParents(&pool, PickerControllerName, parents, func(types.NamespacedName) []metav1.Condition {
		return PoolConditions(true, pool.Generation, "igw epp picks this pool's endpoints for requests through this Gateway",
			"igw epp serves as the pool's endpoint picker")
	})
	if !changed {
		return reconcile.Result{}, nil
	}
	if err := r.writer.Status().Update(ctx, &pool); err != nil {
		return reconcile.Result{}, fmt.Errorf("kube: writing InferencePool %s status: %w", r.pool, err)
	}
	r.log.Info("InferencePool status written", "pool", r.pool.String(), "parents", len(parents))
	return reconcile.Result{}, nil
}

// RouteParentsOfPool are the Gateways of the routes that send to pool.
func RouteParentsOfPool(routes []gwv1.HTTPRoute, pool types.NamespacedName) []types.NamespacedName {
	var out []types.NamespacedName
	for i := range routes {
		rt := &routes[i]
		if rt.DeletionTimestamp != nil || !routeSendsTo(rt, pool) {
			continue
		}
		for _, ref := range rt.Spec.ParentRefs {
			if (ref.Group != nil && string(*ref.Group) != gwv1.GroupName) || (ref.Kind != nil && string(*ref.Kind) != "Gateway") {
				continue
			}
			ns := rt.Namespace
			if ref.Namespace != nil {
				ns = string(*ref.Namespace)
			}
			out = append(out, types.NamespacedName{Namespace: ns, Name: string(ref.Name)})
		}
	}
	return out
}

func routeSendsTo(rt *gwv1.HTTPRoute, pool types.NamespacedName) bool {
	for _, rule := range rt.Spec.Rules {
		for _, b := range rule.BackendRefs {
			ns := rt.Namespace
			if b.Namespace != nil {
				ns = string(*b.Namespace)
			}
			if b.Group != nil && string(*b.Group) == v1.GroupVersion.Group && b.Kind != nil && string(*b.Kind) == "InferencePool" &&
				string(b.Name) == pool.Name && ns == pool.Namespace {
				return true
			}
		}
	}
	return false
}
