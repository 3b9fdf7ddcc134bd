package gatewayapi

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	controllerconfig "sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	v1 "github.com/igw-dev/igw/api/v1"
	"github.com/igw-dev/igw/pkg/kube"
)

// Options configure a Controller.
type Options struct {
	// Config reaches the API server (kube.RESTConfig).
	Config *rest.Config
	// Logger receives reconcile results and errors (default: discard).
	Logger *slog.Logger
	// ControllerName is the GatewayClass controllerName igw owns
	// (default DefaultControllerName).
	ControllerName string
	// ModelHeaders are the header names whose HTTPRoute matches select the
	// body's model (default DefaultModelHeader).
	ModelHeaders []string
	// Addresses are written to every igw Gateway's status.addresses: the
	// IPs or host names clients reach the data plane at (its Service's).
	Addresses []string
	// LeaderElection, when set, makes only the replica holding the Lease
	// (in LeaseNamespace) write statuses; every replica reconciles and
	// applies the configuration, so a follower's data plane serves the
	// same routes and its pools' state is warm when it takes over.
	LeaderElection *kube.LeaderElection
	LeaseNamespace string
	// Check parses a generated configuration without applying it; Apply
	// parses and swaps it in. Both get the whole configuration.
	Check, Apply func(generated []byte) error
}

// Controller runs igw's Gateway API reconciler against the API server.
type Controller struct {
	mgr     manager.Manager
	rec     *reconciler
	synced  atomic.Bool
	applied atomic.Bool
	leader  atomic.Bool
}

func positive(d time.Duration) *time.Duration {
	if d <= 0 {
		return nil
	}
	return &d
}

// NewScheme is the scheme of igw's clients (kube.NewScheme, which has
// Gateway API's kinds too).
func NewScheme() (*runtime.Scheme, error) { return kube.NewScheme() }

// New builds the controller; nothing talks to the API server until Run,
// except the discovery of which optional kinds it serves.
func New(o Options) (*Controller, error) {
	if o.Check == nil || o.Apply == nil {
		return nil, errors.New("gatewayapi: Options.Check and Options.Apply are required")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.ControllerName == "" {
		o.ControllerName = DefaultControllerName
	}
	if len(o.ModelHeaders) == 0 {
		o.ModelHeaders = []string{DefaultModelHeader}
	}
	for _, a := range o.Addresses {
		if a == "" {
			return nil, errors.New("gatewayapi: an empty gateway address")
		}
	}
	scheme, err := NewScheme()
	if err != nil {
		return nil, err
	}
	skipNameValidation := true // several controllers may live in one test process
	mo := manager.Options{
		Scheme:                 scheme,
		Logger:                 logr.FromSlogHandler(o.Logger.Handler()),
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Controller:             controllerconfig.Controller{SkipNameValidation: &skipNameValidation},
	}
	if le := o.LeaderElection; le != nil {
		if le.LeaseName == "" || o.LeaseNamespace == "" {
			return nil, errors.New("gatewayapi: leader election needs a lease name and namespace")
		}
		mo.LeaderElection, mo.LeaderElectionID, mo.LeaderElectionNamespace = true, le.LeaseName, o.LeaseNamespace
		mo.LeaderElectionReleaseOnCancel = true
		mo.LeaseDuration, mo.RenewDeadline, mo.RetryPeriod = positive(le.LeaseDuration), positive(le.RenewDeadline), positive(le.RetryPeriod)
	}
	mgr, err := ctrl.NewManager(o.Config, mo)
	if err != nil {
		return nil, fmt.Errorf("gatewayapi: %w", err)
	}
	c := &Controller{mgr: mgr}
	r := &reconciler{reader: mgr.GetClient(), writer: mgr.GetClient(), o: o, log: o.Logger, applied: &c.applied, leader: &c.leader}
	if o.LeaderElection == nil {
		c.leader.Store(true)
	}
	c.rec = r
	key := handler.EnqueueRequestsFromMapFunc(func(context.Context, client.Object) []reconcile.Request {
		return []reconcile.Request{{NamespacedName: types.NamespacedName{Name: "all"}}}
	})
	no := false
	b := ctrl.NewControllerManagedBy(mgr).Named("igw-gateway-api").WithOptions(controller.Options{NeedLeaderElection: &no})
	for _, obj := range []client.Object{&gwv1.GatewayClass{}, &gwv1.Gateway{}, &gwv1.HTTPRoute{}, &v1.InferencePool{},
		&corev1.Pod{}, &corev1.Service{}, &discoveryv1.EndpointSlice{}, &corev1.Namespace{}} {
		b = b.Watches(obj, key)
	}
	for _, kind := range []string{"InferenceObjective", "InferenceModelRewrite"} {
		groups, err := kube.ServedGroups(mgr.GetRESTMapper(), o.Logger, kind)
		if err != nil {
			return nil, err
		}
		if kind == "InferenceObjective" {
			r.objectives = groups
		} else {
			r.rewrites = groups
		}
		for _, obj := range kube.GroupObjects(kind, groups) {
			b = b.Watches(obj, key)
		}
	}
	served, err := serves(mgr, AIGatewayRouteGVK())
	if err != nil {
		return nil, err
	}
	if served {
		r.aiRoutes = true
		u := &unstructured.Unstructured{}
		u.SetGroupVersionKind(AIGatewayRouteGVK())
		b = b.Watches(u, key)
	}
	if err := b.Complete(r); err != nil {
		return nil, fmt.Errorf("gatewayapi: controller: %w", err)
	}
	return c, nil
}

func serves(mgr manager.Manager, gvk schema.GroupVersionKind) (bool, error) {
	_, err := mgr.GetRESTMapper().RESTMapping(gvk.GroupKind(), gvk.Version)
	switch {
	case err == nil:
		return true, nil
	case meta.IsNoMatchError(err):
		return false, nil
	default:
		return false, fmt.Errorf("gatewayapi: asking the API server for %s: %w", gvk.Kind, err)
	}
}

// Run starts the informers and the reconciler and blocks until ctx ends.
func (c *Controller) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		if c.mgr.GetCache().WaitForCacheSync(ctx) {
			c.synced.Store(true)
		}
	}()
	go func() {
		select {
		case <-c.mgr.Elected():
			c.leader.Store(true)
		case <-ctx.Done():
		}
	}()
	if err := c.mgr.Start(ctx); err != nil {
		return fmt.Errorf("gatewayapi: %w", err)
	}
	return nil
}

