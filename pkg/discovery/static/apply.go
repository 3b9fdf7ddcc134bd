package static

import (
	v1 "github.com/igw-dev/igw/api/v1"
	"github.com/igw-dev/igw/pkg/config"
	"github.com/igw-dev/igw/pkg/datastore"
)

// Apply makes store hold exactly pools of cfg — their endpoints (as
// selected from the ModelServers), their objectives' priorities and their
// model rewrites — and nothing else: pools in the store that are not in
// pools are removed. It is level-based, like a reconciler: the whole
// desired state every time, so a reload that removed something heals by
// itself. In Kubernetes the reconcilers of package kube feed the same
// store.
func Apply(cfg *config.Config, store *datastore.Store, pools []*v1.InferencePool) {
	keep := map[string]bool{}
	objectives := map[string]map[string]int32{}
	latency := map[string]map[string]datastore.LatencyObjective{}
	rewrites := map[string][]datastore.RewriteRule{}
	for _, p := range pools {
		name := config.NamespacedName(p.Namespace, p.Name)
		keep[name] = true
		var specs []datastore.EndpointSpec
		for _, e := range PoolEndpoints(cfg, p) {
			specs = append(specs, datastore.EndpointSpec{Name: e.Name, Address: e.Address, Engine: e.Engine, Labels: e.Labels})
		}
		store.SetPool(name, specs)
		objs := map[string]int32{}
		lat := map[string]datastore.LatencyObjective{}
		for _, o := range ObjectivesFor(cfg, p) {
			objs[o.Name] = o.Spec.EffectivePriority()
			if ttft, tpot, err := o.LatencyObjectives(); err == nil && (ttft > 0 || tpot > 0) { // validated at load
				lat[o.Name] = datastore.LatencyObjective{TTFT: ttft, TPOT: tpot}
			}
		}
		objectives[name] = objs
		latency[name] = lat
		for _, rw := range RewritesFor(cfg, p) { // document order = creation order = precedence
			rewrites[name] = append(rewrites[name], datastore.RewriteRules(rw)...)
		}
	}
	store.SetObjectives(objectives)
	store.SetLatencyObjectives(latency)
	store.SetRewrites(rewrites)
	for _, name := range store.PoolNames() {
		if !keep[name] {
			store.DeletePool(name)
		}
	}
}
