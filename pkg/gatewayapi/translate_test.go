package gatewayapi

import (
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	v1 "github.com/igw-dev/igw/api/v1"
	"github.com/igw-dev/igw/pkg/config"
	"github.com/igw-dev/igw/pkg/engine"
	"github.com/igw-dev/igw/pkg/gateway"
)

// schema is what igw serve parses the generated documents with.
func igwSchema() *config.Schema { return engine.Schema(gateway.Kind()) }

func objMeta(ns, name string) metav1.ObjectMeta {
	return metav1.ObjectMeta{Namespace: ns, Name: name, Generation: 1, CreationTimestamp: metav1.NewTime(time.Unix(1000, 0))}
}

func readyPod(ns, name, ip string, labels map[string]string) corev1.Pod {
	return corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels},
		Status: corev1.PodStatus{PodIP: ip, Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}}}
}

func poolRef(name string, weight int32) gwv1.HTTPBackendRef {
	g, k := gwv1.Group("inference.networking.k8s.io"), gwv1.Kind("InferencePool")
	return gwv1.HTTPBackendRef{BackendRef: gwv1.BackendRef{Weight: &weight, BackendObjectReference: gwv1.BackendObjectReference{Group: &g, Kind: &k, Name: gwv1.ObjectName(name)}}}
}

func serviceRef(name string, port int32, weight int32) gwv1.HTTPBackendRef {
	p := gwv1.PortNumber(port)
	return gwv1.HTTPBackendRef{BackendRef: gwv1.BackendRef{Weight: &weight, BackendObjectReference: gwv1.BackendObjectReference{Name: gwv1.ObjectName(name), Port: &p}}}
}

func modelMatch(header, model string) gwv1.HTTPRouteMatch {
	return gwv1.HTTPRouteMatch{Headers: []gwv1.HTTPHeaderMatch{{Name: gwv1.HTTPHeaderName(header), Value: model}}}
}

// base is one igw GatewayClass, a Gateway with an HTTP listener, a pool
// with two ready pods, and a Service with one EndpointSlice.
func base() *Snapshot {
	from := gwv1.NamespacesFromSame
	return &Snapshot{
		ControllerName: DefaultControllerName, ModelHeaders: []string{DefaultModelHeader},
		Classes: []gwv1.GatewayClass{{ObjectMeta: metav1.ObjectMeta{Name: "igw"}, Spec: gwv1.GatewayClassSpec{ControllerName: DefaultControllerName}},
			{ObjectMeta: metav1.ObjectMeta{Name: "other"}, Spec: gwv1.GatewayClassSpec{ControllerName: "example.com/other"}}},
		Gateways: []gwv1.Gateway{{ObjectMeta: objMeta("ns", "gw"), Spec: gwv1.GatewaySpec{GatewayClassName: "igw",
			Listeners: []gwv1.Listener{{Name: "http", Port: 80, Protocol: gwv1.HTTPProtocolType, AllowedRoutes: &gwv1.AllowedRoutes{Namespaces: &gwv1.RouteNamespaces{From: &from}}}}}}},
		Pools: []v1.InferencePool{{ObjectMeta: objMeta("ns", "llama"), Spec: v1.InferencePoolSpec{
			Selector: v1.LabelSelector{MatchLabels: map[string]string{"app": "llama"}}, TargetPorts: []v1.Port{{Number: 8000}}}}},
		Pods: []corev1.Pod{readyPod("ns", "llama-0", "10.0.0.1", map[string]string{"app": "llama"}), readyPod("ns", "llama-1", "10.0.0.2", map[string]string{"app": "llama"}),
			readyPod("other-ns", "llama-x", "10.0.0.9", map[string]string{"app": "llama"})},
		Services: []corev1.Service{{ObjectMeta: objMeta("ns", "svc"), Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80}}}}},
		Slices: []discoveryv1.EndpointSlice{{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "svc-1", Labels: map[string]string{discoveryv1.LabelServiceName: "svc"}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Endpoints: []discoveryv1.Endpoint{{Addresses: []string{"10.1.0.1"}}, {Addresses: []string{"10.1.0.2"}},
				{Addresses: []string{"10.1.0.3"}, Conditions: discoveryv1.EndpointConditions{Ready: new(bool)}}},
			Ports: []discoveryv1.EndpointPort{{Name: ptr("http"), Port: ptr(int32(8080))}}}},
	}
}

