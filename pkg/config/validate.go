package config

import (
	"fmt"
	"maps"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/api/validate/content"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/igw-dev/igw/api/v1"
	"github.com/igw-dev/igw/api/v1alpha2"
)

// Limits of lists in the igw kinds. The Kubernetes kinds' limits are those
// of their CRD schemas (see the kubebuilder markers in package api).
const (
	maxMatchLabels     = 64
	maxTargetPorts     = 8
	maxServerPorts     = 64
	maxRouteMatches    = 64
	maxHeaderMatches   = 16
	maxRouteBackends   = 16
	maxRewriteRules    = 64
	maxRewriteMatches  = 64
	maxRewriteTargets  = 32
	maxModelNameLength = 256
	maxRewriteWeight   = 1_000_000
	maxPortNumber      = 65535
)

// validator checks and defaults one decoded document. Defaulting and
// validation go together so that each default is stated once, next to the
// rule that the defaulted value must then satisfy.
type validator struct {
	ref  docRef
	errs *errorList
}

func (v validator) errf(field, format string, args ...any) {
	v.errs.addf(v.ref, field, format, args...)
}

// meta validates and defaults the object metadata common to every kind.
func (v validator) meta(m *metav1.ObjectMeta, named bool) {
	switch {
	case m.Name == "" && named:
		v.errf("metadata.name", "required")
	case m.Name != "":
		for _, msg := range content.IsDNS1123Subdomain(m.Name) {
			v.errf("metadata.name", "%s", msg)
		}
	}
	if m.Namespace == "" {
		m.Namespace = DefaultNamespace
	} else {
		for _, msg := range content.IsDNS1123Label(m.Namespace) {
			v.errf("metadata.namespace", "%s", msg)
		}
	}
	v.labels("metadata.labels", m.Labels)
}

// labels validates label keys and values with the Kubernetes rules, so that
// a file valid here stays valid in a cluster.
func (v validator) labels(field string, labels map[string]string) {
	for _, k := range sortedStringKeys(labels) {
		f := field + "[" + strconv.Quote(k) + "]"
		for _, msg := range content.IsLabelKey(k) {
			v.errf(f, "invalid label key: %s", msg)
		}
		for _, msg := range content.IsLabelValue(labels[k]) {
			v.errf(f, "invalid label value: %s", msg)
		}
	}
}

func (v validator) port(field string, n v1.PortNumber) {
	if n < 1 || n > maxPortNumber {
		v.errf(field, "must be 1..65535, not %d", n)
	}
}

// ports validates a list of ports and reports duplicates.
func (v validator) ports(field string, ports []v1.Port) {
	seen := make(map[v1.PortNumber]int, len(ports))
	for i, p := range ports {
		f := fmt.Sprintf("%s[%d].number", field, i)
		v.port(f, p.Number)
		if j, dup := seen[p.Number]; dup {
			v.errf(f, "duplicate port %d (also %s[%d])", p.Number, field, j)
		}
		seen[p.Number] = i
	}
}

func (v validator) pool(p *v1.InferencePool) {
	s := &p.Spec
	switch n := len(s.Selector.MatchLabels); {
	case n == 0:
		v.errf("spec.selector.matchLabels", "required: at least one label, which the pool's model servers carry")
	case n > maxMatchLabels:
		v.errf("spec.selector.matchLabels", "at most %d labels, not %d", maxMatchLabels, n)
	}
	v.labels("spec.selector.matchLabels", s.Selector.MatchLabels)

	switch n := len(s.TargetPorts); {
	case n == 0:
		v.errf("spec.targetPorts", "required: at least one port the model servers listen on")
	case n > maxTargetPorts:
		v.errf("spec.targetPorts", "at most %d ports, not %d", maxTargetPorts, n)
	}
	v.ports("spec.targetPorts", s.TargetPorts)

	switch s.AppProtocol {
	case "":
		s.AppProtocol = v1.AppProtocolHTTP
	case v1.AppProtocolHTTP, v1.AppProtocolH2C:
	default:
		v.errf("spec.appProtocol", "must be %q or %q, not %q", v1.AppProtocolHTTP, v1.AppProtocolH2C, s.AppProtocol)
	}

	if r := s.EndpointPickerRef; r != nil {
		const f = "spec.endpointPickerRef"
		if r.Group == nil {
			r.Group = new(v1.Group)
		}
		if r.Kind == "" {
			r.Kind = "Service"
		}
		if r.Name == "" {
			v.errf(f+".name", "required")
		} else {
			for _, msg := range content.IsDNS1123Subdomain(string(r.Name)) {
				v.errf(f+".name", "%s", msg)
			}
		}
		if r.Port == nil {
			if *r.Group == "" && r.Kind == "Service" {
				v.errf(f+".port", "required when the picker is a Service")
			}
		} else {
			v.port(f+".port.number", r.Port.Number)
		}
		switch r.FailureMode {
		case "":
			r.FailureMode = v1.EndpointPickerFailClose
		case v1.EndpointPickerFailOpen, v1.EndpointPickerFailClose:
		default:
			v.errf(f+".failureMode", "must be %s or %s, not %q", v1.EndpointPickerFailOpen, v1.EndpointPickerFailClose, r.FailureMode)
		}
	}
}

