package gatewayapi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	v1 "github.com/igw-dev/igw/api/v1"
	"github.com/igw-dev/igw/api/v1alpha2"
	"github.com/igw-dev/igw/pkg/config"
	"github.com/igw-dev/igw/pkg/datastore"
	"github.com/igw-dev/igw/pkg/discovery/static"
	"github.com/igw-dev/igw/pkg/engine"
	"github.com/igw-dev/igw/pkg/kube"
)

// Names igw uses on the Gateway API side.
const (
	// DefaultControllerName is the spec.controllerName of the
	// GatewayClasses igw implements.
	DefaultControllerName = "igw.dev/gateway-controller"
	// DefaultModelHeader is the header HTTPRoutes match to route by model,
	// as the body-based router of the seed walk-throughs sets it.
	DefaultModelHeader = "X-Gateway-Model-Name"
	// AIGatewayModelHeader is the header Envoy AI Gateway's routes match.
	AIGatewayModelHeader = "x-ai-eg-model"
	// PoolLabel is the label the generated ModelServers carry, so that a
	// generated InferencePool selects exactly the pods its Kubernetes
	// namesake selected.
	PoolLabel = "igw.dev/inference-pool"
)

// Group, kind and label names of the objects routes refer to.
const (
	gatewayGroup       = gwv1.GroupName
	kindGateway        = "Gateway"
	kindHTTPRoute      = "HTTPRoute"
	kindService        = "Service"
	kindInferencePool  = "InferencePool"
	serviceNameLabel   = discoveryv1.LabelServiceName
	maxBackendWeight   = engine.MaxBackendWeight
	routeDocNameMaxLen = 253
)

// Snapshot is everything the translation reads, as listed from the cache.
type Snapshot struct {
	ControllerName string
	// ModelHeaders are the header names whose Exact HTTPRoute match is a
	// match on the body's model (case-insensitive).
	ModelHeaders []string
	Classes      []gwv1.GatewayClass
	Gateways     []gwv1.Gateway
	HTTPRoutes   []gwv1.HTTPRoute
	AIRoutes     []AIGatewayRoute
	Pools        []v1.InferencePool
	Pods         []corev1.Pod
	Services     []corev1.Service
	Slices       []discoveryv1.EndpointSlice
	Namespaces   []corev1.Namespace
	Objectives   []v1alpha2.InferenceObjective
	Rewrites     []v1alpha2.InferenceModelRewrite
}

// Route is an HTTPRoute or an AIGatewayRoute in the one form the
// translation handles.
type Route struct {
	Kind, Namespace, Name string
	Created               time.Time
	Generation            int64
	Hostnames             []gwv1.Hostname
	ParentRefs            []gwv1.ParentReference
	Rules                 []gwv1.HTTPRouteRule
	// ModelHeaders are the header names whose Exact match is the body's
	// model for this route.
	ModelHeaders []string
}

// key identifies a route across kinds.
func (r *Route) key() string { return r.Kind + "/" + r.Namespace + "/" + r.Name }

// Plan is the translation's result: the configuration documents and what
// is known for the statuses before the data plane has checked them.
type Plan struct {
	// Base holds the pools, model servers, objectives and rewrites.
	Base []byte
	// Rules are the routes' igw Route documents, oldest route first: a
	// route that conflicts with an older one is the one left out.
	Rules []RuleDocs
	// Classes are the GatewayClasses igw owns.
	Classes []*gwv1.GatewayClass
	// Gateways are the Gateways of those classes, with their listeners'
	// validity.
	Gateways []*GatewayPlan
	// Routes are the routes with a parentRef to one of those Gateways.
	Routes []*RoutePlan
}

// RuleDocs are the igw Route documents of one route.
type RuleDocs struct {
	Route string // Route.key()
	Docs  []byte
}

// GatewayPlan is one igw Gateway and its listeners' state.
type GatewayPlan struct {
	Gateway   *gwv1.Gateway
	Listeners []ListenerPlan
	// Attached counts the routes attached per listener name.
	Attached map[gwv1.SectionName]int32
}

// ListenerPlan is one listener's validity.
type ListenerPlan struct {
	Listener *gwv1.Listener
	// Reason and Message, when Reason is set, say why it is not accepted.
	Reason  gwv1.ListenerConditionReason
	Message string
}

