package datastore

import "github.com/igw-dev/igw/api/v1alpha2"

// What both discovery sources (static ModelServers in a file, pods in a
// cluster) read the same way lives here, beside the state they feed.

// EngineTypeLabel is the pod label naming a model server's engine; a
// ModelServer without spec.engine reads it too, as a pod would.
const EngineTypeLabel = "inference.networking.k8s.io/engine-type"

// Labels that say where a model server publishes its KV-cache events
// (REFERENCE §10), read by the KV-event subscriber (package kvevents). A
// pod carries them as labels; a static ModelServer's spec.kvEventsPort sets
// the port one.
const (
	// KVEventsEndpointLabel is a full ZeroMQ address, e.g.
	// "tcp://10.0.0.7:5557".
	KVEventsEndpointLabel = "igw.dev/kv-events-endpoint"
	// KVEventsPortLabel is a port on the server's own host.
	KVEventsPortLabel = "igw.dev/kv-events-port"
)

// EngineFromLabels is the engine a model server's labels name in
// EngineTypeLabel, vllm when they name none: ModelServers in a file and
// pods in a cluster are read the same way.
func EngineFromLabels(labels map[string]string) Engine {
	if e, ok := labels[EngineTypeLabel]; ok && e != "" {
		return Engine(e)
	}
	return EngineVLLM
}

// RewriteRules turns one InferenceModelRewrite into the store's rules, in
// rule order. Static discovery and the Kubernetes reconcilers both use it,
// so a rewrite means the same in a file and in a cluster; callers
// concatenate the rules of a pool's rewrites oldest object first. The
// object's namespace must be set, as both sources guarantee.
func RewriteRules(rw *v1alpha2.InferenceModelRewrite) []RewriteRule {
	rules := make([]RewriteRule, 0, len(rw.Spec.Rules))
	for _, rule := range rw.Spec.Rules {
		r := RewriteRule{Source: rw.Namespace + "/" + rw.Name}
		for _, m := range rule.Matches {
			r.Models = append(r.Models, m.Model.Value)
		}
		for _, t := range rule.Targets {
			var w int32
			if t.Weight != nil {
				w = *t.Weight
			}
			r.Targets = append(r.Targets, RewriteTarget{Model: t.ModelRewrite, Weight: w})
		}
		rules = append(rules, r)
	}
	return rules
}
