package static

import (
	"maps"
	"net"
	"strconv"

	v1 "github.com/igw-dev/igw/api/v1"
	"github.com/igw-dev/igw/pkg/config"
	"github.com/igw-dev/igw/pkg/datastore"
)

// Endpoint is one address a pool schedules onto: a selected ModelServer on
// one of the pool's target ports. Its fields map one to one onto
// datastore.NewEndpoint(Name, Address, Pool, Engine, Labels).
type Endpoint struct {
	// Name identifies the endpoint within its pool: "<server>:<port>",
	// like "<pod>:<port>" in Kubernetes.
	Name string
	// Address is host:port (IPv6 in brackets), the value igw sends as
	// x-gateway-destination-endpoint and dials.
	Address string
	// Pool is the pool's namespace/name.
	Pool string
	// Server is the ModelServer's name (in the pool's namespace).
	Server string
	// Port is the target port.
	Port int32
	// Labels are a copy of the ModelServer's labels, for label filters.
	Labels map[string]string
	// Engine is the server's engine.
	Engine datastore.Engine
}

// ResolveEndpoints returns pool's endpoints among servers, selected as
// Kubernetes selects a pool's pods: a server belongs to the pool when it is
// in the pool's namespace and carries every label of
// spec.selector.matchLabels; each such server yields one endpoint per
// spec.targetPorts entry, limited to the server's spec.ports when it lists
// any. Endpoints come in server order, then target-port order. A pool
// without matchLabels selects nothing (an empty selector selecting
// everything would be a dangerous default for a static file).
func ResolveEndpoints(pool *v1.InferencePool, servers []*ModelServer) []Endpoint {
	if len(pool.Spec.Selector.MatchLabels) == 0 {
		return nil
	}
	ns := orDefaultNamespace(pool.Namespace)
	poolName := config.NamespacedName(ns, pool.Name)
	var out []Endpoint
	for _, s := range servers {
		if orDefaultNamespace(s.Namespace) != ns || !selects(pool.Spec.Selector.MatchLabels, s.Labels) {
			continue
		}
		engine := s.Spec.Engine
		if engine == "" {
			engine = datastore.EngineFromLabels(s.Labels)
		}
		nth := 0 // index among the server's ports, for its KV-events port
		for _, tp := range pool.Spec.TargetPorts {
			if !s.listensOn(tp.Number) {
				continue
			}
			port := strconv.Itoa(int(tp.Number))
			labels := maps.Clone(s.Labels)
			if s.Spec.KVEventsPort != 0 {
				if labels == nil {
					labels = map[string]string{}
				}
				labels[datastore.KVEventsPortLabel] = strconv.Itoa(int(s.Spec.KVEventsPort) + nth)
			}
			nth++
			out = append(out, Endpoint{
				Name:    s.Name + ":" + port,
				Address: net.JoinHostPort(s.Spec.Address, port),
				Pool:    poolName,
				Server:  s.Name,
				Port:    int32(tp.Number),
				Labels:  labels,
				Engine:  engine,
			})
		}
	}
	return out
}

// selects reports whether labels carry every key of selector with the same
// value.
func selects(selector, labels map[string]string) bool {
	for k, v := range selector {
		if got, ok := labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}

func orDefaultNamespace(ns string) string {
	if ns == "" {
		return config.DefaultNamespace
	}
	return ns
}