// RoutePlan is one route's state per igw parent.
type RoutePlan struct {
	Route   *Route
	Parents []ParentPlan
	// Resolved is empty when every backendRef resolves, else the reason
	// and message of the first that does not.
	ResolvedReason  gwv1.RouteConditionReason
	ResolvedMessage string
	// Unsupported, when set, is why the route cannot be served at all.
	Unsupported string
	// Pools are the InferencePools (namespace/name) the route sends to.
	Pools []types.NamespacedName
}

// ParentPlan is a route's attachment to one igw Gateway.
type ParentPlan struct {
	Ref     gwv1.ParentReference
	Gateway *GatewayPlan
	// Reason is RouteReasonAccepted when attached, else why not.
	Reason  gwv1.RouteConditionReason
	Message string
}

// Translate computes the plan of s: pure, so it is tested without an API
// server, and the reconciler only lists, applies and writes statuses.
func Translate(s *Snapshot) *Plan {
	p := &Plan{}
	classes := map[string]bool{}
	for i := range s.Classes {
		gc := &s.Classes[i]
		if string(gc.Spec.ControllerName) == s.ControllerName && gc.DeletionTimestamp == nil {
			classes[gc.Name] = true
			p.Classes = append(p.Classes, gc)
		}
	}
	gateways := map[types.NamespacedName]*GatewayPlan{}
	for i := range s.Gateways {
		g := &s.Gateways[i]
		if !classes[string(g.Spec.GatewayClassName)] || g.DeletionTimestamp != nil {
			continue
		}
		gp := &GatewayPlan{Gateway: g, Attached: map[gwv1.SectionName]int32{}}
		for j := range g.Spec.Listeners {
			gp.Listeners = append(gp.Listeners, checkListener(&g.Spec.Listeners[j]))
		}
		gateways[types.NamespacedName{Namespace: g.Namespace, Name: g.Name}] = gp
		p.Gateways = append(p.Gateways, gp)
	}
	nsLabels := map[string]labels.Set{}
	for _, n := range s.Namespaces {
		nsLabels[n.Name] = n.Labels
	}
	routes := make([]Route, 0, len(s.HTTPRoutes)+len(s.AIRoutes))
	for i := range s.HTTPRoutes {
		r := &s.HTTPRoutes[i]
		if r.DeletionTimestamp != nil {
			continue
		}
		routes = append(routes, Route{Kind: kindHTTPRoute, Namespace: r.Namespace, Name: r.Name, Created: r.CreationTimestamp.Time,
			Generation: r.Generation, Hostnames: r.Spec.Hostnames, ParentRefs: r.Spec.ParentRefs, Rules: r.Spec.Rules, ModelHeaders: s.ModelHeaders})
	}
	idx := newIndex(s)
	for i := range s.AIRoutes {
		if s.AIRoutes[i].DeletionTimestamp == nil {
			routes = append(routes, s.AIRoutes[i].neutral(idx, s.ModelHeaders))
		}
	}
	// Oldest first (Gateway API's conflict rule), then by name.
	slices.SortStableFunc(routes, func(a, b Route) int {
		if c := a.Created.Compare(b.Created); c != 0 {
			return c
		}
		return strings.Compare(a.key(), b.key())
	})
	usedPools := map[types.NamespacedName]bool{}
	for i := range routes {
		r := &routes[i]
		rp := &RoutePlan{Route: r}
		for _, ref := range r.ParentRefs {
			if !isGatewayRef(ref) {
				continue
			}
			ns := r.Namespace
			if ref.Namespace != nil {
				ns = string(*ref.Namespace)
			}
			gp := gateways[types.NamespacedName{Namespace: ns, Name: string(ref.Name)}]
			if gp == nil {
				continue // another implementation's Gateway, or none yet
			}
			reason, msg := attach(gp, r, ref, nsLabels)
			rp.Parents = append(rp.Parents, ParentPlan{Ref: ref, Gateway: gp, Reason: reason, Message: msg})
		}
		if len(rp.Parents) == 0 {
			continue
		}
		p.Routes = append(p.Routes, rp)
		docs, pools := translateRoute(r, idx, rp, routeHostnames(r, rp))
		rp.Pools = pools
		attached := false
		for _, pp := range rp.Parents {
			attached = attached || pp.Reason == gwv1.RouteReasonAccepted
		}
		if !attached || rp.Unsupported != "" {
			continue
		}
		for _, pool := range pools {
			usedPools[pool] = true
		}
		if len(docs) > 0 {
			p.Rules = append(p.Rules, RuleDocs{Route: r.key(), Docs: docs})
		}
	}
	p.Base = baseDocs(s, idx, usedPools)
	return p
}