// Leader reports whether this replica writes statuses (always, without
// leader election).
func (c *Controller) Leader() bool { return c.leader.Load() }

// Ready reports whether the caches synced and a configuration from them
// was applied: before that the data plane routes nothing.
func (c *Controller) Ready() bool { return c.synced.Load() && c.applied.Load() }

// reconciler is the one level-based reconciler: every call lists
// everything, translates, applies and writes statuses.
type reconciler struct {
	reader client.Reader
	writer client.Client
	o      Options
	log    *slog.Logger

	objectives, rewrites kube.Groups
	aiRoutes             bool

	mu          sync.Mutex // one reconcile at a time (the controller runs one worker; tests may call directly)
	lastApplied []byte
	applied     *atomic.Bool
	leader      *atomic.Bool
}

// followerRecheck is how often a follower reconciles unprompted, so that
// it writes statuses soon after it is elected.
const followerRecheck = 2 * time.Second

var _ reconcile.Reconciler = (*reconciler)(nil)

// Reconcile recomputes the configuration and every status igw owns.
func (r *reconciler) Reconcile(ctx context.Context, _ reconcile.Request) (reconcile.Result, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s, err := r.snapshot(ctx)
	if err != nil {
		return reconcile.Result{}, err
	}
	plan := Translate(s)
	rejected, applyErr := r.apply(plan)
	var errs []error
	if applyErr != nil {
		r.log.Error("generated configuration rejected; the data plane keeps the previous one", "err", applyErr)
	}
	if !r.leader.Load() {
		return reconcile.Result{RequeueAfter: followerRecheck}, nil // the leader writes statuses
	}
	errs = append(errs, r.writeStatuses(ctx, s, plan, rejected, applyErr)...)
	if err := errors.Join(errs...); err != nil {
		return reconcile.Result{RequeueAfter: time.Second}, fmt.Errorf("gatewayapi: writing statuses: %w", err)
	}
	return reconcile.Result{}, nil
}