func route(name string, rules ...gwv1.HTTPRouteRule) gwv1.HTTPRoute {
	return gwv1.HTTPRoute{ObjectMeta: objMeta("ns", name), Spec: gwv1.HTTPRouteSpec{
		CommonRouteSpec: gwv1.CommonRouteSpec{ParentRefs: []gwv1.ParentReference{{Name: "gw"}}}, Rules: rules}}
}

// listener is the igw Gateway document igw serve puts before the
// generated ones.
const listener = "apiVersion: igw.dev/v1alpha1\nkind: Gateway\nmetadata: {name: igw}\n"

// parse checks the plan's documents load as igw serve loads them and
// returns the configuration.
func parse(t *testing.T, p *Plan) *config.Config {
	t.Helper()
	cfg, err := igwSchema().Parse("generated", append([]byte(listener), join(p.Base, p.Rules)...))
	if err != nil {
		t.Fatalf("generated configuration does not load: %v\n%s", err, join(p.Base, p.Rules))
	}
	return cfg
}

func TestTranslate_ModelHeaderRouteToPoolAndServiceEndpoints(t *testing.T) {
	s := base()
	s.HTTPRoutes = []gwv1.HTTPRoute{route("r", gwv1.HTTPRouteRule{
		Matches:     []gwv1.HTTPRouteMatch{modelMatch("x-gateway-model-name", "llama-3")},
		BackendRefs: []gwv1.HTTPBackendRef{poolRef("llama", 3), serviceRef("svc", 80, 1)},
	})}
	p := Translate(s)
	if len(p.Classes) != 1 || len(p.Gateways) != 1 || len(p.Routes) != 1 {
		t.Fatalf("classes %d gateways %d routes %d, want 1 each", len(p.Classes), len(p.Gateways), len(p.Routes))
	}
	if rp := p.Routes[0]; rp.Parents[0].Reason != gwv1.RouteReasonAccepted || rp.ResolvedReason != "" || rp.Unsupported != "" {
		t.Fatalf("route plan = %+v", rp)
	}
	cfg := parse(t, p)
	routes := engine.Routes(cfg)
	if len(routes) != 1 {
		t.Fatalf("%d routes", len(routes))
	}
	rt := routes[0]
	if m := rt.Spec.Matches[0]; m.Model == nil || m.Model.Value != "llama-3" || len(m.Headers) != 0 {
		t.Errorf("match = %+v, want the model from the body, no header condition", m)
	}
	// pool 3 : service 1, the service's weight spread over its two ready
	// endpoints (the unready third is left out): 6 : 1 : 1.
	got := map[string]int32{}
	for _, b := range rt.Spec.Backends {
		got[b.Pool+b.URL] = *b.Weight
	}
	want := map[string]int32{"llama": 6, "http://10.1.0.1:8080": 1, "http://10.1.0.2:8080": 1}
	if len(got) != len(want) {
		t.Fatalf("backends = %v, want %v", got, want)
	}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("backends = %v, want %v", got, want)
		}
	}
	// The pool's ready pods of its own namespace only, one model server each.
	if !strings.Contains(string(p.Base), `"address":"10.0.0.1"`) || !strings.Contains(string(p.Base), `"address":"10.0.0.2"`) || strings.Contains(string(p.Base), "10.0.0.9") {
		t.Errorf("model servers:\n%s", p.Base)
	}
}

func TestTranslate_SecondModelHeaderShape(t *testing.T) {
	s := base()
	s.ModelHeaders = []string{"x-gateway-inference-model"}
	s.HTTPRoutes = []gwv1.HTTPRoute{route("r", gwv1.HTTPRouteRule{
		Matches: []gwv1.HTTPRouteMatch{modelMatch("x-gateway-inference-model", "m")}, BackendRefs: []gwv1.HTTPBackendRef{poolRef("llama", 1)}})}
	rt := engine.Routes(parse(t, Translate(s)))[0]
	if m := rt.Spec.Matches[0]; m.Model == nil || m.Model.Value != "m" {
		t.Errorf("match = %+v, want a model match", m)
	}
	// Without the header configured it stays an ordinary header match.
	s.ModelHeaders = []string{DefaultModelHeader}
	rt = engine.Routes(parse(t, Translate(s)))[0]
	if m := rt.Spec.Matches[0]; m.Model != nil || len(m.Headers) != 1 {
		t.Errorf("match = %+v, want a header match", m)
	}
}

