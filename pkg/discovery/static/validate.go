package static

import (
	"fmt"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/api/validate/content"

	v1 "github.com/igw-dev/igw/api/v1"
	"github.com/igw-dev/igw/api/v1alpha2"
	"github.com/igw-dev/igw/pkg/config"
	"github.com/igw-dev/igw/pkg/datastore"
)

// Limits of lists. The Kubernetes kinds' limits are those of their CRD
// schemas (see the kubebuilder markers in package api).
const (
	maxMatchLabels    = 64
	maxTargetPorts    = 8
	maxServerPorts    = 64
	maxRewriteRules   = 64
	maxRewriteMatches = 64
	maxRewriteTargets = 32
	maxRewriteWeight  = 1_000_000
	maxPortNumber     = 65535
)

func validatePort(f *config.Fields, field string, n v1.PortNumber) {
	if n < 1 || n > maxPortNumber {
		f.Errorf(field, "must be 1..65535, not %d", n)
	}
}

// validatePorts validates a list of ports and reports duplicates.
func validatePorts(f *config.Fields, field string, ports []v1.Port) {
	seen := make(map[v1.PortNumber]int, len(ports))
	for i, p := range ports {
		pf := fmt.Sprintf("%s[%d].number", field, i)
		validatePort(f, pf, p.Number)
		if j, dup := seen[p.Number]; dup {
			f.Errorf(pf, "duplicate port %d (also %s[%d])", p.Number, field, j)
		}
		seen[p.Number] = i
	}
}

func validatePool(p *v1.InferencePool, f *config.Fields) {
	s := &p.Spec
	switch n := len(s.Selector.MatchLabels); {
	case n == 0:
		f.Errorf("spec.selector.matchLabels", "required: at least one label, which the pool's model servers carry")
	case n > maxMatchLabels:
		f.Errorf("spec.selector.matchLabels", "at most %d labels, not %d", maxMatchLabels, n)
	}
	f.Labels("spec.selector.matchLabels", s.Selector.MatchLabels)

	switch n := len(s.TargetPorts); {
	case n == 0:
		f.Errorf("spec.targetPorts", "required: at least one port the model servers listen on")
	case n > maxTargetPorts:
		f.Errorf("spec.targetPorts", "at most %d ports, not %d", maxTargetPorts, n)
	}
	validatePorts(f, "spec.targetPorts", s.TargetPorts)

	switch s.AppProtocol {
	case "":
		s.AppProtocol = v1.AppProtocolHTTP
	case v1.AppProtocolHTTP, v1.AppProtocolH2C:
	default:
		f.Errorf("spec.appProtocol", "must be %q or %q, not %q", v1.AppProtocolHTTP, v1.AppProtocolH2C, s.AppProtocol)
	}

	if r := s.EndpointPickerRef; r != nil {
		const ef = "spec.endpointPickerRef"
		if r.Group == nil {
			r.Group = new(v1.Group)
		}
		if r.Kind == "" {
			r.Kind = "Service"
		}
		if r.Name == "" {
			f.Errorf(ef+".name", "required")
		} else {
			f.DNSSubdomain(ef+".name", string(r.Name))
		}
		if r.Port == nil {
			if *r.Group == "" && r.Kind == "Service" {
				f.Errorf(ef+".port", "required when the picker is a Service")
			}
		} else {
			validatePort(f, ef+".port.number", r.Port.Number)
		}
		switch r.FailureMode {
		case "":
			r.FailureMode = v1.EndpointPickerFailClose
		case v1.EndpointPickerFailOpen, v1.EndpointPickerFailClose:
		default:
			f.Errorf(ef+".failureMode", "must be %s or %s, not %q", v1.EndpointPickerFailOpen, v1.EndpointPickerFailClose, r.FailureMode)
		}
	}
}

// validatePoolRef defaults and validates a reference to an InferencePool.
// Whether the pool exists is checked later, across documents
// (checkPoolRef).
func validatePoolRef(f *config.Fields, field string, r *v1alpha2.PoolObjectReference) {
	if r.Group == "" {
		r.Group = v1alpha2.PoolGroup
	}
	if r.Kind == "" {
		r.Kind = v1alpha2.PoolKind
	}
	if r.Group != v1alpha2.PoolGroup {
		f.Errorf(field+".group", "must be %s, not %q", v1alpha2.PoolGroup, r.Group)
	}
	if r.Kind != v1alpha2.PoolKind {
		f.Errorf(field+".kind", "must be %s, not %q", v1alpha2.PoolKind, r.Kind)
	}
	if r.Name == "" {
		f.Errorf(field+".name", "required")
	}
}

func checkPoolRef(cfg *config.Config, f *config.Fields, namespace string, ref v1alpha2.PoolObjectReference) {
	if Pool(cfg, namespace, string(ref.Name)) == nil {
		f.Errorf("spec.poolRef.name", "InferencePool %q not found in namespace %q", ref.Name, namespace)
	}
}