func (r *reconciler) snapshot(ctx context.Context) (*Snapshot, error) {
	s := &Snapshot{ControllerName: r.o.ControllerName, ModelHeaders: r.o.ModelHeaders}
	var (
		classes    gwv1.GatewayClassList
		gateways   gwv1.GatewayList
		routes     gwv1.HTTPRouteList
		pools      v1.InferencePoolList
		pods       corev1.PodList
		services   corev1.ServiceList
		slices_    discoveryv1.EndpointSliceList
		namespaces corev1.NamespaceList
	)
	lists := []client.ObjectList{&classes, &gateways, &routes, &pools, &pods, &services, &slices_, &namespaces}
	for _, l := range lists {
		if err := r.reader.List(ctx, l); err != nil {
			return nil, fmt.Errorf("gatewayapi: listing %T: %w", l, err)
		}
	}
	s.Classes, s.Gateways, s.HTTPRoutes, s.Pools = classes.Items, gateways.Items, routes.Items, pools.Items
	s.Pods, s.Services, s.Slices, s.Namespaces = pods.Items, services.Items, slices_.Items, namespaces.Items
	var err error
	if s.Objectives, err = kube.ListObjectives(ctx, r.reader, r.objectives); err != nil {
		return nil, err
	}
	if s.Rewrites, err = kube.ListRewrites(ctx, r.reader, r.rewrites); err != nil {
		return nil, err
	}
	if r.aiRoutes {
		ul := &unstructured.UnstructuredList{}
		ul.SetGroupVersionKind(AIGatewayRouteGVK().GroupVersion().WithKind(KindAIGatewayRoute + "List"))
		if err := r.reader.List(ctx, ul); err != nil {
			return nil, fmt.Errorf("gatewayapi: listing AIGatewayRoutes: %w", err)
		}
		for i := range ul.Items {
			var a AIGatewayRoute
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(ul.Items[i].Object, &a); err != nil {
				r.log.Error("AIGatewayRoute ignored: not the documented shape", "route", ul.Items[i].GetNamespace()+"/"+ul.Items[i].GetName(), "err", err)
				continue
			}
			s.AIRoutes = append(s.AIRoutes, a)
		}
	}
	return s, nil
}

// apply hands the data plane the plan's configuration. When the whole does
// not load, it finds the routes that break it, adding one route at a time
// (oldest first) to the base, and applies the rest; those routes come back
// with the data plane's message.
func (r *reconciler) apply(p *Plan) (map[string]error, error) {
	whole := join(p.Base, p.Rules)
	if r.applied.Load() && bytes.Equal(whole, r.lastApplied) {
		return nil, nil
	}
	err := r.o.Check(whole)
	if err == nil {
		return nil, r.commit(whole)
	}
	if err := r.o.Check(p.Base); err != nil {
		return nil, fmt.Errorf("the pools, objectives and rewrites do not load: %w", err)
	}
	rejected := map[string]error{}
	var kept []RuleDocs
	for _, rd := range p.Rules {
		if err := r.o.Check(join(p.Base, append(slices.Clone(kept), rd))); err != nil {
			rejected[rd.Route] = err
			continue
		}
		kept = append(kept, rd)
	}
	return rejected, r.commit(join(p.Base, kept))
}

func (r *reconciler) commit(generated []byte) error {
	if r.applied.Load() && bytes.Equal(generated, r.lastApplied) {
		return nil
	}
	if err := r.o.Apply(generated); err != nil {
		return err
	}
	r.lastApplied = generated
	r.applied.Store(true)
	r.log.Info("routing configuration applied from the cluster", "bytes", len(generated))
	return nil
}

func join(base []byte, rules []RuleDocs) []byte {
	out := slices.Clone(base)
	for _, rd := range rules {
		out = append(out, rd.Docs...)
	}
	return out
}

// condition builds a condition for an object of this generation.
func condition(t string, ok bool, reason, msg string, gen int64) metav1.Condition {
	st := metav1.ConditionFalse
	if ok {
		st = metav1.ConditionTrue
	}
	if msg == "" {
		msg = reason
	}
	return metav1.Condition{Type: t, Status: st, Reason: reason, Message: msg, ObservedGeneration: gen}
}

// setConditions sets each condition, keeping the transition time of an
// unchanged status, as meta.SetStatusCondition does.
func setConditions(dst *[]metav1.Condition, cs ...metav1.Condition) {
	for _, c := range cs {
		meta.SetStatusCondition(dst, c)
	}
}