// poolRef defaults and validates a reference to an InferencePool. Whether
// the pool exists is checked later, across documents.
func (v validator) poolRef(field string, r *v1alpha2.PoolObjectReference) {
	if r.Group == "" {
		r.Group = v1alpha2.PoolGroup
	}
	if r.Kind == "" {
		r.Kind = v1alpha2.PoolKind
	}
	if r.Group != v1alpha2.PoolGroup {
		v.errf(field+".group", "must be %s, not %q", v1alpha2.PoolGroup, r.Group)
	}
	if r.Kind != v1alpha2.PoolKind {
		v.errf(field+".kind", "must be %s, not %q", v1alpha2.PoolKind, r.Kind)
	}
	if r.Name == "" {
		v.errf(field+".name", "required")
	}
}

func (v validator) objective(o *v1alpha2.InferenceObjective) {
	v.poolRef("spec.poolRef", &o.Spec.PoolRef)
}

func (v validator) rewrite(r *v1alpha2.InferenceModelRewrite) {
	v.poolRef("spec.poolRef", &r.Spec.PoolRef)
	switch n := len(r.Spec.Rules); {
	case n == 0:
		v.errf("spec.rules", "required: at least one rule")
	case n > maxRewriteRules:
		v.errf("spec.rules", "at most %d rules, not %d", maxRewriteRules, n)
	}
	for i := range r.Spec.Rules {
		rule := &r.Spec.Rules[i]
		f := fmt.Sprintf("spec.rules[%d]", i)
		if n := len(rule.Matches); n > maxRewriteMatches {
			v.errf(f+".matches", "at most %d matches, not %d", maxRewriteMatches, n)
		}
		for j := range rule.Matches {
			m := &rule.Matches[j].Model
			mf := fmt.Sprintf("%s.matches[%d].model", f, j)
			if m.Type == "" {
				m.Type = v1alpha2.MatchExact
			}
			if m.Type != v1alpha2.MatchExact {
				v.errf(mf+".type", "must be %s, not %q", v1alpha2.MatchExact, m.Type)
			}
			v.modelName(mf+".value", m.Value)
		}
		switch n := len(rule.Targets); {
		case n == 0:
			v.errf(f+".targets", "required: at least one target model")
		case n > maxRewriteTargets:
			v.errf(f+".targets", "at most %d targets, not %d", maxRewriteTargets, n)
		}
		weighted := 0
		for j, t := range rule.Targets {
			tf := fmt.Sprintf("%s.targets[%d]", f, j)
			v.modelName(tf+".modelRewrite", t.ModelRewrite)
			if t.Weight != nil {
				weighted++
				if w := *t.Weight; w < 1 || w > maxRewriteWeight {
					v.errf(tf+".weight", "must be 1..1000000, not %d", w)
				}
			}
		}
		if weighted != 0 && weighted != len(rule.Targets) {
			v.errf(f+".targets", "weights must be set for all targets or for none (%d of %d have one)", weighted, len(rule.Targets))
		}
	}
}

func (v validator) modelName(field, name string) {
	switch {
	case name == "":
		v.errf(field, "required")
	case len(name) > maxModelNameLength:
		v.errf(field, "at most %d bytes, not %d", maxModelNameLength, len(name))
	}
}

