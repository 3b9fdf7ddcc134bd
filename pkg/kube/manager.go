package kube

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlconfig "sigs.k8s.io/controller-runtime/pkg/client/config"
	controllerconfig "sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	v1 "github.com/igw-dev/igw/api/v1"
	"github.com/igw-dev/igw/api/v1alpha2"
	"github.com/igw-dev/igw/pkg/config"
	"github.com/igw-dev/igw/pkg/datastore"
)

// RESTConfig loads the API server connection the way kubectl and
// controller-runtime do: the kubeconfig file at path when it is set, else
// $KUBECONFIG, the in-cluster service account, then ~/.kube/config.
func RESTConfig(path string) (*rest.Config, error) {
	if path != "" {
		c, err := clientcmd.BuildConfigFromFlags("", path)
		if err != nil {
			return nil, fmt.Errorf("kube: kubeconfig %s: %w", path, err)
		}
		return c, nil
	}
	c, err := ctrlconfig.GetConfig()
	if err != nil {
		return nil, fmt.Errorf("kube: no Kubernetes API server configuration (use --kubeconfig, KUBECONFIG or run in a pod): %w", err)
	}
	return c, nil
}

// NewScheme is the scheme igw's clients use: the built-in kinds plus
// InferencePool, InferenceObjective, InferenceModelRewrite and Gateway
// API's kinds.
func NewScheme() (*runtime.Scheme, error) {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, v1.AddToScheme, v1alpha2.AddToScheme, gwv1.Install} {
		if err := add(s); err != nil {
			return nil, fmt.Errorf("kube: scheme: %w", err)
		}
	}
	return s, nil
}

// LeaderElection configures the Lease that chooses the one replica that
// reports ready. Zero durations take controller-runtime's defaults (15 s,
// 10 s, 2 s); tests shorten them.
type LeaderElection struct {
	// LeaseName is the Lease object's name, in the watched namespace.
	LeaseName     string
	LeaseDuration time.Duration
	RenewDeadline time.Duration
	RetryPeriod   time.Duration
}

// Options configures a Discovery. Exactly one of Pool and Adapters is set.
type Options struct {
	// Config reaches the API server (see RESTConfig).
	Config *rest.Config
	// Namespace is the only namespace watched: the pool's, or the body-based
	// router's.
	Namespace string
	// Logger receives reconcile results and errors (default: discard).
	Logger *slog.Logger

	// Pool, when set, feeds Store with the pool's endpoints, objectives and
	// rewrites.
	Pool *PoolSource
	// Adapters, when set, receives the adapter map of the namespace's
	// bbr-managed ConfigMaps after every change.
	Adapters func(*datastore.AdapterMap)

	// LeaderElection, when set, makes Leader false until this replica holds
	// the Lease. Reconcilers run regardless.
	LeaderElection *LeaderElection
}

// PoolSource names the pool whose state is fed into Store.
type PoolSource struct {
	// Name is the InferencePool's name (and the datastore key's name part).
	Name string
	// Selector and TargetPorts, when Selector is not empty, replace the
	// InferencePool object: pods are selected by these labels and no
	// InferencePool CRD is needed (--endpoint-selector mode).
	Selector    map[string]string
	TargetPorts []int32
	// Store receives the state; its key is "<namespace>/<name>".
	Store *datastore.Store
	// NoPoolStatus leaves the InferencePool's status alone. Otherwise the
	// leader writes a status.parents entry (controllerName
	// PickerControllerName) for every Gateway whose HTTPRoutes send to the
	// pool, when the API server serves HTTPRoute.
	NoPoolStatus bool
}

// Discovery runs the reconcilers of one process against the API server.
type Discovery struct {
	mgr    manager.Manager
	log    *slog.Logger
	synced atomic.Bool
	leader atomic.Bool
}