// writeStatuses writes what the plan says, touching only what igw owns and
// only when something changed (a write wakes the reconciler again).
func (r *reconciler) writeStatuses(ctx context.Context, s *Snapshot, p *Plan, rejected map[string]error, applyErr error) []error {
	var errs []error
	update := func(before, after client.Object, changed bool) {
		if !changed {
			return
		}
		if err := r.writer.Status().Update(ctx, after); err != nil && !isGone(err) {
			errs = append(errs, fmt.Errorf("%T %s/%s: %w", before, after.GetNamespace(), after.GetName(), err))
		}
	}
	for _, gc := range p.Classes {
		next := gc.DeepCopy()
		setConditions(&next.Status.Conditions, condition(string(gwv1.GatewayClassConditionStatusAccepted), true,
			string(gwv1.GatewayClassReasonAccepted), "igw implements this class", gc.Generation))
		update(gc, next, !equality.Semantic.DeepEqual(gc.Status, next.Status))
	}
	addresses := r.addresses()
	for _, gp := range p.Gateways {
		g := gp.Gateway
		next := g.DeepCopy()
		valid := 0
		var listeners []gwv1.ListenerStatus
		for _, lp := range gp.Listeners {
			l := lp.Listener
			ls := gwv1.ListenerStatus{Name: l.Name, SupportedKinds: supportedKinds(l), AttachedRoutes: gp.Attached[l.Name]}
			for _, old := range g.Status.Listeners {
				if old.Name == l.Name {
					ls.Conditions = slices.Clone(old.Conditions)
				}
			}
			ok := lp.Reason == ""
			if ok {
				valid++
				setConditions(&ls.Conditions,
					condition(string(gwv1.ListenerConditionAccepted), true, string(gwv1.ListenerReasonAccepted), "", g.Generation),
					condition(string(gwv1.ListenerConditionResolvedRefs), true, string(gwv1.ListenerReasonResolvedRefs), "", g.Generation),
					condition(string(gwv1.ListenerConditionConflicted), false, string(gwv1.ListenerReasonNoConflicts), "", g.Generation),
					condition(string(gwv1.ListenerConditionProgrammed), applyErr == nil, programmedReason(applyErr), "", g.Generation))
			} else {
				setConditions(&ls.Conditions,
					condition(string(gwv1.ListenerConditionAccepted), false, string(lp.Reason), lp.Message, g.Generation),
					condition(string(gwv1.ListenerConditionResolvedRefs), lp.Reason != gwv1.ListenerReasonInvalidRouteKinds,
						resolvedReason(lp.Reason), lp.Message, g.Generation),
					condition(string(gwv1.ListenerConditionConflicted), false, string(gwv1.ListenerReasonNoConflicts), "", g.Generation),
					condition(string(gwv1.ListenerConditionProgrammed), false, string(gwv1.ListenerReasonInvalid), lp.Message, g.Generation))
			}
			listeners = append(listeners, ls)
		}
		next.Status.Listeners = listeners
		next.Status.Addresses = addresses
		acceptedReason, acceptedMsg := string(gwv1.GatewayReasonAccepted), "igw serves this Gateway"
		if valid == 0 {
			acceptedReason, acceptedMsg = string(gwv1.GatewayReasonListenersNotValid), "no listener is valid"
		}
		progOK, progReason, progMsg := true, string(gwv1.GatewayReasonProgrammed), "igw's data plane serves this Gateway's routes"
		switch {
		case applyErr != nil:
			progOK, progReason, progMsg = false, string(gwv1.GatewayReasonInvalid), applyErr.Error()
		case len(addresses) == 0:
			progOK, progReason, progMsg = false, string(gwv1.GatewayReasonAddressNotAssigned), "igw was started without --gateway-address"
		case valid == 0:
			progOK, progReason, progMsg = false, string(gwv1.GatewayReasonInvalid), acceptedMsg
		}
		setConditions(&next.Status.Conditions,
			condition(string(gwv1.GatewayConditionAccepted), valid > 0, acceptedReason, acceptedMsg, g.Generation),
			condition(string(gwv1.GatewayConditionProgrammed), progOK, progReason, progMsg, g.Generation))
		update(g, next, !equality.Semantic.DeepEqual(g.Status, next.Status))
	}
	errs = append(errs, r.writeRouteStatuses(ctx, s, p, rejected)...)
	errs = append(errs, r.writePoolStatuses(ctx, s, p, rejected)...)
	return errs
}

