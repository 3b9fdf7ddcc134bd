package datastore

import (
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// EndpointSpec is what discovery knows about one endpoint: enough to create
// it, nothing that changes at run time.
type EndpointSpec struct {
	Name    string
	Address string
	Engine  Engine
	Labels  map[string]string
}

// Pool is the run-time view of one InferencePool. Endpoints is replaced
// whole on every change and never modified in place, so a reader can use the
// slice it got without locks.
type Pool struct {
	// Name is the pool's namespaced name, "namespace/name".
	Name string
	// Endpoints are the pool's endpoints in a stable order (by name).
	Endpoints []*Endpoint
}

// Store holds every pool's endpoints, every objective's priority and every
// pool's model rewrites. Writers (discovery, configuration reload) replace
// whole sets; readers on the request path take no lock for endpoints.
type Store struct {
	mu         sync.Mutex // serializes writers
	pools      atomic.Pointer[map[string]*Pool]
	objectives atomic.Pointer[map[string]map[string]int32] // pool → objective → priority
	latency    atomic.Pointer[map[string]map[string]LatencyObjective]
	rewrites   atomic.Pointer[map[string][]RewriteRule] // pool → rules in precedence order
	onChange   func(all []*Endpoint)
}

// NewStore creates an empty store. onChange, if not nil, is called (with
// the store's writer lock held, so calls are ordered) with every endpoint
// of every pool after each change to the endpoint set; the scraper follows
// it.
func NewStore(onChange func(all []*Endpoint)) *Store {
	s := &Store{onChange: onChange}
	empty := map[string]*Pool{}
	s.pools.Store(&empty)
	noObj := map[string]map[string]int32{}
	s.objectives.Store(&noObj)
	noLat := map[string]map[string]LatencyObjective{}
	s.latency.Store(&noLat)
	noRw := map[string][]RewriteRule{}
	s.rewrites.Store(&noRw)
	return s
}

// Pool returns the named pool, or nil.
func (s *Store) Pool(name string) *Pool { return (*s.pools.Load())[name] }

// PoolNames lists the pools, sorted.
func (s *Store) PoolNames() []string {
	return slices.Sorted(maps.Keys(*s.pools.Load()))
}

// AllEndpoints returns every endpoint of every pool.
func (s *Store) AllEndpoints() []*Endpoint {
	var all []*Endpoint
	for _, name := range s.PoolNames() {
		all = append(all, s.Pool(name).Endpoints...)
	}
	return all
}

// SetPool makes the named pool's endpoints exactly specs (level-based: the
// whole desired set, not a delta). Endpoints whose address, engine and
// labels are unchanged are kept as they are, with their metrics and
// in-flight counts; changed ones are replaced.
func (s *Store) SetPool(name string, specs []EndpointSpec) {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := *s.pools.Load()
	existing := map[string]*Endpoint{}
	if p := old[name]; p != nil {
		for _, e := range p.Endpoints {
			existing[e.Address] = e
		}
	}
	eps := make([]*Endpoint, 0, len(specs))
	for _, sp := range specs {
		engine := sp.Engine
		if engine == "" {
			engine = EngineVLLM
		}
		if e := existing[sp.Address]; e != nil && e.Name == sp.Name && e.Engine == engine && maps.Equal(e.Labels, sp.Labels) {
			eps = append(eps, e)
			continue
		}
		e := NewEndpoint(sp.Name, sp.Address, name, engine, maps.Clone(sp.Labels))
		if prev := existing[sp.Address]; prev != nil { // keep what we know about the server
			e.SetMetrics(prev.Metrics())
			e.SetReady(prev.Ready())
		}
		eps = append(eps, e)
	}
	slices.SortFunc(eps, func(a, b *Endpoint) int {
		if a.Name != b.Name {
			if a.Name < b.Name {
				return -1
			}
			return 1
		}
		if a.Address < b.Address {
			return -1
		}
		return 1
	})
	next := maps.Clone(old)
	next[name] = &Pool{Name: name, Endpoints: eps}
	s.pools.Store(&next)
	s.changed(next)
}

// DeletePool removes a pool and its endpoints.
func (s *Store) DeletePool(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := *s.pools.Load()
	if _, ok := old[name]; !ok {
		return
	}
	next := maps.Clone(old)
	delete(next, name)
	s.pools.Store(&next)
	s.changed(next)
}

func (s *Store) changed(pools map[string]*Pool) {
	if s.onChange == nil {
		return
	}
	var all []*Endpoint
	for _, name := range slices.Sorted(maps.Keys(pools)) {
		all = append(all, pools[name].Endpoints...)
	}
	s.onChange(all)
}

// SetObjectives replaces every objective: pool → objective name → priority.
func (s *Store) SetObjectives(byPool map[string]map[string]int32) {
	c := make(map[string]map[string]int32, len(byPool))
	for p, m := range byPool {
		c[p] = maps.Clone(m)
	}
	s.objectives.Store(&c)
}

// Priority is the priority of the named objective of pool. An unknown or
// empty name is not an error: it is priority 0 (REFERENCE §1).
func (s *Store) Priority(pool, objective string) int32 {
	if objective == "" {
		return 0
	}
	return (*s.objectives.Load())[pool][objective]
}

// LatencyObjective is an InferenceObjective's default latency objectives
// for its requests (0: none).
type LatencyObjective struct {
	TTFT, TPOT time.Duration
}

// SetLatencyObjectives replaces every objective's default latency
// objectives: pool → objective name → objectives. Objectives without any
// may be left out.
func (s *Store) SetLatencyObjectives(byPool map[string]map[string]LatencyObjective) {
	c := make(map[string]map[string]LatencyObjective, len(byPool))
	for p, m := range byPool {
		c[p] = maps.Clone(m)
	}
	s.latency.Store(&c)
}

// LatencyObjective is the named objective's default latency objectives in
// pool (zero for an unknown or empty name).
func (s *Store) LatencyObjective(pool, objective string) LatencyObjective {
	if objective == "" {
		return LatencyObjective{}
	}
	return (*s.latency.Load())[pool][objective]
}

// Priorities are the priority bands requests to pool can have: 0 (no or
// an unknown objective) and the priority of each of its objectives,
// ascending.
func (s *Store) Priorities(pool string) []int32 {
	out := []int32{0}
	for _, p := range (*s.objectives.Load())[pool] {
		if !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	slices.Sort(out)
	return out
}

// RewriteTarget is one weighted destination of a model rewrite.
type RewriteTarget struct {
	Model  string
	Weight int32
}

// RewriteRule rewrites requests for any of Models (or, with no Models,
// every model) to one of Targets, chosen by weight.
type RewriteRule struct {
	// Source names the InferenceModelRewrite the rule came from, for logs.
	Source  string
	Models  []string
	Targets []RewriteTarget
}

// SetRewrites replaces every pool's rules. Within a pool the rules must be
// in precedence order of their objects: oldest object first, then rule
// order (REFERENCE §1); exact matches beating catch-alls is applied at
// lookup.
func (s *Store) SetRewrites(byPool map[string][]RewriteRule) {
	c := make(map[string][]RewriteRule, len(byPool))
	for p, rules := range byPool {
		c[p] = slices.Clone(rules)
	}
	s.rewrites.Store(&c)
}

// Rewrite returns the model a request for model in pool is sent as. pick is
// a uniform random number in [0, 1) that chooses among weighted targets.
// The rule that applies is the first exact match, else the first
// catch-all; with none, the model is unchanged.
func (s *Store) Rewrite(pool, model string, pick float64) (target string, rule string) {
	rules := (*s.rewrites.Load())[pool]
	var match *RewriteRule
	for i := range rules {
		if slices.Contains(rules[i].Models, model) {
			match = &rules[i]
			break
		}
	}
	if match == nil {
		for i := range rules {
			if len(rules[i].Models) == 0 {
				match = &rules[i]
				break
			}
		}
	}
	if match == nil || len(match.Targets) == 0 {
		return model, ""
	}
	return chooseTarget(match.Targets, pick), match.Source
}

// chooseTarget picks by weight; targets without weights share uniformly.
func chooseTarget(targets []RewriteTarget, pick float64) string {
	var total int64
	for _, t := range targets {
		total += int64(max(t.Weight, 0))
	}
	if total == 0 {
		return targets[min(int(pick*float64(len(targets))), len(targets)-1)].Model
	}
	x := int64(pick * float64(total))
	for _, t := range targets {
		x -= int64(max(t.Weight, 0))
		if x < 0 {
			return t.Model
		}
	}
	return targets[len(targets)-1].Model
}
