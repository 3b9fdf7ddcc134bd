package config

import (
	"fmt"
	"slices"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/igw-dev/igw/api/v1"
)

// crossValidate checks what no single document can: unique names,
// references between documents, pools that resolve to endpoints and routes
// that do not shadow each other. It also applies the defaults that depend
// on other documents (a route's timeout comes from the Gateway).
func (p *parser) crossValidate(cfg *Config) {
	refs := make(map[any]docRef, len(p.docs))
	for _, d := range p.docs {
		refs[d.obj] = d.ref
	}

	p.checkUnique(refs, cfg)
	p.crossValidateSecurity(cfg, refs)

	for _, o := range cfg.Objectives {
		if cfg.Pool(o.Namespace, string(o.Spec.PoolRef.Name)) == nil {
			p.errs.addf(refs[o], "spec.poolRef.name", "InferencePool %q not found in namespace %q", o.Spec.PoolRef.Name, o.Namespace)
		}
	}
	for _, r := range cfg.Rewrites {
		if cfg.Pool(r.Namespace, string(r.Spec.PoolRef.Name)) == nil {
			p.errs.addf(refs[r], "spec.poolRef.name", "InferencePool %q not found in namespace %q", r.Spec.PoolRef.Name, r.Namespace)
		}
	}

	for _, pool := range cfg.Pools {
		p.checkPoolEndpoints(refs[pool], pool, cfg.ModelServers)
	}

	seenMatch := map[string]string{} // match key → "Route "x" spec.matches[i]"
	for _, r := range cfg.Routes {
		ref := refs[r]
		for i, b := range r.Spec.Backends {
			if b.Pool != "" && cfg.Pool(r.Namespace, b.Pool) == nil {
				p.errs.addf(ref, fmt.Sprintf("spec.backends[%d].pool", i), "InferencePool %q not found in namespace %q", b.Pool, r.Namespace)
			}
		}
		if r.Spec.Timeout == nil {
			r.Spec.Timeout = &metav1.Duration{Duration: cfg.Gateway.Spec.Timeouts.Request.Duration}
		}
		keys := make([]string, 0, len(r.Spec.Matches))
		fields := make([]string, 0, len(r.Spec.Matches))
		if len(r.Spec.Matches) == 0 {
			keys, fields = append(keys, matchKey(RouteMatch{})), append(fields, "spec.matches")
		}
		for i, m := range r.Spec.Matches {
			keys, fields = append(keys, matchKey(m)), append(fields, fmt.Sprintf("spec.matches[%d]", i))
		}
		for i, k := range keys {
			if prev, dup := seenMatch[k]; dup {
				p.errs.addf(ref, fields[i], "matches exactly the same requests as %s; which route wins would be arbitrary", prev)
				continue
			}
			seenMatch[k] = fmt.Sprintf("Route %q %s", r.Name, fields[i])
		}
	}
}

// checkUnique reports objects of the same kind with the same namespace and
// name: in Kubernetes the second would overwrite the first, which in a file
// is always a mistake.
func (p *parser) checkUnique(refs map[any]docRef, cfg *Config) {
	first := map[string]docRef{}
	check := func(obj any, kind string, m *metav1.ObjectMeta) {
		key := kind + "\x00" + m.Namespace + "\x00" + m.Name
		if prev, dup := first[key]; dup {
			p.errs.addf(refs[obj], "metadata.name", "duplicate %s %q in namespace %q (first defined in document %d)", kind, m.Name, m.Namespace, prev.index)
			return
		}
		first[key] = refs[obj]
	}
	for _, o := range cfg.Pools {
		check(o, KindInferencePool, &o.ObjectMeta)
	}
	for _, o := range cfg.ModelServers {
		check(o, KindModelServer, &o.ObjectMeta)
	}
	for _, o := range cfg.Routes {
		check(o, KindRoute, &o.ObjectMeta)
	}
	for _, o := range cfg.Objectives {
		check(o, KindInferenceObjective, &o.ObjectMeta)
	}
	for _, o := range cfg.Rewrites {
		check(o, KindInferenceModelRewrite, &o.ObjectMeta)
	}
	for _, o := range cfg.APIKeys {
		check(o, KindAPIKeys, &o.ObjectMeta)
	}
	for _, o := range cfg.Guards {
		check(o, KindRequestGuard, &o.ObjectMeta)
	}
	for _, o := range cfg.Quotas {
		check(o, KindQuotaPolicy, &o.ObjectMeta)
	}
}

// checkPoolEndpoints reports a pool that resolves to no endpoint (a static
// pool with nothing to route to is a typo, not a state to wait out) and two
// servers that resolve to the same address, which would make one endpoint
// count twice in scheduling.
func (p *parser) checkPoolEndpoints(ref docRef, pool *v1.InferencePool, servers []*ModelServer) {
	eps := ResolveEndpoints(pool, servers)
	if len(eps) == 0 {
		selected := 0
		for _, s := range servers {
			if s.Namespace == pool.Namespace && selects(pool.Spec.Selector.MatchLabels, s.Labels) {
				selected++
			}
		}
		if selected == 0 {
			p.errs.addf(ref, "spec.selector.matchLabels", "selects no ModelServer in namespace %q (want labels %s)", pool.Namespace, formatLabels(pool.Spec.Selector.MatchLabels))
		} else {
			p.errs.addf(ref, "spec.targetPorts", "none of the %d selected ModelServers lists any of these ports in spec.ports", selected)
		}
		return
	}
	byAddr := map[string]string{}
	for _, ep := range eps {
		if other, dup := byAddr[ep.Address]; dup {
			p.errs.addf(ref, "spec.selector.matchLabels", "endpoint %s is provided by both ModelServer %q and %q; give them different addresses or spec.ports", ep.Address, other, ep.Server)
			continue
		}
		byAddr[ep.Address] = ep.Server
	}
}

// matchKey identifies what a route match selects, so that two matches
// selecting exactly the same requests can be found. Namespaces are not part
// of it: a request carries no namespace, so routes of every namespace
// compete for it.
func matchKey(m RouteMatch) string {
	var b strings.Builder
	if m.Model != nil {
		fmt.Fprintf(&b, "\x00model=%s:%s", m.Model.Type, m.Model.Value)
	}
	if m.Path != nil {
		fmt.Fprintf(&b, "\x00path=%s:%s", m.Path.Type, m.Path.Value)
	}
	hs := make([]string, 0, len(m.Headers))
	for _, h := range m.Headers {
		hs = append(hs, strings.ToLower(h.Name)+"="+h.Value)
	}
	slices.Sort(hs)
	for _, h := range hs {
		b.WriteString("\x00header=" + h)
	}
	return b.String()
}

func formatLabels(labels map[string]string) string {
	parts := make([]string, 0, len(labels))
	for _, k := range sortedStringKeys(labels) {
		parts = append(parts, k+"="+labels[k])
	}
	return strings.Join(parts, ",")
}