// checkListener accepts plain HTTP listeners: TLS termination, TCP and the
// other protocols are not part of igw's data plane.
func checkListener(l *gwv1.Listener) ListenerPlan {
	lp := ListenerPlan{Listener: l}
	if l.Protocol != gwv1.HTTPProtocolType {
		lp.Reason = gwv1.ListenerReasonUnsupportedProtocol
		lp.Message = fmt.Sprintf("igw serves HTTP listeners only, not %s", l.Protocol)
		return lp
	}
	if ar := l.AllowedRoutes; ar != nil {
		for _, k := range ar.Kinds {
			if (k.Group == nil || string(*k.Group) == gatewayGroup) && string(k.Kind) == kindHTTPRoute {
				continue
			}
			if k.Group != nil && string(*k.Group) == AIGatewayGroup && string(k.Kind) == KindAIGatewayRoute {
				continue
			}
			lp.Reason = gwv1.ListenerReasonInvalidRouteKinds
			lp.Message = fmt.Sprintf("route kind %s is not supported (HTTPRoute and AIGatewayRoute are)", k.Kind)
			return lp
		}
	}
	return lp
}

// supportedKinds are the route kinds a valid listener reports.
func supportedKinds(l *gwv1.Listener) []gwv1.RouteGroupKind {
	g := gwv1.Group(gatewayGroup)
	all := []gwv1.RouteGroupKind{{Group: &g, Kind: kindHTTPRoute}}
	if l.AllowedRoutes == nil || len(l.AllowedRoutes.Kinds) == 0 {
		return all
	}
	var out []gwv1.RouteGroupKind
	for _, k := range l.AllowedRoutes.Kinds {
		if (k.Group == nil || string(*k.Group) == gatewayGroup) && string(k.Kind) == kindHTTPRoute {
			out = append(out, all[0])
		} else if k.Group != nil && string(*k.Group) == AIGatewayGroup && string(k.Kind) == KindAIGatewayRoute {
			out = append(out, k)
		}
	}
	return out
}

func isGatewayRef(ref gwv1.ParentReference) bool {
	return (ref.Group == nil || string(*ref.Group) == gatewayGroup) && (ref.Kind == nil || string(*ref.Kind) == kindGateway)
}

// attach decides whether route r may attach to Gateway gp through ref:
// some valid listener must match the ref's sectionName and port, allow the
// route's namespace and kind, and share a hostname with the route.
func attach(gp *GatewayPlan, r *Route, ref gwv1.ParentReference, nsLabels map[string]labels.Set) (gwv1.RouteConditionReason, string) {
	reason, msg := gwv1.RouteReasonNoMatchingParent, "no listener of the Gateway matches the parentRef's sectionName and port"
	var hit []gwv1.SectionName
	for _, lp := range gp.Listeners {
		l := lp.Listener
		if ref.SectionName != nil && *ref.SectionName != l.Name {
			continue
		}
		if ref.Port != nil && *ref.Port != l.Port {
			continue
		}
		if lp.Reason != "" {
			reason, msg = gwv1.RouteReasonNotAllowedByListeners, "the listener is not valid: "+lp.Message
			continue
		}
		if !allowsNamespace(l, gp.Gateway.Namespace, r.Namespace, nsLabels) || !allowsKind(l, r.Kind) {
			reason, msg = gwv1.RouteReasonNotAllowedByListeners, fmt.Sprintf("listener %s does not allow %ss from namespace %s", l.Name, r.Kind, r.Namespace)
			continue
		}
		if !hostnamesIntersect(l.Hostname, r.Hostnames) {
			reason, msg = gwv1.RouteReasonNoMatchingListenerHostname, fmt.Sprintf("no hostname of the route matches listener %s", l.Name)
			continue
		}
		hit = append(hit, l.Name)
	}
	if len(hit) == 0 {
		return reason, msg
	}
	for _, name := range hit {
		gp.Attached[name]++
	}
	return gwv1.RouteReasonAccepted, "attached to listener " + joinNames(hit)
}

func joinNames(ns []gwv1.SectionName) string {
	s := make([]string, len(ns))
	for i, n := range ns {
		s[i] = string(n)
	}
	return strings.Join(s, ", ")
}

