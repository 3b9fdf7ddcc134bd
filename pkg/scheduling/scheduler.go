package scheduling

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/igw-dev/igw/pkg/datastore"
)

// DefaultFallbacks is how many fallback endpoints a decision carries by
// default besides the primary: enough to ride out a failing replica
// without making every retry chain long.
const DefaultFallbacks = 2

// maxProfileRounds bounds how often a profile handler is asked for more
// profiles in one cycle, so a buggy handler cannot loop forever.
const maxProfileRounds = 8

// WeightedScorer is a scorer with the weight its profile gives it.
type WeightedScorer struct {
	Scorer Scorer
	Weight float64 // >= 0; 0 skips the scorer
}

// Profile is a built scheduling profile: filters in order, weighted
// scorers, and exactly one picker. Profiles are immutable once built.
type Profile struct {
	name    string
	filters []Filter
	scorers []WeightedScorer
	picker  Picker
}

// Name is the profile's configured name; profile handlers select by it.
func (p *Profile) Name() string { return p.name }

// Filters are the profile's filters in run order.
func (p *Profile) Filters() []Filter { return p.filters }

// Scorers are the profile's scorers with their weights.
func (p *Profile) Scorers() []WeightedScorer { return p.scorers }

// Picker is the profile's picker.
func (p *Profile) Picker() Picker { return p.picker }

// Option tunes a Scheduler at build time.
type Option func(*options)

type options struct {
	fallbacks int
}

// WithFallbacks sets how many fallback endpoints a decision carries besides
// the primary (default DefaultFallbacks). 0 disables fallbacks.
func WithFallbacks(n int) Option { return func(o *options) { o.fallbacks = n } }

// Scheduler runs scheduling cycles: profile handler → filters → weighted
// scorers → picker, over a snapshot of the candidates it is given. It is
// built once from configuration (NewScheduler) and is safe for concurrent
// use by any number of requests.
type Scheduler struct {
	profiles         []*Profile
	handler          ProfileHandler
	plugins          []Plugin
	preRequest       []PreRequest
	responseComplete []ResponseComplete
	forgetters       []EndpointForgetter
	predictor        LatencyPredictor
	fallbacks        int

	// noMetrics stands in for the metrics of never-scraped endpoints so
	// plugins never see nil; it is never written after construction.
	noMetrics datastore.Metrics
	scratch   sync.Pool
}

// cycleScratch holds the per-cycle buffers; it is pooled so a cycle does
// not allocate per endpoint.
type cycleScratch struct {
	snapshot []Candidate
	work     []Candidate // the snapshot as a profile's filters left it
	// scored is what the last profile scored: snapshot when it has no
	// filters (scorers and pickers do not change candidates, so the
	// copy filters need is skipped), else work.
	scored []Candidate
	total  []float64
	tmp    []float64
	picked []int
}