func validateRewrite(r *v1alpha2.InferenceModelRewrite, f *config.Fields) {
	validatePoolRef(f, "spec.poolRef", &r.Spec.PoolRef)
	switch n := len(r.Spec.Rules); {
	case n == 0:
		f.Errorf("spec.rules", "required: at least one rule")
	case n > maxRewriteRules:
		f.Errorf("spec.rules", "at most %d rules, not %d", maxRewriteRules, n)
	}
	for i := range r.Spec.Rules {
		rule := &r.Spec.Rules[i]
		rf := fmt.Sprintf("spec.rules[%d]", i)
		if n := len(rule.Matches); n > maxRewriteMatches {
			f.Errorf(rf+".matches", "at most %d matches, not %d", maxRewriteMatches, n)
		}
		for j := range rule.Matches {
			m := &rule.Matches[j].Model
			mf := fmt.Sprintf("%s.matches[%d].model", rf, j)
			if m.Type == "" {
				m.Type = v1alpha2.MatchExact
			}
			if m.Type != v1alpha2.MatchExact {
				f.Errorf(mf+".type", "must be %s, not %q", v1alpha2.MatchExact, m.Type)
			}
			f.ModelName(mf+".value", m.Value)
		}
		switch n := len(rule.Targets); {
		case n == 0:
			f.Errorf(rf+".targets", "required: at least one target model")
		case n > maxRewriteTargets:
			f.Errorf(rf+".targets", "at most %d targets, not %d", maxRewriteTargets, n)
		}
		weighted := 0
		for j, t := range rule.Targets {
			tf := fmt.Sprintf("%s.targets[%d]", rf, j)
			f.ModelName(tf+".modelRewrite", t.ModelRewrite)
			if t.Weight != nil {
				weighted++
				if w := *t.Weight; w < 1 || w > maxRewriteWeight {
					f.Errorf(tf+".weight", "must be 1..1000000, not %d", w)
				}
			}
		}
		if weighted != 0 && weighted != len(rule.Targets) {
			f.Errorf(rf+".targets", "weights must be set for all targets or for none (%d of %d have one)", weighted, len(rule.Targets))
		}
	}
}

func validateModelServer(s *ModelServer, f *config.Fields) {
	validateHostAddress(f, "spec.address", s.Spec.Address)
	if n := len(s.Spec.Ports); n > maxServerPorts {
		f.Errorf("spec.ports", "at most %d ports, not %d", maxServerPorts, n)
	}
	validatePorts(f, "spec.ports", s.Spec.Ports)
	if p := s.Spec.KVEventsPort; p < 0 || p > 65535-maxServerPorts {
		f.Errorf("spec.kvEventsPort", "must be 1..%d, not %d", 65535-maxServerPorts, p)
	}

	label, hasLabel := s.Labels[datastore.EngineTypeLabel]
	if hasLabel && !knownEngine(datastore.Engine(label)) {
		f.Errorf(fmt.Sprintf("metadata.labels[%q]", datastore.EngineTypeLabel), "unknown engine %q; want one of %s", label, engineList)
	}
	switch {
	case s.Spec.Engine == "":
		s.Spec.Engine = datastore.EngineFromLabels(s.Labels)
	case !knownEngine(s.Spec.Engine):
		f.Errorf("spec.engine", "unknown engine %q; want one of %s", s.Spec.Engine, engineList)
	case hasLabel && datastore.Engine(label) != s.Spec.Engine:
		f.Errorf("spec.engine", "%q contradicts the label %s=%s", s.Spec.Engine, datastore.EngineTypeLabel, label)
	}
}

const engineList = "vllm, sglang, trtllm-serve, triton-tensorrt-llm"

func knownEngine(e datastore.Engine) bool {
	switch e {
	case datastore.EngineVLLM, datastore.EngineSGLang, datastore.EngineTRTLLMServe, datastore.EngineTritonTRT:
		return true
	}
	return false
}

// validateHostAddress accepts an IP address or a DNS name, without a port.
func validateHostAddress(f *config.Fields, field, addr string) {
	if addr == "" {
		f.Errorf(field, "required: the server's IP address or host name")
		return
	}
	if _, err := netip.ParseAddr(addr); err == nil {
		return
	}
	if _, p, err := net.SplitHostPort(addr); err == nil {
		f.Errorf(field, "must not include a port (%s); ports come from the pool's spec.targetPorts and this server's spec.ports", p)
		return
	}
	if strings.HasPrefix(addr, "[") {
		f.Errorf(field, "write an IPv6 address without brackets, not %q", addr)
		return
	}
	if msgs := content.IsDNS1123Subdomain(strings.ToLower(addr)); len(msgs) > 0 {
		f.Errorf(field, "must be an IP address or a host name, not %q", addr)
	}
}

// checkPools reports a pool that resolves to no endpoint (a static pool
// with nothing to route to is a typo, not a state to wait out) and two
// servers that resolve to the same address, which would make one endpoint
// count twice in scheduling.
func checkPools(cfg *config.Config, r *config.Report) {
	servers := ModelServers(cfg)
	for _, pool := range Pools(cfg) {
		f := r.In(pool)
		eps := ResolveEndpoints(pool, servers)
		if len(eps) == 0 {
			selected := 0
			for _, s := range servers {
				if s.Namespace == pool.Namespace && selects(pool.Spec.Selector.MatchLabels, s.Labels) {
					selected++
				}
			}
			if selected == 0 {
				f.Errorf("spec.selector.matchLabels", "selects no ModelServer in namespace %q (want labels %s)", pool.Namespace, formatLabels(pool.Spec.Selector.MatchLabels))
			} else {
				f.Errorf("spec.targetPorts", "none of the %d selected ModelServers lists any of these ports in spec.ports", selected)
			}
			continue
		}
		byAddr := map[string]string{}
		for _, ep := range eps {
			if other, dup := byAddr[ep.Address]; dup {
				f.Errorf("spec.selector.matchLabels", "endpoint %s is provided by both ModelServer %q and %q; give them different addresses or spec.ports", ep.Address, other, ep.Server)
				continue
			}
			byAddr[ep.Address] = ep.Server
		}
	}
}

func formatLabels(labels map[string]string) string {
	parts := make([]string, 0, len(labels))
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		parts = append(parts, k+"="+labels[k])
	}
	return strings.Join(parts, ",")
}