func allowsNamespace(l *gwv1.Listener, gatewayNS, routeNS string, nsLabels map[string]labels.Set) bool {
	from := gwv1.NamespacesFromSame
	var sel *metav1.LabelSelector
	if ar := l.AllowedRoutes; ar != nil && ar.Namespaces != nil {
		if ar.Namespaces.From != nil {
			from = *ar.Namespaces.From
		}
		sel = ar.Namespaces.Selector
	}
	switch from {
	case gwv1.NamespacesFromAll:
		return true
	case gwv1.NamespacesFromSelector:
		if sel == nil {
			return false
		}
		s, err := metav1.LabelSelectorAsSelector(sel)
		return err == nil && s.Matches(nsLabels[routeNS])
	case gwv1.NamespacesFromSame:
		return gatewayNS == routeNS
	default:
		return false
	}
}

// allowsKind: an AIGatewayRoute attaches wherever an HTTPRoute may (Envoy
// AI Gateway turns it into one), or where a listener names it.
func allowsKind(l *gwv1.Listener, kind string) bool {
	for _, k := range supportedKinds(l) {
		if string(k.Kind) == kind || (kind == KindAIGatewayRoute && string(k.Kind) == kindHTTPRoute) {
			return true
		}
	}
	return false
}

// hostnamesIntersect is Gateway API's hostname rule: a listener without a
// hostname takes any route, a route without hostnames any listener;
// otherwise one route hostname must match the listener's, either of them
// possibly a wildcard "*.example.com".
func hostnamesIntersect(listener *gwv1.Hostname, route []gwv1.Hostname) bool {
	if listener == nil || *listener == "" || len(route) == 0 {
		return true
	}
	for _, h := range route {
		if hostMatches(string(*listener), string(h)) || hostMatches(string(h), string(*listener)) {
			return true
		}
	}
	return false
}

// hostMatches reports whether pattern (exact or "*.suffix") covers host.
func hostMatches(pattern, host string) bool {
	pattern, host = strings.ToLower(pattern), strings.ToLower(host)
	if suffix, ok := strings.CutPrefix(pattern, "*"); ok {
		return strings.HasSuffix(host, suffix) && len(host) > len(suffix)
	}
	return pattern == host
}

// index looks objects of the snapshot up by name.
type index struct {
	pods     []corev1.Pod
	pools    map[types.NamespacedName]*v1.InferencePool
	services map[types.NamespacedName]*corev1.Service
	slices   map[types.NamespacedName][]*discoveryv1.EndpointSlice
}

func newIndex(s *Snapshot) *index {
	idx := &index{pools: map[types.NamespacedName]*v1.InferencePool{}, services: map[types.NamespacedName]*corev1.Service{},
		slices: map[types.NamespacedName][]*discoveryv1.EndpointSlice{}, pods: s.Pods}
	for i := range s.Pools {
		p := &s.Pools[i]
		if p.DeletionTimestamp == nil {
			idx.pools[types.NamespacedName{Namespace: p.Namespace, Name: p.Name}] = p
		}
	}
	for i := range s.Services {
		svc := &s.Services[i]
		idx.services[types.NamespacedName{Namespace: svc.Namespace, Name: svc.Name}] = svc
	}
	for i := range s.Slices {
		es := &s.Slices[i]
		if name := es.Labels[serviceNameLabel]; name != "" {
			k := types.NamespacedName{Namespace: es.Namespace, Name: name}
			idx.slices[k] = append(idx.slices[k], es)
		}
	}
	return idx
}

// target is one resolved backend of a rule: a pool, or the URLs of a
// Service's ready endpoints.
type target struct {
	pool   string
	urls   []string
	weight int64
}