// NewScheduler builds a runnable scheduler from a configuration and a
// registry (cfg nil means DefaultConfig). Everything is validated here, so
// a bad configuration fails at load and never on a request: plugin types
// and parameters, references, weights, at most one picker per profile (a
// profile without one gets a max-score-picker), at most one profile
// handler (default single-profile-handler) and the profile set the handler
// accepts.
func NewScheduler(cfg *EndpointPickerConfig, reg *Registry, opts ...Option) (*Scheduler, error) {
	if cfg == nil {
		cfg = DefaultConfig()
	}
	if reg == nil {
		return nil, errors.New("scheduling: nil registry")
	}
	o := options{fallbacks: DefaultFallbacks}
	for _, opt := range opts {
		opt(&o)
	}
	if o.fallbacks < 0 {
		return nil, fmt.Errorf("scheduling: fallbacks must be >= 0, got %d", o.fallbacks)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Scheduler{fallbacks: o.fallbacks}
	s.scratch.New = func() any { return new(cycleScratch) }

	byName := make(map[string]Plugin, len(cfg.Plugins))
	var errs []error
	for i, spec := range cfg.Plugins {
		p, err := reg.New(spec.Type, spec.InstanceName(), spec.Parameters)
		if err != nil {
			errs = append(errs, fmt.Errorf("EndpointPickerConfig: plugins[%d]: %w", i, err))
			continue
		}
		byName[spec.InstanceName()] = p
		s.plugins = append(s.plugins, p)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}

	for i, spec := range cfg.Plugins {
		h, ok := byName[spec.InstanceName()].(ProfileHandler)
		if !ok {
			continue
		}
		if s.handler != nil {
			return nil, fmt.Errorf("EndpointPickerConfig: plugins[%d]: second profile handler %q (already have %q)",
				i, spec.InstanceName(), s.handler.TypedName().Name)
		}
		s.handler = h
	}
	if s.handler == nil {
		p, err := reg.New(DefaultProfileHandlerType, "", nil)
		if err != nil {
			return nil, fmt.Errorf("scheduling: default profile handler: %w", err)
		}
		h, ok := p.(ProfileHandler)
		if !ok {
			return nil, fmt.Errorf("scheduling: %s is not a profile handler", DefaultProfileHandlerType)
		}
		s.handler = h
		s.plugins = append(s.plugins, p)
	}

	profiles := cfg.SchedulingProfiles
	if len(profiles) == 0 {
		def := SchedulingProfile{Name: DefaultProfileName}
		for _, spec := range cfg.Plugins {
			switch byName[spec.InstanceName()].(type) {
			case Filter, Scorer, Picker:
				def.Plugins = append(def.Plugins, ProfilePluginRef{PluginRef: spec.InstanceName()})
			}
		}
		profiles = []SchedulingProfile{def}
	}

	var defaultPicker Picker
	names := make([]string, 0, len(profiles))
	for i, sp := range profiles {
		prof := &Profile{name: sp.Name}
		for j, ref := range sp.Plugins {
			path := fmt.Sprintf("EndpointPickerConfig: schedulingProfiles[%d].plugins[%d].pluginRef", i, j)
			p := byName[ref.PluginRef]
			used := false
			if f, ok := p.(Filter); ok {
				prof.filters = append(prof.filters, f)
				used = true
			}
			if sc, ok := p.(Scorer); ok {
				prof.scorers = append(prof.scorers, WeightedScorer{Scorer: sc, Weight: ref.EffectiveWeight()})
				used = true
			}
			if pk, ok := p.(Picker); ok {
				if prof.picker != nil {
					return nil, fmt.Errorf("%s: profile %q has a second picker %q (already %q)",
						path, sp.Name, ref.PluginRef, prof.picker.TypedName().Name)
				}
				prof.picker = pk
				used = true
			}
			if !used {
				return nil, fmt.Errorf("%s: plugin %q (type %s) is not a filter, scorer or picker and cannot be part of a profile",
					path, ref.PluginRef, p.TypedName().Type)
			}
		}
		if prof.picker == nil {
			if defaultPicker == nil {
				p, err := reg.New(DefaultPickerType, "", nil)
				if err != nil {
					return nil, fmt.Errorf("scheduling: default picker: %w", err)
				}
				pk, ok := p.(Picker)
				if !ok {
					return nil, fmt.Errorf("scheduling: %s is not a picker", DefaultPickerType)
				}
				defaultPicker = pk
				s.plugins = append(s.plugins, p)
			}
			prof.picker = defaultPicker
		}
		s.profiles = append(s.profiles, prof)
		names = append(names, sp.Name)
	}
	if v, ok := s.handler.(ProfileValidator); ok {
		if err := v.ValidateProfiles(names); err != nil {
			return nil, fmt.Errorf("EndpointPickerConfig: schedulingProfiles: profile handler %s: %w", s.handler.TypedName(), err)
		}
	}

	for _, p := range s.plugins {
		if h, ok := p.(PreRequest); ok {
			s.preRequest = append(s.preRequest, h)
		}
		if h, ok := p.(ResponseComplete); ok {
			s.responseComplete = append(s.responseComplete, h)
		}
		if h, ok := p.(EndpointForgetter); ok {
			s.forgetters = append(s.forgetters, h)
		}
		if h, ok := p.(LatencyPredictor); ok && s.predictor == nil {
			s.predictor = h
		}
	}
	// The first cost model configured serves every plugin that uses one.
	for _, p := range s.plugins {
		if cm, ok := p.(CostModel); ok {
			for _, q := range s.plugins {
				if u, ok := q.(CostModelUser); ok {
					u.UseCostModel(cm)
				}
			}
			break
		}
	}
	return s, nil
}

// NewDefaultScheduler builds the scheduler used when no configuration is
// given (DefaultConfig) from reg, which must know the default plugins;
// plugins.NewDefaultScheduler is the shortcut with the built-in registry.
func NewDefaultScheduler(reg *Registry, opts ...Option) (*Scheduler, error) {
	return NewScheduler(DefaultConfig(), reg, opts...)
}

// Profiles are the scheduler's profiles in configuration order.
func (s *Scheduler) Profiles() []*Profile { return s.profiles }

// Plugins are every plugin instance the scheduler built, including the
// defaults it added, e.g. to expose plugin metrics.
func (s *Scheduler) Plugins() []Plugin { return s.plugins }

// Schedule picks the endpoint for req among candidates (handed in by the
// caller, who has already narrowed them to the request's pool, ready
// endpoints and any subset hint). It returns the primary endpoint and up
// to the configured number of fallbacks, or an *Error wrapping
// ErrNoEndpoint with the reason (no candidates, filtered out, ...).
//
// Each candidate's metrics and in-flight count are loaded once, so every
// plugin of the cycle sees one consistent snapshot. Schedule does not
// mutate candidates.
func (s *Scheduler) Schedule(ctx context.Context, req *Request, candidates []*datastore.Endpoint) (*Result, error) {
	if err := ctx.Err(); err != nil {
		return nil, &Error{Reason: ReasonCanceled, Err: err}
	}
	if len(candidates) == 0 {
		return nil, newError(ReasonNoCandidates, "", "", "no candidate endpoints")
	}
	req.wantsCached = s.predictor != nil
	sc := s.scratch.Get().(*cycleScratch)
	defer s.scratch.Put(sc)

	snap := sc.snapshot[:0]
	for _, ep := range candidates {
		c := Candidate{Endpoint: ep, Metrics: ep.Metrics(), InFlight: ep.InFlight(), HasMetrics: true}
		if c.Metrics == nil {
			c.Metrics, c.HasMetrics = &s.noMetrics, false
		}
		snap = append(snap, c)
	}
	sc.snapshot = snap
	defer clear(sc.snapshot) // drop endpoint references from the pool

	res := &Result{}
	res.Profiles = res.profilesBuf[:0]
	eps := res.endpointBuf[:0]
	for round := 0; round < maxProfileRounds; round++ {
		next := s.handler.Pick(ctx, req, s.profiles, res.Profiles)
		if len(next) == 0 {
			break
		}
		for _, p := range next {
			pr := ProfileResult{Profile: p.name}
			picked, err := s.runProfile(ctx, req, p, sc)
			if err != nil {
				return nil, err
			}
			start := len(eps)
			for _, i := range picked {
				eps = append(eps, sc.scored[i].Endpoint)
			}
			pr.Endpoints = eps[start:len(eps):len(eps)]
			res.Profiles = append(res.Profiles, pr)
		}
	}
	clear(sc.work)
	sc.scored = nil
	if len(res.Profiles) == 0 {
		return nil, newError(ReasonNoProfile, "", s.handler.TypedName().String(), "profile handler ran no profile")
	}
	primary, err := s.handler.ProcessResults(ctx, req, res.Profiles)
	if err != nil {
		return nil, &Error{Reason: ReasonNoProfile, Plugin: s.handler.TypedName().String(),
			Err: fmt.Errorf("%w: %w", err, ErrNoEndpoint)}
	}
	res.PrimaryProfile = primary
	if req.Explain != nil {
		req.Explain.Primary = primary
	}
	if res.primary() == nil {
		return nil, newError(ReasonNoProfile, primary, s.handler.TypedName().String(), "primary profile %q has no result", primary)
	}
	return res, nil
}

// runProfile filters, scores and picks for one profile. The returned
// indices point into sc.scored and stay valid until the next runProfile.
func (s *Scheduler) runProfile(ctx context.Context, req *Request, p *Profile, sc *cycleScratch) ([]int, error) {
	work := sc.snapshot
	if len(p.filters) > 0 {
		work = append(sc.work[:0], sc.snapshot...)
		sc.work = work
	}
	for _, f := range p.filters {
		work = f.Filter(ctx, req, work)
		if len(work) == 0 {
			return nil, newError(ReasonFilteredOut, p.name, f.TypedName().String(), "filter left no candidate")
		}
	}
	sc.scored = work
	n := len(work)
	total := grow(sc.total, n)
	sc.total = total
	clear(total)
	tmp := grow(sc.tmp, n)
	sc.tmp = tmp
	for _, ws := range p.scorers {
		if ws.Weight == 0 {
			continue
		}
		clear(tmp)
		ws.Scorer.Score(ctx, req, work, tmp)
		for i, v := range tmp {
			switch {
			case !(v > 0): // also NaN
				v = 0
			case v > 1:
				v = 1
			}
			total[i] += ws.Weight * v
			tmp[i] = v
		}
		if req.Explain != nil {
			req.Explain.scores = append(req.Explain.scores, slices.Clone(tmp))
		}
	}
	want := 1 + s.fallbacks
	if want > n {
		want = n
	}
	picked := p.picker.Pick(ctx, req, work, total, want, sc.picked[:0])
	sc.picked = picked
	if len(picked) == 0 {
		return nil, newError(ReasonFilteredOut, p.name, p.picker.TypedName().String(), "picker chose no candidate")
	}
	for _, i := range picked {
		if i < 0 || i >= n {
			return nil, &Error{Reason: ReasonFilteredOut, Profile: p.name, Plugin: p.picker.TypedName().String(),
				Err: fmt.Errorf("picker returned index %d out of range [0,%d)", i, n)}
		}
	}
	if req.Explain != nil {
		explainProfile(req, p, work, total, picked)
	}
	return picked, nil
}

func grow(b []float64, n int) []float64 {
	if cap(b) < n {
		return make([]float64, n, n+n/4)
	}
	return b[:n]
}

// PreRequest runs every PreRequest hook once the caller is about to send
// req to target: the decision's primary, or a fallback when retrying (call
// it again for each endpoint actually tried). Hooks must be cheap; they run
// on the request path.
func (s *Scheduler) PreRequest(ctx context.Context, req *Request, result *Result, target *datastore.Endpoint) {
	for _, h := range s.preRequest {
		h.PreRequest(ctx, req, result, target)
	}
}

// ResponseComplete runs every ResponseComplete hook when target's response
// has completed or failed.
func (s *Scheduler) ResponseComplete(ctx context.Context, req *Request, resp *Response, target *datastore.Endpoint) {
	for _, h := range s.responseComplete {
		h.ResponseComplete(ctx, req, resp, target)
	}
}

// ForgetEndpoint drops every plugin's per-endpoint state for address (e.g.
// its prefix-cache index). Call it when the datastore removes an endpoint;
// a later endpoint with the same address starts cold.
func (s *Scheduler) ForgetEndpoint(address string) {
	for _, f := range s.forgetters {
		f.ForgetEndpoint(address)
	}
}