func TestTranslate_RoutesIGWCannotServeSayWhy(t *testing.T) {
	regex := gwv1.HeaderMatchRegularExpression
	https := gwv1.HTTPSProtocolType
	other := gwv1.Namespace("elsewhere")
	for _, tc := range []struct {
		name   string
		edit   func(s *Snapshot)
		check  func(rp *RoutePlan) bool
		reason string
	}{
		{"missing pool", func(s *Snapshot) {
			s.HTTPRoutes = []gwv1.HTTPRoute{route("r", gwv1.HTTPRouteRule{BackendRefs: []gwv1.HTTPBackendRef{poolRef("nope", 1)}})}
		}, func(rp *RoutePlan) bool { return rp.ResolvedReason == gwv1.RouteReasonBackendNotFound }, "BackendNotFound"},
		{"cross-namespace backend", func(s *Snapshot) {
			b := poolRef("llama", 1)
			b.Namespace = &other
			s.HTTPRoutes = []gwv1.HTTPRoute{route("r", gwv1.HTTPRouteRule{BackendRefs: []gwv1.HTTPBackendRef{b}})}
		}, func(rp *RoutePlan) bool { return rp.ResolvedReason == gwv1.RouteReasonRefNotPermitted }, "RefNotPermitted"},
		{"unknown kind", func(s *Snapshot) {
			b := poolRef("llama", 1)
			b.Kind = ptr(gwv1.Kind("Bucket"))
			s.HTTPRoutes = []gwv1.HTTPRoute{route("r", gwv1.HTTPRouteRule{BackendRefs: []gwv1.HTTPBackendRef{b}})}
		}, func(rp *RoutePlan) bool { return rp.ResolvedReason == gwv1.RouteReasonInvalidKind }, "InvalidKind"},
		{"regex header", func(s *Snapshot) {
			m := modelMatch("x-tenant", "a.*")
			m.Headers[0].Type = &regex
			s.HTTPRoutes = []gwv1.HTTPRoute{route("r", gwv1.HTTPRouteRule{Matches: []gwv1.HTTPRouteMatch{m}, BackendRefs: []gwv1.HTTPBackendRef{poolRef("llama", 1)}})}
		}, func(rp *RoutePlan) bool { return strings.Contains(rp.Unsupported, "RegularExpression") }, "Unsupported"},
		{"filter", func(s *Snapshot) {
			s.HTTPRoutes = []gwv1.HTTPRoute{route("r", gwv1.HTTPRouteRule{Filters: []gwv1.HTTPRouteFilter{{Type: gwv1.HTTPRouteFilterRequestMirror}},
				BackendRefs: []gwv1.HTTPBackendRef{poolRef("llama", 1)}})}
		}, func(rp *RoutePlan) bool { return strings.Contains(rp.Unsupported, "RequestMirror") }, "Unsupported"},
		{"https listener", func(s *Snapshot) {
			s.Gateways[0].Spec.Listeners[0].Protocol = https
			s.HTTPRoutes = []gwv1.HTTPRoute{route("r", gwv1.HTTPRouteRule{BackendRefs: []gwv1.HTTPBackendRef{poolRef("llama", 1)}})}
		}, func(rp *RoutePlan) bool { return rp.Parents[0].Reason == gwv1.RouteReasonNotAllowedByListeners }, "NotAllowedByListeners"},
		{"other namespace not allowed", func(s *Snapshot) {
			r := route("r", gwv1.HTTPRouteRule{BackendRefs: []gwv1.HTTPBackendRef{poolRef("llama", 1)}})
			r.Namespace = "team-b"
			ns := gwv1.Namespace("ns")
			r.Spec.ParentRefs[0].Namespace = &ns
			s.HTTPRoutes = []gwv1.HTTPRoute{r}
		}, func(rp *RoutePlan) bool { return rp.Parents[0].Reason == gwv1.RouteReasonNotAllowedByListeners }, "NotAllowedByListeners"},
		{"hostname mismatch", func(s *Snapshot) {
			h := gwv1.Hostname("*.example.com")
			s.Gateways[0].Spec.Listeners[0].Hostname = &h
			r := route("r", gwv1.HTTPRouteRule{BackendRefs: []gwv1.HTTPBackendRef{poolRef("llama", 1)}})
			r.Spec.Hostnames = []gwv1.Hostname{"api.example.org"}
			s.HTTPRoutes = []gwv1.HTTPRoute{r}
		}, func(rp *RoutePlan) bool { return rp.Parents[0].Reason == gwv1.RouteReasonNoMatchingListenerHostname }, "NoMatchingListenerHostname"},
		{"no such section", func(s *Snapshot) {
			r := route("r", gwv1.HTTPRouteRule{BackendRefs: []gwv1.HTTPBackendRef{poolRef("llama", 1)}})
			r.Spec.ParentRefs[0].SectionName = ptr(gwv1.SectionName("grpc"))
			s.HTTPRoutes = []gwv1.HTTPRoute{r}
		}, func(rp *RoutePlan) bool { return rp.Parents[0].Reason == gwv1.RouteReasonNoMatchingParent }, "NoMatchingParent"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := base()
			tc.edit(s)
			p := Translate(s)
			if len(p.Routes) != 1 || !tc.check(p.Routes[0]) {
				t.Fatalf("want %s; routes = %+v", tc.reason, p.Routes)
			}
			// Whatever it is, what is generated still loads.
			parse(t, p)
		})
	}
}