// translateRoute writes the igw Route documents of r (one per rule) and
// returns the pools they use; problems are recorded in rp.
func translateRoute(r *Route, idx *index, rp *RoutePlan, hostnames []string) ([]byte, []types.NamespacedName) {
	var buf bytes.Buffer
	var pools []types.NamespacedName
	for i := range r.Rules {
		rule := &r.Rules[i]
		if msg := unsupportedRule(rule); msg != "" {
			rp.Unsupported = fmt.Sprintf("rules[%d]: %s", i, msg)
			return nil, nil
		}
		matches, ok, msg := routeMatches(rule.Matches, r.ModelHeaders)
		if msg != "" {
			rp.Unsupported = fmt.Sprintf("rules[%d]: %s", i, msg)
			return nil, nil
		}
		var targets []target
		for j := range rule.BackendRefs {
			t, pool, reason, why := resolveBackend(r.Namespace, &rule.BackendRefs[j], idx)
			if reason != "" {
				if rp.ResolvedReason == "" {
					rp.ResolvedReason, rp.ResolvedMessage = reason, fmt.Sprintf("rules[%d].backendRefs[%d]: %s", i, j, why)
				}
				continue
			}
			if pool != nil {
				pools = append(pools, *pool)
			}
			targets = append(targets, t)
		}
		if !ok {
			continue // every match asks for a method the inference APIs do not take
		}
		backends := routeBackends(targets)
		if len(backends) == 0 {
			continue // nothing to send to: the rule's requests find no route (404)
		}
		rt := engine.Route{TypeMeta: metav1.TypeMeta{APIVersion: config.IGWAPIVersion, Kind: engine.KindRoute},
			ObjectMeta: metav1.ObjectMeta{Name: ruleDocName(r, i), Namespace: r.Namespace},
			Spec:       engine.RouteSpec{Matches: matches, Backends: backends, Hostnames: hostnames}}
		applyFilters(&rt.Spec, rule.Filters)
		if to := rule.Timeouts; to != nil && to.Request != nil {
			d, err := time.ParseDuration(string(*to.Request))
			if err != nil {
				rp.Unsupported = fmt.Sprintf("rules[%d].timeouts.request: %v", i, err)
				return nil, nil
			}
			rt.Spec.Timeout = &metav1.Duration{Duration: d}
		}
		writeDoc(&buf, &rt)
	}
	return buf.Bytes(), pools
}

// routeHostnames are the hosts a route serves: its own hostnames, or,
// without any, its attached listeners' (none when one of them takes any
// host).
func routeHostnames(r *Route, rp *RoutePlan) []string {
	var out []string
	for _, h := range r.Hostnames {
		out = append(out, strings.ToLower(string(h)))
	}
	if len(out) > 0 {
		return out
	}
	for _, pp := range rp.Parents {
		if pp.Reason != gwv1.RouteReasonAccepted {
			continue
		}
		for _, lp := range pp.Gateway.Listeners {
			l := lp.Listener
			if (pp.Ref.SectionName != nil && *pp.Ref.SectionName != l.Name) || lp.Reason != "" {
				continue
			}
			if l.Hostname == nil || *l.Hostname == "" {
				return nil
			}
			if h := strings.ToLower(string(*l.Hostname)); !slices.Contains(out, h) {
				out = append(out, h)
			}
		}
	}
	return out
}

// applyFilters maps a rule's RequestHeaderModifier and URLRewrite (path)
// filters onto the igw Route (unsupportedRule refused the others).
func applyFilters(spec *engine.RouteSpec, filters []gwv1.HTTPRouteFilter) {
	for _, f := range filters {
		if m := f.RequestHeaderModifier; m != nil {
			hm := &engine.RouteHeaderModifier{Remove: m.Remove}
			for _, h := range m.Set {
				hm.Set = append(hm.Set, engine.HeaderValue{Name: string(h.Name), Value: h.Value})
			}
			for _, h := range m.Add {
				hm.Add = append(hm.Add, engine.HeaderValue{Name: string(h.Name), Value: h.Value})
			}
			spec.RequestHeaders = hm
		}
		if u := f.URLRewrite; u != nil && u.Path != nil {
			switch u.Path.Type {
			case gwv1.FullPathHTTPPathModifier:
				spec.PathRewrite = &engine.RoutePathRewrite{ReplaceFullPath: u.Path.ReplaceFullPath}
			case gwv1.PrefixMatchHTTPPathModifier:
				spec.PathRewrite = &engine.RoutePathRewrite{ReplacePrefixMatch: u.Path.ReplacePrefixMatch}
			}
		}
	}
}

// ruleDocName names the igw Route of rule i: kinds and rules apart, so an
// HTTPRoute and an AIGatewayRoute of one name do not collide.
func ruleDocName(r *Route, i int) string {
	name := strings.ToLower(r.Kind) + "." + r.Name + "." + strconv.Itoa(i)
	if len(name) > routeDocNameMaxLen {
		name = name[:routeDocNameMaxLen]
	}
	return name
}

// unsupportedRule names what igw's data plane cannot do in a rule.
func unsupportedRule(rule *gwv1.HTTPRouteRule) string {
	for _, f := range rule.Filters {
		switch {
		case f.Type == gwv1.HTTPRouteFilterRequestHeaderModifier && f.RequestHeaderModifier != nil:
		case f.Type == gwv1.HTTPRouteFilterURLRewrite && f.URLRewrite != nil && f.URLRewrite.Hostname == nil:
		case f.Type == gwv1.HTTPRouteFilterURLRewrite:
			return "filter URLRewrite: hostname rewrites are not supported (path rewrites are)"
		default:
			return fmt.Sprintf("filter %s is not supported by igw (RequestHeaderModifier and URLRewrite are)", f.Type)
		}
	}
	for j, b := range rule.BackendRefs {
		if len(b.Filters) > 0 {
			return fmt.Sprintf("backendRefs[%d].filters: per-backend filters are not supported", j)
		}
	}
	return ""
}

