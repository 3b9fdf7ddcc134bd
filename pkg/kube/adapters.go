package kube

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/yaml"

	"github.com/igw-dev/igw/pkg/datastore"
)

// Label and data keys of the body-based router's ConfigMaps (REFERENCE §3).
const (
	// BBRManagedLabel marks a ConfigMap as an adapter mapping for igw bbr;
	// its value must be "true".
	BBRManagedLabel = "inference.networking.k8s.io/bbr-managed"
	// BBRBaseModelKey is the data key naming the base model.
	BBRBaseModelKey = "baseModel"
	// BBRAdaptersKey is the data key listing the base model's LoRA adapters,
	// as a YAML list (block or flow style).
	BBRAdaptersKey = "adapters"
)

// adapterReconciler keeps the body-based router's adapter map equal to the
// bbr-managed ConfigMaps of the namespace.
type adapterReconciler struct {
	reader    client.Reader
	set       func(*datastore.AdapterMap)
	log       *slog.Logger
	namespace string
}

var _ reconcile.Reconciler = (*adapterReconciler)(nil)

// Reconcile rebuilds the whole map from the cache. A ConfigMap that cannot
// be read is left out (and logged) so one bad object does not take every
// mapping away; a conflict between ConfigMaps (one adapter under two base
// models) keeps the map in force, since any choice would be a guess.
func (r *adapterReconciler) Reconcile(ctx context.Context, _ reconcile.Request) (reconcile.Result, error) {
	var list corev1.ConfigMapList
	if err := r.reader.List(ctx, &list, client.InNamespace(r.namespace), client.MatchingLabels{BBRManagedLabel: "true"}); err != nil {
		return reconcile.Result{}, fmt.Errorf("kube: listing bbr-managed ConfigMaps: %w", err)
	}
	// Name order, so that which ConfigMap a conflict error names does not
	// depend on the cache's map iteration.
	slices.SortFunc(list.Items, func(a, b corev1.ConfigMap) int { return strings.Compare(a.Name, b.Name) })
	var entries []datastore.AdapterEntry
	for i := range list.Items {
		cm := &list.Items[i]
		if cm.DeletionTimestamp != nil {
			continue
		}
		e, err := AdapterEntryOf(cm)
		if err != nil {
			r.log.Error("bbr ConfigMap ignored", "configmap", cm.Namespace+"/"+cm.Name, "err", err)
			continue
		}
		entries = append(entries, e)
	}
	m, err := datastore.NewAdapterMap(entries)
	if err != nil {
		r.log.Error("bbr ConfigMaps conflict; keeping the adapter map in force", "namespace", r.namespace, "err", err)
		return reconcile.Result{}, nil
	}
	r.set(m)
	r.log.Info("adapter map updated", "namespace", r.namespace, "configmaps", len(entries))
	return reconcile.Result{}, nil
}

// AdapterEntryOf reads one bbr-managed ConfigMap: data keys baseModel
// (required) and adapters (a YAML list of names; absent means none).
func AdapterEntryOf(cm *corev1.ConfigMap) (datastore.AdapterEntry, error) {
	e := datastore.AdapterEntry{BaseModel: strings.TrimSpace(cm.Data[BBRBaseModelKey])}
	if e.BaseModel == "" {
		return e, fmt.Errorf("data.%s: required", BBRBaseModelKey)
	}
	for k := range cm.Data {
		if k != BBRBaseModelKey && k != BBRAdaptersKey {
			return e, fmt.Errorf("data.%s: unknown key (want %s and %s)", k, BBRBaseModelKey, BBRAdaptersKey)
		}
	}
	if raw := cm.Data[BBRAdaptersKey]; strings.TrimSpace(raw) != "" {
		if err := yaml.UnmarshalStrict([]byte(raw), &e.Adapters); err != nil {
			return e, fmt.Errorf("data.%s: not a YAML list of names: %w", BBRAdaptersKey, err)
		}
	}
	return e, nil
}