func TestTranslate_WildcardHostnamesAttach(t *testing.T) {
	s := base()
	h := gwv1.Hostname("*.example.com")
	s.Gateways[0].Spec.Listeners[0].Hostname = &h
	r := route("r", gwv1.HTTPRouteRule{BackendRefs: []gwv1.HTTPBackendRef{poolRef("llama", 1)}})
	r.Spec.Hostnames = []gwv1.Hostname{"api.example.com"}
	s.HTTPRoutes = []gwv1.HTTPRoute{r}
	p := Translate(s)
	if p.Routes[0].Parents[0].Reason != gwv1.RouteReasonAccepted || p.Gateways[0].Attached["http"] != 1 {
		t.Fatalf("route %+v, attached %v", p.Routes[0].Parents, p.Gateways[0].Attached)
	}
}

func TestRouteBackends_WeightsStayProportionalAndBounded(t *testing.T) {
	urls := func(n int) []string {
		var out []string
		for i := range n {
			out = append(out, "http://10.0.0."+string(rune('1'+i))+":80")
		}
		return out
	}
	bs := routeBackends([]target{{pool: "a", weight: 1_000_000}, {urls: urls(3), weight: 1_000_000}})
	var total, pool int64
	for _, b := range bs {
		if *b.Weight < 0 || *b.Weight > engine.MaxBackendWeight {
			t.Fatalf("weight %d out of bounds", *b.Weight)
		}
		total += int64(*b.Weight)
		if b.Pool == "a" {
			pool = int64(*b.Weight)
		}
	}
	if d := pool*2 - total; d < -int64(len(bs)) || d > int64(len(bs)) {
		t.Errorf("pool weight %d of %d, want half (within rounding)", pool, total)
	}
	if routeBackends([]target{{pool: "a", weight: 0}}) != nil {
		t.Error("all-zero weights gave backends")
	}
}