// routeMatches maps Gateway API matches to igw's. ok is false when every
// match was dropped because it requires a method other than POST (the only
// one the inference APIs take): such a rule can match nothing. msg names a
// match igw cannot serve.
func routeMatches(ms []gwv1.HTTPRouteMatch, modelHeaders []string) (out []engine.RouteMatch, ok bool, msg string) {
	if len(ms) == 0 {
		return nil, true, ""
	}
	for i, m := range ms {
		if len(m.QueryParams) > 0 {
			return nil, false, fmt.Sprintf("matches[%d].queryParams: not supported", i)
		}
		if m.Method != nil && *m.Method != gwv1.HTTPMethodPost {
			continue
		}
		var em engine.RouteMatch
		if pm := m.Path; pm != nil && pm.Value != nil {
			t := gwv1.PathMatchPathPrefix
			if pm.Type != nil {
				t = *pm.Type
			}
			switch t {
			case gwv1.PathMatchExact:
				em.Path = &engine.PathMatch{Type: engine.PathMatchExact, Value: *pm.Value}
			case gwv1.PathMatchPathPrefix:
				if *pm.Value != "/" { // "/" is every path
					em.Path = &engine.PathMatch{Type: engine.PathMatchPathPrefix, Value: *pm.Value}
				}
			default:
				return nil, false, fmt.Sprintf("matches[%d].path.type %s: not supported", i, t)
			}
		}
		for j, h := range m.Headers {
			if h.Type != nil && *h.Type != gwv1.HeaderMatchExact {
				return nil, false, fmt.Sprintf("matches[%d].headers[%d].type %s: not supported", i, j, *h.Type)
			}
			if isModelHeader(string(h.Name), modelHeaders) {
				em.Model = &engine.ModelMatch{Type: engine.ModelMatchExact, Value: h.Value}
				continue
			}
			em.Headers = append(em.Headers, engine.HeaderMatch{Type: engine.HeaderMatchExact, Name: string(h.Name), Value: h.Value})
		}
		out = append(out, em)
	}
	if len(out) == 0 {
		return nil, false, ""
	}
	return out, true, ""
}

func isModelHeader(name string, modelHeaders []string) bool {
	for _, h := range modelHeaders {
		if strings.EqualFold(h, name) {
			return true
		}
	}
	return false
}

// resolveBackend finds what a backendRef names. A reason is returned when
// it does not resolve.
func resolveBackend(routeNS string, b *gwv1.HTTPBackendRef, idx *index) (target, *types.NamespacedName, gwv1.RouteConditionReason, string) {
	var t target
	t.weight = 1
	if b.Weight != nil {
		t.weight = int64(*b.Weight)
	}
	group, kind := "", kindService
	if b.Group != nil {
		group = string(*b.Group)
	}
	if b.Kind != nil {
		kind = string(*b.Kind)
	}
	ns := routeNS
	if b.Namespace != nil && string(*b.Namespace) != routeNS {
		return t, nil, gwv1.RouteReasonRefNotPermitted, fmt.Sprintf("%s %s/%s is in another namespace; igw does not read ReferenceGrants yet", kind, *b.Namespace, b.Name)
	}
	key := types.NamespacedName{Namespace: ns, Name: string(b.Name)}
	switch {
	case group == v1.GroupVersion.Group && kind == kindInferencePool:
		if idx.pools[key] == nil {
			return t, nil, gwv1.RouteReasonBackendNotFound, fmt.Sprintf("InferencePool %s not found", key)
		}
		t.pool = key.Name
		return t, &key, "", ""
	case group == "" && kind == kindService:
		svc := idx.services[key]
		if svc == nil {
			return t, nil, gwv1.RouteReasonBackendNotFound, fmt.Sprintf("Service %s not found", key)
		}
		if b.Port == nil {
			return t, nil, gwv1.RouteReasonUnsupportedValue, fmt.Sprintf("Service %s: backendRef.port is required (an AIGatewayRoute takes the Service's only port)", key)
		}
		var sp *corev1.ServicePort
		for i := range svc.Spec.Ports {
			if svc.Spec.Ports[i].Port == int32(*b.Port) {
				sp = &svc.Spec.Ports[i]
			}
		}
		if sp == nil {
			return t, nil, gwv1.RouteReasonBackendNotFound, fmt.Sprintf("Service %s has no port %d", key, *b.Port)
		}
		if es := idx.slices[key]; len(es) > 0 {
			t.urls = serviceURLs(es, sp)
		} else {
			t.urls = selectorURLs(svc, sp, idx.pods)
		}
		return t, nil, "", ""
	case group == "" && kind == kindAIServiceBackend:
		return t, nil, gwv1.RouteReasonInvalidKind, aiServiceBackendMessage(key.Name)
	default:
		return t, nil, gwv1.RouteReasonInvalidKind, fmt.Sprintf("backend kind %s.%s is not supported (InferencePool and Service are)", kind, group)
	}
}