// defaultGateway fills in every unset Gateway field.
func defaultGateway(g *Gateway) {
	s := &g.Spec
	if s.Address == "" {
		s.Address = DefaultAddress
	}
	if s.AdminAddress == "" {
		s.AdminAddress = DefaultAdminAddress
	}
	if s.MaxRequestBodySize == nil {
		s.MaxRequestBodySize = resource.NewQuantity(DefaultMaxRequestBodySize, resource.BinarySI)
	}
	t := &s.Timeouts
	if t.ReadHeader == nil {
		t.ReadHeader = &metav1.Duration{Duration: DefaultReadHeaderTimeout}
	}
	if t.Request == nil {
		t.Request = &metav1.Duration{Duration: DefaultRequestTimeout}
	}
	if t.Idle == nil {
		t.Idle = &metav1.Duration{Duration: DefaultIdleTimeout}
	}
}

func (v validator) gateway(g *Gateway) {
	defaultGateway(g)
	s := &g.Spec
	v.listenAddress("spec.address", s.Address)
	v.listenAddress("spec.adminAddress", s.AdminAddress)
	if s.AdminAddress == s.Address && !strings.HasSuffix(s.Address, ":0") {
		v.errf("spec.adminAddress", "must differ from spec.address (%s)", s.Address)
	}
	if s.MaxRequestBodySize.Sign() <= 0 {
		v.errf("spec.maxRequestBodySize", "must be positive, not %s", s.MaxRequestBodySize)
	}
	t := s.Timeouts
	v.positiveDuration("spec.timeouts.readHeader", t.ReadHeader.Duration)
	v.positiveDuration("spec.timeouts.idle", t.Idle.Duration)
	v.nonNegativeDuration("spec.timeouts.request", t.Request.Duration)
}

func (v validator) listenAddress(field, addr string) {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		v.errf(field, "must be host:port such as \":8080\" or \"127.0.0.1:8080\", not %q", addr)
		return
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > maxPortNumber {
		v.errf(field, "port must be 0..65535, not %q", port)
	}
}

func (v validator) positiveDuration(field string, d time.Duration) {
	if d <= 0 {
		v.errf(field, "must be positive, not %s", d)
	}
}

func (v validator) nonNegativeDuration(field string, d time.Duration) {
	if d < 0 {
		v.errf(field, "must not be negative, not %s (0s means no limit)", d)
	}
}

func (v validator) modelServer(s *ModelServer) {
	v.hostAddress("spec.address", s.Spec.Address)
	if n := len(s.Spec.Ports); n > maxServerPorts {
		v.errf("spec.ports", "at most %d ports, not %d", maxServerPorts, n)
	}
	v.ports("spec.ports", s.Spec.Ports)

	label, hasLabel := s.Labels[EngineTypeLabel]
	if hasLabel && !knownEngine(Engine(label)) {
		v.errf(fmt.Sprintf("metadata.labels[%q]", EngineTypeLabel), "unknown engine %q; want one of %s", label, engineList)
	}
	switch {
	case s.Spec.Engine == "":
		s.Spec.Engine = EngineFromLabels(s.Labels)
	case !knownEngine(s.Spec.Engine):
		v.errf("spec.engine", "unknown engine %q; want one of %s", s.Spec.Engine, engineList)
	case hasLabel && Engine(label) != s.Spec.Engine:
		v.errf("spec.engine", "%q contradicts the label %s=%s", s.Spec.Engine, EngineTypeLabel, label)
	}
}

const engineList = "vllm, sglang, trtllm-serve, triton-tensorrt-llm"

func knownEngine(e Engine) bool {
	switch e {
	case EngineVLLM, EngineSGLang, EngineTRTLLMServe, EngineTritonTRT:
		return true
	}
	return false
}

// hostAddress accepts an IP address or a DNS name, without a port.
func (v validator) hostAddress(field, addr string) {
	if addr == "" {
		v.errf(field, "required: the server's IP address or host name")
		return
	}
	if _, err := netip.ParseAddr(addr); err == nil {
		return
	}
	if _, p, err := net.SplitHostPort(addr); err == nil {
		v.errf(field, "must not include a port (%s); ports come from the pool's spec.targetPorts and this server's spec.ports", p)
		return
	}
	if strings.HasPrefix(addr, "[") {
		v.errf(field, "write an IPv6 address without brackets, not %q", addr)
		return
	}
	if msgs := content.IsDNS1123Subdomain(strings.ToLower(addr)); len(msgs) > 0 {
		v.errf(field, "must be an IP address or a host name, not %q", addr)
	}
}