func programmedReason(err error) string {
	if err != nil {
		return string(gwv1.ListenerReasonInvalid)
	}
	return string(gwv1.ListenerReasonProgrammed)
}

func resolvedReason(r gwv1.ListenerConditionReason) string {
	if r == gwv1.ListenerReasonInvalidRouteKinds {
		return string(gwv1.ListenerReasonInvalidRouteKinds)
	}
	return string(gwv1.ListenerReasonResolvedRefs)
}

// addresses are Options.Addresses in Gateway status form.
func (r *reconciler) addresses() []gwv1.GatewayStatusAddress {
	var out []gwv1.GatewayStatusAddress
	for _, a := range r.o.Addresses {
		t := gwv1.HostnameAddressType
		if net.ParseIP(a) != nil {
			t = gwv1.IPAddressType
		}
		out = append(out, gwv1.GatewayStatusAddress{Type: &t, Value: a})
	}
	return out
}

// routeAccepted is whether a route of the plan is served: attached to the
// parent, supported and not refused by the data plane.
func routeState(rp *RoutePlan, pp ParentPlan, rejected map[string]error) (bool, string, string) {
	switch {
	case pp.Reason != gwv1.RouteReasonAccepted:
		return false, string(pp.Reason), pp.Message
	case rp.Unsupported != "":
		return false, string(gwv1.RouteReasonUnsupportedValue), rp.Unsupported
	case rejected[rp.Route.key()] != nil:
		return false, string(gwv1.RouteReasonUnsupportedValue), "igw's data plane refused the route: " + rejected[rp.Route.key()].Error()
	default:
		return true, string(gwv1.RouteReasonAccepted), pp.Message
	}
}

