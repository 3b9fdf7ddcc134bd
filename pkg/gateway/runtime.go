package gateway

import (
	"fmt"
	"math/rand/v2"
	"net/url"
	"slices"

	"github.com/igw-dev/igw/pkg/config"
	"github.com/igw-dev/igw/pkg/flowcontrol"
	"github.com/igw-dev/igw/pkg/gateway/auth"
	"github.com/igw-dev/igw/pkg/gateway/guard"
	"github.com/igw-dev/igw/pkg/scheduling"
	"github.com/igw-dev/igw/pkg/scheduling/plugins"
)

// runtime is one configuration compiled for serving: everything the request
// path needs, resolved and validated at load so a bad config fails at load
// and never on a request. A reload builds a new runtime and swaps it in.
type runtime struct {
	cfg       *config.Config
	routes    map[*config.Route]*route
	scheduler *scheduling.Scheduler
	models    []string // for GET /v1/models
	// remotes are the pools with an endpointPickerRef, scheduled by that
	// picker instead of the embedded Director.
	remotes map[string]*remoteSpec
	// saturation and flow are the EndpointPickerConfig's admission
	// settings (saturationDetector, flowControl sections), validated here
	// so a bad value fails the load.
	saturation *flowcontrol.SaturationDetector
	flow       flowcontrol.Config
	// admission runs after authentication and before the Director (nil:
	// every authenticated request is admitted).
	admission Admission
	// auth checks credentials; nil when the configuration has no APIKeys
	// and no AuthPolicy.
	auth *auth.Authenticator
}

// route is a Route with its backends resolved.
type route struct {
	name     string
	guard    *guard.Guard // the route's RequestGuard, or nil
	backends []backend
	total    int64 // sum of weights
}

// backend is a pool (scheduled by the Director) or a plain URL.
type backend struct {
	pool   string   // namespaced pool name, or ""
	url    *url.URL // or nil
	weight int64
}

// pick chooses a backend by weight.
func (r *route) pick() *backend {
	x := rand.Int64N(r.total)
	for i := range r.backends {
		x -= r.backends[i].weight
		if x < 0 {
			return &r.backends[i]
		}
	}
	return &r.backends[len(r.backends)-1]
}

// compile builds a runtime from cfg. prev, if not nil, is the runtime being
// replaced: its scheduler (and so its prefix-cache index) is kept when the
// EndpointPickerConfig did not change, and newAdmission (if not nil) may
// keep its Admission. guards are the dependencies of the routes' request
// guards.
func compile(cfg *config.Config, prev *runtime, newAdmission AdmissionFactory, guards guard.Options) (*runtime, error) {
	rt := &runtime{cfg: cfg, routes: map[*config.Route]*route{}, remotes: map[string]*remoteSpec{}}
	if prev != nil && slices.Equal(prev.cfg.EndpointPickerConfig, cfg.EndpointPickerConfig) {
		rt.scheduler = prev.scheduler
	} else {
		s, err := buildScheduler(cfg)
		if err != nil {
			return nil, err
		}
		rt.scheduler = s
	}
	satCfg, flow, err := scheduling.AdmissionFromYAML(cfg.EndpointPickerConfig, flowcontrol.DefaultSaturationConfig())
	if err != nil {
		return nil, fmt.Errorf("%s: %w", cfg.EndpointPickerConfigSource, err)
	}
	if rt.saturation, err = flowcontrol.NewSaturationDetector(satCfg); err != nil {
		return nil, fmt.Errorf("%s: %w", cfg.EndpointPickerConfigSource, err)
	}
	rt.flow = flow
	models := map[string]bool{}
	for _, r := range cfg.Routes {
		cr := &route{name: r.Namespace + "/" + r.Name}
		if r.Spec.Guard != "" {
			g := cfg.Guard(r.Namespace, r.Spec.Guard)
			if g == nil {
				return nil, fmt.Errorf("route %s: spec.guard: no RequestGuard %q", cr.name, r.Spec.Guard)
			}
			if cr.guard, err = guard.New(g, guards); err != nil {
				return nil, err
			}
		}
		for i, b := range r.Spec.Backends {
			w := int64(1)
			if b.Weight != nil {
				w = int64(*b.Weight)
			}
			be := backend{weight: w}
			switch {
			case b.Pool != "":
				p := cfg.Pool(r.Namespace, b.Pool)
				if p == nil {
					return nil, fmt.Errorf("route %s: backends[%d]: no InferencePool %q", cr.name, i, b.Pool)
				}
				be.pool = r.Namespace + "/" + b.Pool
				rs, err := remoteSpecOf(p)
				if err != nil {
					return nil, err
				}
				if rs != nil {
					rt.remotes[be.pool] = rs
				}
			default:
				u, err := url.Parse(b.URL)
				if err != nil {
					return nil, fmt.Errorf("route %s: backends[%d].url: %w", cr.name, i, err)
				}
				be.url = u
			}
			cr.backends = append(cr.backends, be)
			cr.total += w
		}
		if cr.total <= 0 {
			return nil, fmt.Errorf("route %s: every backend has weight 0", cr.name)
		}
		rt.routes[r] = cr
		for _, m := range r.Spec.Matches {
			if m.Model != nil && (m.Model.Type == "" || m.Model.Type == config.ModelMatchExact) {
				models[m.Model.Value] = true
			}
		}
	}
	for m := range models {
		rt.models = append(rt.models, m)
	}
	slices.Sort(rt.models)
	if rt.auth, err = auth.New(cfg); err != nil {
		return nil, err
	}
	if newAdmission != nil {
		var prevAdmission Admission
		if prev != nil {
			prevAdmission = prev.admission
		}
		if rt.admission, err = newAdmission(cfg, prevAdmission); err != nil {
			return nil, fmt.Errorf("%s: %w", cfg.Source, err)
		}
	}
	return rt, nil
}

// buildScheduler is the scheduler of cfg's EndpointPickerConfig (the
// default profile without one), its errors prefixed with where it came
// from.
func buildScheduler(cfg *config.Config) (*scheduling.Scheduler, error) {
	s, err := plugins.NewSchedulerFromYAML(cfg.EndpointPickerConfig)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", cfg.EndpointPickerConfigSource, err)
	}
	return s, nil
}