func (v validator) route(r *Route) {
	s := &r.Spec
	if n := len(s.Matches); n > maxRouteMatches {
		v.errf("spec.matches", "at most %d matches, not %d", maxRouteMatches, n)
	}
	for i := range s.Matches {
		v.routeMatch(fmt.Sprintf("spec.matches[%d]", i), &s.Matches[i])
	}

	switch n := len(s.Backends); {
	case n == 0:
		v.errf("spec.backends", "required: at least one backend")
	case n > maxRouteBackends:
		v.errf("spec.backends", "at most %d backends, not %d", maxRouteBackends, n)
	}
	total := int64(0)
	for i := range s.Backends {
		b := &s.Backends[i]
		f := fmt.Sprintf("spec.backends[%d]", i)
		switch {
		case b.Pool == "" && b.URL == "":
			v.errf(f, "set pool (an InferencePool name) or url")
		case b.Pool != "" && b.URL != "":
			v.errf(f, "set pool or url, not both")
		case b.Pool != "":
			for _, msg := range content.IsDNS1123Subdomain(b.Pool) {
				v.errf(f+".pool", "%s", msg)
			}
		default:
			v.backendURL(f+".url", b.URL)
		}
		if b.Weight == nil {
			w := int32(DefaultBackendWeight)
			b.Weight = &w
		}
		if w := *b.Weight; w < 0 || w > MaxBackendWeight {
			v.errf(f+".weight", "must be 0..1000000, not %d", w)
		} else {
			total += int64(w)
		}
	}
	if len(s.Backends) > 0 && total == 0 {
		v.errf("spec.backends", "at least one backend needs a weight above 0")
	}

	if s.Timeout != nil {
		v.nonNegativeDuration("spec.timeout", s.Timeout.Duration)
	}
	if s.Retries == nil {
		n := int32(DefaultRouteRetries)
		s.Retries = &n
	}
	if n := *s.Retries; n < 0 || n > MaxRouteRetries {
		v.errf("spec.retries", "must be 0..%d, not %d", MaxRouteRetries, n)
	}
}

func (v validator) routeMatch(f string, m *RouteMatch) {
	if mm := m.Model; mm != nil {
		switch mm.Type {
		case "":
			mm.Type = ModelMatchExact
		case ModelMatchExact, ModelMatchPrefix:
		default:
			v.errf(f+".model.type", "must be %s or %s, not %q", ModelMatchExact, ModelMatchPrefix, mm.Type)
		}
		v.modelName(f+".model.value", mm.Value)
	}
	if pm := m.Path; pm != nil {
		switch pm.Type {
		case "":
			pm.Type = PathMatchPathPrefix
		case PathMatchExact, PathMatchPathPrefix:
		default:
			v.errf(f+".path.type", "must be %s or %s, not %q", PathMatchExact, PathMatchPathPrefix, pm.Type)
		}
		if !strings.HasPrefix(pm.Value, "/") {
			v.errf(f+".path.value", "must start with \"/\", not %q", pm.Value)
		}
	}
	if n := len(m.Headers); n > maxHeaderMatches {
		v.errf(f+".headers", "at most %d headers, not %d", maxHeaderMatches, n)
	}
	seen := map[string]int{}
	for i := range m.Headers {
		h := &m.Headers[i]
		hf := fmt.Sprintf("%s.headers[%d]", f, i)
		if h.Type == "" {
			h.Type = HeaderMatchExact
		}
		if h.Type != HeaderMatchExact {
			v.errf(hf+".type", "must be %s, not %q", HeaderMatchExact, h.Type)
		}
		if !isHTTPToken(h.Name) {
			v.errf(hf+".name", "must be an HTTP header name, not %q", h.Name)
			continue
		}
		key := strings.ToLower(h.Name)
		if j, dup := seen[key]; dup {
			v.errf(hf+".name", "duplicate header %q (also headers[%d]); a header can only equal one value", h.Name, j)
		}
		seen[key] = i
	}
}

func (v validator) backendURL(field, raw string) {
	u, err := url.Parse(raw)
	if err != nil {
		v.errf(field, "invalid URL: %v", err)
		return
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		v.errf(field, "must be an http:// or https:// URL, not %q", raw)
	case u.Host == "":
		v.errf(field, "must include a host, not %q", raw)
	case u.User != nil:
		v.errf(field, "must not contain credentials")
	case u.RawQuery != "" || u.Fragment != "":
		v.errf(field, "must not have a query or fragment, not %q", raw)
	}
}

// isHTTPToken reports whether s is a valid HTTP field name (RFC 9110
// token).
func isHTTPToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

func sortedStringKeys(m map[string]string) []string {
	return slices.Sorted(maps.Keys(m))
}