// serviceURLs are the ready endpoints of a Service port, from its
// EndpointSlices (IPv4, IPv6 or FQDN addresses), as http URLs in a stable
// order.
func serviceURLs(slices_ []*discoveryv1.EndpointSlice, sp *corev1.ServicePort) []string {
	seen := map[string]bool{}
	var out []string
	for _, es := range slices_ {
		for _, port := range es.Ports {
			name := ""
			if port.Name != nil {
				name = *port.Name
			}
			if name != sp.Name || port.Port == nil {
				continue
			}
			for _, ep := range es.Endpoints {
				if ep.Conditions.Ready != nil && !*ep.Conditions.Ready {
					continue
				}
				for _, a := range ep.Addresses {
					u := "http://" + net.JoinHostPort(a, strconv.Itoa(int(*port.Port)))
					if !seen[u] {
						seen[u] = true
						out = append(out, u)
					}
				}
			}
		}
	}
	slices.Sort(out)
	return out
}

// selectorURLs are the endpoints of a Service that has no EndpointSlices
// (a cluster without the EndpointSlice controller, such as a bare API
// server): its selector's serving pods in its namespace, on the port's
// targetPort (a number, or a container port's name).
func selectorURLs(svc *corev1.Service, sp *corev1.ServicePort, pods []corev1.Pod) []string {
	if len(svc.Spec.Selector) == 0 {
		return nil
	}
	sel := labels.SelectorFromSet(svc.Spec.Selector)
	var out []string
	for i := range pods {
		p := &pods[i]
		if p.Namespace != svc.Namespace || !sel.Matches(labels.Set(p.Labels)) || !kube.Serving(p) {
			continue
		}
		port := sp.TargetPort.IntValue()
		if sp.TargetPort.Type == intstr.String {
			port = 0
			for _, c := range p.Spec.Containers {
				for _, cp := range c.Ports {
					if cp.Name == sp.TargetPort.StrVal {
						port = int(cp.ContainerPort)
					}
				}
			}
		} else if port == 0 {
			port = int(sp.Port)
		}
		if port > 0 {
			out = append(out, "http://"+net.JoinHostPort(p.Status.PodIP, strconv.Itoa(port)))
		}
	}
	slices.Sort(out)
	return out
}

// routeBackends spreads the targets' weights over igw backends: a pool is
// one backend, a Service one URL backend per ready endpoint, its weight
// shared evenly. Weights are scaled by the least common multiple of the
// Services' endpoint counts so the shares stay exact (and scaled down
// again if that would pass the largest weight).
func routeBackends(ts []target) []engine.RouteBackend {
	scale := int64(1)
	for _, t := range ts {
		if t.pool == "" && len(t.urls) > 0 {
			scale = lcm(scale, int64(len(t.urls)))
		}
	}
	var maxW int64
	for _, t := range ts {
		maxW = max(maxW, t.weight*scale)
	}
	div := int64(1)
	if maxW > maxBackendWeight {
		div = (maxW + maxBackendWeight - 1) / maxBackendWeight
	}
	var out []engine.RouteBackend
	add := func(pool, url string, w int64) {
		w /= div
		if w == 0 && len(out) > 0 {
			return
		}
		w32 := int32(w)
		out = append(out, engine.RouteBackend{Pool: pool, URL: url, Weight: &w32})
	}
	for _, t := range ts {
		if t.pool != "" {
			add(t.pool, "", t.weight*scale)
			continue
		}
		for _, u := range t.urls {
			add("", u, t.weight*scale/int64(len(t.urls)))
		}
	}
	total := int64(0)
	for _, b := range out {
		total += int64(*b.Weight)
	}
	if total == 0 {
		return nil // every weight 0: Gateway API answers 500; igw finds no route
	}
	return out
}

