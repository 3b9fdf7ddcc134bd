package config

import (
	v1 "github.com/igw-dev/igw/api/v1"
	"github.com/igw-dev/igw/api/v1alpha2"
	"github.com/igw-dev/igw/pkg/datastore"
)

// Apply makes store hold exactly pools of this configuration — their
// endpoints (as selected from the ModelServers), their objectives'
// priorities and their model rewrites — and nothing else: pools in the
// store that are not in pools are removed. It is level-based, like a
// reconciler: the whole desired state every time, so a reload that removed
// something heals by itself. This is static discovery; in Kubernetes the
// reconcilers feed the same store.
func (c *Config) Apply(store *datastore.Store, pools []*v1.InferencePool) {
	keep := map[string]bool{}
	objectives := map[string]map[string]int32{}
	rewrites := map[string][]datastore.RewriteRule{}
	for _, p := range pools {
		name := NamespacedName(p.Namespace, p.Name)
		keep[name] = true
		var specs []datastore.EndpointSpec
		for _, e := range c.PoolEndpoints(p) {
			specs = append(specs, datastore.EndpointSpec{Name: e.Name, Address: e.Address, Engine: datastore.Engine(e.Engine), Labels: e.Labels})
		}
		store.SetPool(name, specs)
		objs := map[string]int32{}
		for _, o := range c.ObjectivesFor(p) {
			objs[o.Name] = o.Spec.EffectivePriority()
		}
		objectives[name] = objs
		for _, rw := range c.RewritesFor(p) { // document order = creation order = precedence
			rewrites[name] = append(rewrites[name], RewriteRules(rw)...)
		}
	}
	store.SetObjectives(objectives)
	store.SetRewrites(rewrites)
	for _, name := range store.PoolNames() {
		if !keep[name] {
			store.DeletePool(name)
		}
	}
}

// RewriteRules turns one InferenceModelRewrite into the datastore's rules,
// in rule order. Static discovery and the Kubernetes reconcilers both use
// it, so a rewrite means the same in a file and in a cluster; callers
// concatenate the rules of a pool's rewrites oldest object first.
func RewriteRules(rw *v1alpha2.InferenceModelRewrite) []datastore.RewriteRule {
	rules := make([]datastore.RewriteRule, 0, len(rw.Spec.Rules))
	for _, rule := range rw.Spec.Rules {
		r := datastore.RewriteRule{Source: NamespacedName(rw.Namespace, rw.Name)}
		for _, m := range rule.Matches {
			r.Models = append(r.Models, m.Model.Value)
		}
		for _, t := range rule.Targets {
			var w int32
			if t.Weight != nil {
				w = *t.Weight
			}
			r.Targets = append(r.Targets, datastore.RewriteTarget{Model: t.ModelRewrite, Weight: w})
		}
		rules = append(rules, r)
	}
	return rules
}