// TestReconcilerApply_DataPlaneRefusalLeavesOnlyThatRouteOut: a route the
// data plane refuses (here: two routes selecting exactly the same requests)
// is the only one left out, the older one wins, and the whole is applied.
func TestReconcilerApply_DataPlaneRefusalLeavesOnlyThatRouteOut(t *testing.T) {
	s := base()
	older := route("older", gwv1.HTTPRouteRule{Matches: []gwv1.HTTPRouteMatch{modelMatch(DefaultModelHeader, "m")}, BackendRefs: []gwv1.HTTPBackendRef{poolRef("llama", 1)}})
	newer := route("newer", gwv1.HTTPRouteRule{Matches: []gwv1.HTTPRouteMatch{modelMatch(DefaultModelHeader, "m")}, BackendRefs: []gwv1.HTTPBackendRef{poolRef("llama", 1)}})
	newer.CreationTimestamp = metav1.NewTime(older.CreationTimestamp.Add(time.Second))
	s.HTTPRoutes = []gwv1.HTTPRoute{newer, older}
	var applied []byte
	check := func(b []byte) error {
		_, err := igwSchema().Parse("generated", append([]byte(listener), b...))
		return err
	}
	r := &reconciler{o: Options{Check: check, Apply: func(b []byte) error {
		if err := check(b); err != nil {
			return err
		}
		applied = b
		return nil
	}}, applied: new(atomic.Bool), leader: new(atomic.Bool), log: slog.New(slog.DiscardHandler)}
	p := Translate(s)
	rejected, err := r.apply(p)
	if err != nil {
		t.Fatal(err)
	}
	if len(rejected) != 1 || rejected[kindHTTPRoute+"/ns/newer"] == nil || !strings.Contains(rejected[kindHTTPRoute+"/ns/newer"].Error(), "same requests") {
		t.Fatalf("rejected = %v, want only the newer route, for matching the same requests", rejected)
	}
	if !strings.Contains(string(applied), "httproute.older.0") || strings.Contains(string(applied), "httproute.newer.0") || !r.applied.Load() {
		t.Errorf("applied:\n%s", applied)
	}
	// Statuses say so.
	ok, reason, msg := routeState(p.Routes[1], p.Routes[1].Parents[0], rejected)
	if p.Routes[1].Route.Name != "newer" || ok || reason != string(gwv1.RouteReasonUnsupportedValue) || !strings.Contains(msg, "refused") {
		t.Errorf("newer route state = %v %s %s", ok, reason, msg)
	}
	// An empty cluster is applied too (the data plane is then ready).
	empty := &reconciler{o: r.o, applied: new(atomic.Bool), leader: new(atomic.Bool), log: slog.New(slog.DiscardHandler)}
	if _, err := empty.apply(&Plan{}); err != nil || !empty.applied.Load() {
		t.Errorf("empty plan: %v, applied %v", err, empty.applied.Load())
	}
	// The same plan again applies nothing (no reload per status write).
	applied = nil
	if _, err := r.apply(Translate(s)); err != nil || applied != nil {
		t.Errorf("second apply: %v, applied %d bytes", err, len(applied))
	}
	// A data plane that refuses the base reports it; nothing is applied.
	r.o.Check = func([]byte) error { return errors.New("broken") }
	r.lastApplied = nil
	if _, err := r.apply(p); err == nil {
		t.Error("a refused base applied")
	}
}

func TestTranslate_FiltersAndListenerHostnames(t *testing.T) {
	s := base()
	h := gwv1.Hostname("api.example.com")
	s.Gateways[0].Spec.Listeners[0].Hostname = &h
	prefix := "/openai/v1"
	pathPrefix := gwv1.PathMatchPathPrefix
	v1Path := "/v1"
	s.HTTPRoutes = []gwv1.HTTPRoute{route("r", gwv1.HTTPRouteRule{
		Matches: []gwv1.HTTPRouteMatch{{Path: &gwv1.HTTPPathMatch{Type: &pathPrefix, Value: &v1Path}}},
		Filters: []gwv1.HTTPRouteFilter{
			{Type: gwv1.HTTPRouteFilterRequestHeaderModifier, RequestHeaderModifier: &gwv1.HTTPHeaderFilter{Set: []gwv1.HTTPHeader{{Name: "x-tenant", Value: "a"}}, Remove: []string{"x-debug"}}},
			{Type: gwv1.HTTPRouteFilterURLRewrite, URLRewrite: &gwv1.HTTPURLRewriteFilter{Path: &gwv1.HTTPPathModifier{Type: gwv1.PrefixMatchHTTPPathModifier, ReplacePrefixMatch: &prefix}}},
		},
		BackendRefs: []gwv1.HTTPBackendRef{poolRef("llama", 1)},
	})}
	rt := engine.Routes(parse(t, Translate(s)))[0]
	if len(rt.Spec.Hostnames) != 1 || rt.Spec.Hostnames[0] != "api.example.com" {
		t.Errorf("hostnames = %v, want the listener's", rt.Spec.Hostnames)
	}
	if m := rt.Spec.RequestHeaders; m == nil || len(m.Set) != 1 || m.Set[0].Name != "x-tenant" || len(m.Remove) != 1 {
		t.Errorf("request headers = %+v", m)
	}
	if pr := rt.Spec.PathRewrite; pr == nil || pr.ReplacePrefixMatch == nil || *pr.ReplacePrefixMatch != prefix {
		t.Errorf("path rewrite = %+v", pr)
	}
	// A filter setting the gateway's routing header is refused by the data
	// plane, so the route is left out and says why.
	s.HTTPRoutes[0].Spec.Rules[0].Filters[0].RequestHeaderModifier.Set[0].Name = "x-gateway-destination-endpoint"
	p := Translate(s)
	if err := func() error {
		_, err := igwSchema().Parse("generated", append([]byte(listener), join(p.Base, p.Rules)...))
		return err
	}(); err == nil || !strings.Contains(err.Error(), "routing header") {
		t.Errorf("routing header set by a filter: %v", err)
	}
}