func (r *reconciler) writeRouteStatuses(ctx context.Context, s *Snapshot, p *Plan, rejected map[string]error) []error {
	var errs []error
	byKey := map[string]*RoutePlan{}
	for _, rp := range p.Routes {
		byKey[rp.Route.key()] = rp
	}
	for i := range s.HTTPRoutes {
		hr := &s.HTTPRoutes[i]
		rp := byKey[kindHTTPRoute+"/"+hr.Namespace+"/"+hr.Name]
		next := hr.DeepCopy()
		next.Status.Parents = r.parentStatuses(hr.Status.Parents, rp, rejected)
		if equality.Semantic.DeepEqual(hr.Status, next.Status) {
			continue
		}
		if err := r.writer.Status().Update(ctx, next); err != nil && !isGone(err) {
			errs = append(errs, fmt.Errorf("HTTPRoute %s/%s: %w", hr.Namespace, hr.Name, err))
		}
	}
	for i := range s.AIRoutes {
		a := &s.AIRoutes[i]
		rp := byKey[KindAIGatewayRoute+"/"+a.Namespace+"/"+a.Name]
		if rp == nil {
			continue
		}
		if err := r.writeAIRouteStatus(ctx, a, rp, rejected); err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

// writeAIRouteStatus writes an AIGatewayRoute's one Accepted condition
// (its status has no per-parent list): true when some igw parent serves it,
// else the first parent's reason; ResolvedRefs beside it.
func (r *reconciler) writeAIRouteStatus(ctx context.Context, a *AIGatewayRoute, rp *RoutePlan, rejected map[string]error) error {
	conds := slices.Clone(a.Status.Conditions)
	ok, reason, msg := false, "", ""
	for _, pp := range rp.Parents {
		pok, preason, pmsg := routeState(rp, pp, rejected)
		if pok || reason == "" {
			ok, reason, msg = pok, preason, pmsg
		}
		if pok {
			break
		}
	}
	resolvedOK, resolvedReason, resolvedMsg := true, string(gwv1.RouteReasonResolvedRefs), "every backendRef resolves"
	if rp.ResolvedReason != "" {
		resolvedOK, resolvedReason, resolvedMsg = false, string(rp.ResolvedReason), rp.ResolvedMessage
	}
	setConditions(&conds, condition(string(gwv1.RouteConditionAccepted), ok, reason, msg, a.Generation),
		condition(string(gwv1.RouteConditionResolvedRefs), resolvedOK, resolvedReason, resolvedMsg, a.Generation))
	if equality.Semantic.DeepEqual(conds, a.Status.Conditions) {
		return nil
	}
	next := *a // shallow: only the status changes, and it is a new slice
	next.Status.Conditions = conds
	obj, err := runtime.DefaultUnstructuredConverter.ToUnstructured(&next)
	if err != nil {
		return fmt.Errorf("AIGatewayRoute %s/%s: %w", a.Namespace, a.Name, err)
	}
	u := &unstructured.Unstructured{Object: obj}
	u.SetGroupVersionKind(AIGatewayRouteGVK())
	if err := r.writer.Status().Update(ctx, u); err != nil && !isGone(err) {
		return fmt.Errorf("AIGatewayRoute %s/%s: %w", a.Namespace, a.Name, err)
	}
	return nil
}

// parentStatuses are a route's status.parents: other controllers' entries
// as they were, igw's recomputed (none when rp is nil).
func (r *reconciler) parentStatuses(old []gwv1.RouteParentStatus, rp *RoutePlan, rejected map[string]error) []gwv1.RouteParentStatus {
	var out []gwv1.RouteParentStatus
	for _, ps := range old {
		if string(ps.ControllerName) != r.o.ControllerName {
			out = append(out, ps)
		}
	}
	if rp == nil {
		return out
	}
	gen := rp.Route.Generation
	for _, pp := range rp.Parents {
		ps := gwv1.RouteParentStatus{ParentRef: pp.Ref, ControllerName: gwv1.GatewayController(r.o.ControllerName)}
		for _, o := range old {
			if string(o.ControllerName) == r.o.ControllerName && equality.Semantic.DeepEqual(o.ParentRef, pp.Ref) {
				ps.Conditions = slices.Clone(o.Conditions)
			}
		}
		ok, reason, msg := routeState(rp, pp, rejected)
		resolvedOK, resolvedReason, resolvedMsg := true, string(gwv1.RouteReasonResolvedRefs), "every backendRef resolves"
		if rp.ResolvedReason != "" {
			resolvedOK, resolvedReason, resolvedMsg = false, string(rp.ResolvedReason), rp.ResolvedMessage
		}
		setConditions(&ps.Conditions, condition(string(gwv1.RouteConditionAccepted), ok, reason, msg, gen),
			condition(string(gwv1.RouteConditionResolvedRefs), resolvedOK, resolvedReason, resolvedMsg, gen))
		out = append(out, ps)
	}
	return out
}

// writePoolStatuses gives every InferencePool one status.parents entry per
// igw Gateway a route sends its traffic through (REFERENCE.md §8), and
// removes igw's entries for Gateways that no longer do.
func (r *reconciler) writePoolStatuses(ctx context.Context, s *Snapshot, p *Plan, rejected map[string]error) []error {
	type parentKey struct{ pool, gateway types.NamespacedName }
	want := map[parentKey]bool{} // → accepted through some route
	for _, rp := range p.Routes {
		for _, pp := range rp.Parents {
			ok, _, _ := routeState(rp, pp, rejected)
			g := types.NamespacedName{Namespace: pp.Gateway.Gateway.Namespace, Name: pp.Gateway.Gateway.Name}
			for _, pool := range rp.Pools {
				k := parentKey{pool, g}
				want[k] = want[k] || ok
			}
		}
	}
	var errs []error
	for i := range s.Pools {
		pool := s.Pools[i].DeepCopy()
		poolKey := types.NamespacedName{Namespace: pool.Namespace, Name: pool.Name}
		var gws []types.NamespacedName
		for k := range want {
			if k.pool == poolKey {
				gws = append(gws, k.gateway)
			}
		}
		changed := kube.SetPoolParents(pool, r.o.ControllerName, gws, func(g types.NamespacedName) []metav1.Condition {
			accepted := want[parentKey{poolKey, g}]
			msg := "igw routes to this pool"
			if !accepted {
				msg = "no route to this pool through this Gateway is accepted"
			}
			return kube.PoolConditions(accepted, pool.Generation, msg, "igw schedules the pool itself")
		})
		if !changed {
			continue
		}
		if err := r.writer.Status().Update(ctx, pool); err != nil && !isGone(err) {
			errs = append(errs, fmt.Errorf("InferencePool %s: %w", poolKey, err))
		}
	}
	return errs
}

// isGone: an object deleted since it was listed needs no status.
func isGone(err error) bool { return apierrors.IsNotFound(err) }
