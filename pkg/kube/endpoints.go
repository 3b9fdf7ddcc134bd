package kube

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"slices"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	v1 "github.com/igw-dev/igw/api/v1"
	"github.com/igw-dev/igw/pkg/datastore"
)

// endpointReconciler keeps one pool's endpoints equal to its Ready pods ×
// target ports. With a fixed selector it needs no InferencePool object;
// otherwise the selector and ports are read from the pool on every call, so
// an edited pool takes effect like a pod change does.
type endpointReconciler struct {
	reader    client.Reader
	store     *datastore.Store
	log       *slog.Logger
	pool      types.NamespacedName
	storeName string // namespace/name, the datastore key
	// fixed is the selector and ports of --endpoint-selector mode; nil
	// means "read the InferencePool".
	fixed *v1.InferencePoolSpec
}

var _ reconcile.Reconciler = (*endpointReconciler)(nil)

// Reconcile ignores which object changed: it recomputes the pool's whole
// endpoint set from the cache.
func (r *endpointReconciler) Reconcile(ctx context.Context, _ reconcile.Request) (reconcile.Result, error) {
	spec := r.fixed
	if spec == nil {
		var pool v1.InferencePool
		if err := r.reader.Get(ctx, r.pool, &pool); err != nil {
			if apierrors.IsNotFound(err) {
				if r.store.Pool(r.storeName) != nil {
					r.log.Info("InferencePool deleted; no endpoints", "pool", r.storeName)
				}
				r.store.DeletePool(r.storeName)
				return reconcile.Result{}, nil
			}
			return reconcile.Result{}, fmt.Errorf("kube: reading InferencePool %s: %w", r.pool, err)
		}
		spec = &pool.Spec
	}
	specs, err := r.endpoints(ctx, spec)
	if err != nil {
		return reconcile.Result{}, err
	}
	r.store.SetPool(r.storeName, specs)
	r.log.Debug("pool endpoints", "pool", r.storeName, "endpoints", len(specs))
	return reconcile.Result{}, nil
}

// endpoints lists the pool's pods from the cache and turns the Ready ones
// into endpoint specs. A pool without matchLabels selects nothing, as in
// static configuration: an empty selector selecting every pod of the
// namespace would be a dangerous default.
func (r *endpointReconciler) endpoints(ctx context.Context, spec *v1.InferencePoolSpec) ([]datastore.EndpointSpec, error) {
	if len(spec.Selector.MatchLabels) == 0 {
		return nil, nil
	}
	var pods corev1.PodList
	if err := r.reader.List(ctx, &pods, client.InNamespace(r.pool.Namespace),
		client.MatchingLabelsSelector{Selector: labels.SelectorFromSet(spec.Selector.MatchLabels)}); err != nil {
		return nil, fmt.Errorf("kube: listing pods of %s: %w", r.storeName, err)
	}
	return PodEndpoints(pods.Items, spec.TargetPorts), nil
}

// PodEndpoints is the endpoint set of pods on ports: one endpoint
// "<pod>:<port>" at "<podIP>:<port>" per serving pod and port, in pod-name
// then port order. It is the whole mapping from pods to endpoints, shared by
// the reconciler and its tests.
func PodEndpoints(pods []corev1.Pod, ports []v1.Port) []datastore.EndpointSpec {
	var out []datastore.EndpointSpec
	for i := range pods {
		p := &pods[i]
		if !Serving(p) {
			continue
		}
		engine := datastore.EngineFromLabels(p.Labels)
		for _, tp := range ports {
			port := strconv.Itoa(int(tp.Number))
			out = append(out, datastore.EndpointSpec{
				Name:    p.Name + ":" + port,
				Address: net.JoinHostPort(p.Status.PodIP, port),
				Engine:  engine,
				Labels:  maps.Clone(p.Labels),
			})
		}
	}
	slices.SortFunc(out, func(a, b datastore.EndpointSpec) int {
		if a.Name < b.Name {
			return -1
		}
		if a.Name > b.Name {
			return 1
		}
		return 0
	})
	return out
}

// Serving reports whether a pod may receive requests: its PodReady
// condition is true, it is not being deleted (a terminating pod drains,
// even while its readiness probe still passes) and it has an IP.
func Serving(p *corev1.Pod) bool {
	if p.DeletionTimestamp != nil || p.Status.PodIP == "" {
		return false
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}