// New builds the manager and its reconcilers; nothing talks to the API
// server until Run, except the discovery of which optional kinds
// (InferenceObjective, InferenceModelRewrite) the server serves.
func New(o Options) (*Discovery, error) {
	if (o.Pool == nil) == (o.Adapters == nil) {
		return nil, errors.New("kube: set exactly one of Options.Pool and Options.Adapters")
	}
	if o.Namespace == "" {
		return nil, errors.New("kube: a namespace is required")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	scheme, err := NewScheme()
	if err != nil {
		return nil, err
	}
	skipNameValidation := true // several managers may live in one test process
	mo := manager.Options{
		Scheme:                 scheme,
		Logger:                 logr.FromSlogHandler(o.Logger.Handler()),
		Metrics:                metricsserver.Options{BindAddress: "0"}, // igw serves its own metrics
		HealthProbeBindAddress: "0",                                     // and its own gRPC health
		Controller:             controllerconfig.Controller{SkipNameValidation: &skipNameValidation},
		Cache:                  cache.Options{DefaultNamespaces: map[string]cache.Config{o.Namespace: {}}},
	}
	if o.Adapters != nil {
		mo.Cache.ByObject = map[client.Object]cache.ByObject{
			&corev1.ConfigMap{}: {Label: labels.SelectorFromSet(labels.Set{BBRManagedLabel: "true"})},
		}
	}
	if le := o.LeaderElection; le != nil {
		if le.LeaseName == "" {
			return nil, errors.New("kube: leader election needs a lease name")
		}
		mo.LeaderElection = true
		mo.LeaderElectionID = le.LeaseName
		mo.LeaderElectionNamespace = o.Namespace
		mo.LeaderElectionReleaseOnCancel = true // a clean shutdown hands over at once
		mo.LeaseDuration = durationOrNil(le.LeaseDuration)
		mo.RenewDeadline = durationOrNil(le.RenewDeadline)
		mo.RetryPeriod = durationOrNil(le.RetryPeriod)
	}
	mgr, err := ctrl.NewManager(o.Config, mo)
	if err != nil {
		return nil, fmt.Errorf("kube: %w", err)
	}
	d := &Discovery{mgr: mgr, log: o.Logger}
	if o.Pool != nil {
		err = d.addPool(o.Namespace, o.Pool)
	} else {
		err = d.addAdapters(o.Namespace, o.Adapters)
	}
	if err != nil {
		return nil, err
	}
	return d, nil
}

func durationOrNil(d time.Duration) *time.Duration {
	if d <= 0 {
		return nil
	}
	return &d
}

// controllerOptions run a reconciler on every replica, leader or not, so a
// follower's datastore is warm when it takes over.
func controllerOptions() controller.Options {
	no := false
	return controller.Options{NeedLeaderElection: &no}
}

// fixedKey enqueues the same request for every object: the reconcilers
// recompute everything, so which object changed does not matter, and
// events arriving together collapse into one reconcile.
func fixedKey(key types.NamespacedName) handler.EventHandler {
	return handler.EnqueueRequestsFromMapFunc(func(context.Context, client.Object) []reconcile.Request {
		return []reconcile.Request{{NamespacedName: key}}
	})
}

func (d *Discovery) addPool(namespace string, p *PoolSource) error {
	if p.Name == "" || p.Store == nil {
		return errors.New("kube: a pool source needs a name and a store")
	}
	key := types.NamespacedName{Namespace: namespace, Name: p.Name}
	er := &endpointReconciler{
		reader: d.mgr.GetClient(), store: p.Store, log: d.log,
		pool: key, storeName: config.NamespacedName(namespace, p.Name),
	}
	b := ctrl.NewControllerManagedBy(d.mgr).Named("igw-endpoints").WithOptions(controllerOptions()).
		Watches(&corev1.Pod{}, fixedKey(key))
	if len(p.Selector) > 0 {
		if len(p.TargetPorts) == 0 {
			return errors.New("kube: an endpoint selector needs target ports")
		}
		spec := &v1.InferencePoolSpec{Selector: v1.LabelSelector{MatchLabels: p.Selector}}
		for _, port := range p.TargetPorts {
			spec.TargetPorts = append(spec.TargetPorts, v1.Port{Number: v1.PortNumber(port)})
		}
		er.fixed = spec
	} else {
		served, err := d.serves(v1.GroupVersion.WithKind("InferencePool"))
		if err != nil {
			return err
		}
		if !served {
			return fmt.Errorf("kube: the API server does not serve InferencePool (%s): install the CRDs of config/crd/bases, or select pods with --endpoint-selector", v1.GroupVersion)
		}
		b = b.Watches(&v1.InferencePool{}, fixedKey(key), builder.WithPredicates(predicate.NewPredicateFuncs(func(o client.Object) bool {
			return o.GetName() == p.Name
		})))
		routes, err := d.serves(schema.GroupVersionKind{Group: gwv1.GroupName, Version: "v1", Kind: "HTTPRoute"})
		if err != nil {
			return err
		}
		if routes && !p.NoPoolStatus {
			// The leader alone writes the pool's status.parents.
			sr := &poolStatusReconciler{reader: d.mgr.GetClient(), writer: d.mgr.GetClient(), pool: key, log: d.log}
			if err := ctrl.NewControllerManagedBy(d.mgr).Named("igw-pool-status").
				Watches(&v1.InferencePool{}, fixedKey(key), builder.WithPredicates(predicate.NewPredicateFuncs(func(o client.Object) bool {
					return o.GetName() == p.Name
				}))).
				Watches(&gwv1.HTTPRoute{}, fixedKey(key)).Complete(sr); err != nil {
				return fmt.Errorf("kube: pool status controller: %w", err)
			}
		}
	}
	if err := b.Complete(er); err != nil {
		return fmt.Errorf("kube: endpoints controller: %w", err)
	}
	nsKey := types.NamespacedName{Namespace: namespace}
	for _, kind := range []string{"InferenceObjective", "InferenceModelRewrite"} {
		groups, err := d.ServedGroups(kind)
		if err != nil {
			return err
		}
		if !groups.Any() {
			continue
		}
		var r reconcile.Reconciler = &objectiveReconciler{reader: d.mgr.GetClient(), groups: groups, store: p.Store, log: d.log, namespace: namespace}
		name := "igw-objectives"
		if kind == "InferenceModelRewrite" {
			r, name = &rewriteReconciler{reader: d.mgr.GetClient(), groups: groups, store: p.Store, log: d.log, namespace: namespace}, "igw-rewrites"
		}
		b := ctrl.NewControllerManagedBy(d.mgr).Named(name).WithOptions(controllerOptions())
		for _, obj := range GroupObjects(kind, groups) {
			b = b.Watches(obj, fixedKey(nsKey))
		}
		if err := b.Complete(r); err != nil {
			return fmt.Errorf("kube: %s controller: %w", kind, err)
		}
	}
	return nil
}

// ServedGroups reports which groups serve kind (InferenceObjective or
// InferenceModelRewrite).
func (d *Discovery) ServedGroups(kind string) (Groups, error) {
	return ServedGroups(d.mgr.GetRESTMapper(), d.log, kind)
}

// ServedGroups asks the API server (through mapper) which of the two groups
// serve kind; a group without its CRD is logged and left out.
func ServedGroups(mapper meta.RESTMapper, log *slog.Logger, kind string) (Groups, error) {
	var g Groups
	for _, gv := range []struct {
		gvk  schema.GroupVersionKind
		flag *bool
	}{{v1alpha2.GroupVersion.WithKind(kind), &g.Seeds}, {v1alpha2.LLMDGroupVersion.WithKind(kind), &g.LLMD}} {
		_, err := mapper.RESTMapping(gv.gvk.GroupKind(), gv.gvk.Version)
		switch {
		case err == nil:
			*gv.flag = true
		case meta.IsNoMatchError(err):
			log.Debug("the API server does not serve this kind; not watching it", "kind", gv.gvk.String())
		default:
			return g, fmt.Errorf("kube: asking the API server for %s: %w", gv.gvk, err)
		}
	}
	if !g.Any() {
		log.Warn("the API server serves this kind in neither group; not watching it", "kind", kind)
	}
	return g, nil
}

// GroupObjects are the objects to watch for kind in the served groups:
// typed for the seeds' group, unstructured for llm-d.ai.
func GroupObjects(kind string, g Groups) []client.Object {
	var out []client.Object
	if g.Seeds {
		if kind == "InferenceObjective" {
			out = append(out, &v1alpha2.InferenceObjective{})
		} else {
			out = append(out, &v1alpha2.InferenceModelRewrite{})
		}
	}
	if g.LLMD {
		u := &unstructured.Unstructured{}
		u.SetGroupVersionKind(v1alpha2.LLMDGroupVersion.WithKind(kind))
		out = append(out, u)
	}
	return out
}

// serves reports whether the API server has the kind's CRD. Objectives and
// rewrites are optional: without their CRDs the pool still routes (with
// priority 0 and no rewrites), as --endpoint-selector works without the
// InferencePool CRD.
func (d *Discovery) serves(gvk schema.GroupVersionKind) (bool, error) {
	_, err := d.mgr.GetRESTMapper().RESTMapping(gvk.GroupKind(), gvk.Version)
	switch {
	case err == nil:
		return true, nil
	case meta.IsNoMatchError(err):
		d.log.Warn("the API server does not serve this kind; not watching it", "kind", gvk.String())
		return false, nil
	default:
		return false, fmt.Errorf("kube: asking the API server for %s: %w", gvk.Kind, err)
	}
}

func (d *Discovery) addAdapters(namespace string, set func(*datastore.AdapterMap)) error {
	r := &adapterReconciler{reader: d.mgr.GetClient(), set: set, log: d.log, namespace: namespace}
	if err := ctrl.NewControllerManagedBy(d.mgr).Named("igw-bbr-adapters").WithOptions(controllerOptions()).
		Watches(&corev1.ConfigMap{}, fixedKey(types.NamespacedName{Namespace: namespace})).Complete(r); err != nil {
		return fmt.Errorf("kube: adapters controller: %w", err)
	}
	return nil
}

// Run starts the informers, the reconcilers and (when configured) leader
// election, and blocks until ctx ends or the manager fails. Losing the
// Lease is a failure: the process must exit so a fresh replica can be a
// clean follower.
func (d *Discovery) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		if d.mgr.GetCache().WaitForCacheSync(ctx) {
			d.synced.Store(true)
			d.log.Info("Kubernetes caches synced")
		}
	}()
	go func() {
		select {
		case <-d.mgr.Elected():
			d.leader.Store(true)
			d.log.Info("leading")
		case <-ctx.Done():
		}
	}()
	err := d.mgr.Start(ctx)
	d.leader.Store(false)
	d.synced.Store(false)
	if err != nil {
		return fmt.Errorf("kube: %w", err)
	}
	return nil
}

// Synced reports whether the informer caches have their initial lists.
func (d *Discovery) Synced() bool { return d.synced.Load() }

// Leader reports whether this replica is the leader; always true once
// started without leader election.
func (d *Discovery) Leader() bool { return d.leader.Load() }