func lcm(a, b int64) int64 {
	x, y := a, b
	for y != 0 {
		x, y = y, x%y
	}
	return a / x * b
}

// baseDocs are the pools the accepted routes use, one ModelServer per
// serving pod and target port of each, and their objectives and rewrites.
func baseDocs(s *Snapshot, idx *index, used map[types.NamespacedName]bool) []byte {
	var buf bytes.Buffer
	keys := make([]types.NamespacedName, 0, len(used))
	for k := range used {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b types.NamespacedName) int { return strings.Compare(a.String(), b.String()) })
	for _, k := range keys {
		src := idx.pools[k]
		pool := &v1.InferencePool{TypeMeta: metav1.TypeMeta{APIVersion: v1.GroupVersion.String(), Kind: static.KindInferencePool},
			ObjectMeta: metav1.ObjectMeta{Name: src.Name, Namespace: src.Namespace, Annotations: src.Annotations},
			Spec: v1.InferencePoolSpec{Selector: v1.LabelSelector{MatchLabels: map[string]string{PoolLabel: src.Name}},
				TargetPorts: src.Spec.TargetPorts, AppProtocol: src.Spec.AppProtocol}}
		writeDoc(&buf, pool)
		sel := labels.SelectorFromSet(src.Spec.Selector.MatchLabels)
		for i := range s.Pods {
			pod := &s.Pods[i]
			if pod.Namespace != src.Namespace || !sel.Matches(labels.Set(pod.Labels)) || !kube.Serving(pod) {
				continue
			}
			for _, port := range src.Spec.TargetPorts {
				ms := &static.ModelServer{TypeMeta: metav1.TypeMeta{APIVersion: config.IGWAPIVersion, Kind: static.KindModelServer},
					ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s.%s.%d", src.Name, pod.Name, port.Number), Namespace: src.Namespace,
						Labels: map[string]string{PoolLabel: src.Name}},
					Spec: static.ModelServerSpec{Address: pod.Status.PodIP, Ports: []v1.Port{port}, Engine: datastore.EngineFromLabels(pod.Labels)}}
				writeDoc(&buf, ms)
			}
		}
	}
	for i := range s.Objectives {
		o := &s.Objectives[i]
		if !used[poolOf(o.Namespace, o.Spec.PoolRef)] || o.DeletionTimestamp != nil {
			continue
		}
		writeDoc(&buf, &v1alpha2.InferenceObjective{TypeMeta: metav1.TypeMeta{APIVersion: v1alpha2.GroupVersion.String(), Kind: static.KindInferenceObjective},
			ObjectMeta: metav1.ObjectMeta{Name: o.Name, Namespace: o.Namespace, Annotations: o.Annotations}, Spec: o.Spec})
	}
	rewrites := slices.Clone(s.Rewrites)
	slices.SortStableFunc(rewrites, func(a, b v1alpha2.InferenceModelRewrite) int {
		if c := a.CreationTimestamp.Compare(b.CreationTimestamp.Time); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})
	for i := range rewrites {
		rw := &rewrites[i]
		if !used[poolOf(rw.Namespace, rw.Spec.PoolRef)] || rw.DeletionTimestamp != nil {
			continue
		}
		writeDoc(&buf, &v1alpha2.InferenceModelRewrite{TypeMeta: metav1.TypeMeta{APIVersion: v1alpha2.GroupVersion.String(), Kind: static.KindInferenceModelRewrite},
			ObjectMeta: metav1.ObjectMeta{Name: rw.Name, Namespace: rw.Namespace}, Spec: rw.Spec})
	}
	return buf.Bytes()
}

func poolOf(ns string, ref v1alpha2.PoolObjectReference) types.NamespacedName {
	if (ref.Group != "" && ref.Group != v1alpha2.PoolGroup) || (ref.Kind != "" && ref.Kind != v1alpha2.PoolKind) {
		return types.NamespacedName{}
	}
	return types.NamespacedName{Namespace: ns, Name: string(ref.Name)}
}

// writeDoc appends one document. JSON is YAML, and json.Marshal of these
// types cannot fail (no channels, funcs or cyclic values).
func writeDoc(buf *bytes.Buffer, obj any) {
	data, err := json.Marshal(obj)
	if err != nil {
		panic(fmt.Sprintf("gatewayapi: encoding %T: %v", obj, err))
	}
	buf.WriteString("---\n")
	buf.Write(data)
	buf.WriteString("\n")
}
