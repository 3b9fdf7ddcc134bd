package extproc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	v1 "github.com/igw-dev/igw/api/v1"
	"github.com/igw-dev/igw/pkg/config"
	"github.com/igw-dev/igw/pkg/datastore"
	"github.com/igw-dev/igw/pkg/director"
	"github.com/igw-dev/igw/pkg/flowcontrol"
	"github.com/igw-dev/igw/pkg/modelserver"
	"github.com/igw-dev/igw/pkg/scheduling"
	"github.com/igw-dev/igw/pkg/scheduling/plugins"
	"github.com/igw-dev/igw/pkg/telemetry"
)

// PoolRuntimeOptions configures a PoolRuntime.
type PoolRuntimeOptions struct {
	// PoolName and PoolNamespace choose the InferencePool to serve
	// (namespace default config.DefaultNamespace). An empty PoolName is
	// allowed when the file has exactly one pool.
	PoolName, PoolNamespace string
	// Scraper configures model-server scraping (zero: defaults).
	Scraper modelserver.Options
	// MetricsMaxAge is how old an endpoint's metrics may be for it to be
	// scheduled (default datastore.DefaultMaxAge). A picker whose CPU is
	// shared with other busy processes may need more, since its scrapes
	// then wait for CPU too.
	MetricsMaxAge time.Duration
	// Logger receives reloads and scrape failures (default: discard).
	Logger *slog.Logger
	// ExternalDiscovery leaves the pool's endpoints, objectives and
	// rewrites to another feeder of Store() (the Kubernetes reconcilers of
	// package kube): the configuration then contributes only its
	// EndpointPickerConfig, and PoolName is required but need not be in it.
	ExternalDiscovery bool
}

// PoolRuntime is what `igw epp` runs for one InferencePool: a datastore,
// the scraper that keeps its endpoints' metrics fresh, and the Director
// (scheduler and admission from the EndpointPickerConfig) over both.
// Without Kubernetes the pool, its static model servers, objectives and
// rewrites come from the standalone configuration file, built with the same
// packages as `igw serve` and reloaded the same way; with
// ExternalDiscovery the Kubernetes reconcilers feed the same datastore and
// the file only supplies the EndpointPickerConfig.
type PoolRuntime struct {
	log      *slog.Logger
	pool     string // namespace/name
	ns, name string
	external bool // endpoints, objectives and rewrites are fed by someone else
	store    *datastore.Store
	scraper  *modelserver.Scraper
	director *director.Director
	metrics  *telemetry.Metrics
	maxAge   time.Duration

	mu        sync.Mutex // serializes Reload
	epc       []byte     // the EndpointPickerConfig the scheduler was built from
	scheduler *scheduling.Scheduler
	flow      flowcontrol.Config // the bounds the queues were built with
	sat       atomic.Pointer[flowcontrol.SaturationDetector]
}

// NewPoolRuntime builds the runtime for the chosen pool of cfg. Nothing is
// scraped until Run.
func NewPoolRuntime(cfg *config.Config, o PoolRuntimeOptions) (*PoolRuntime, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Scraper.Logger == nil {
		o.Scraper.Logger = o.Logger
	}
	var pool *v1.InferencePool
	if o.ExternalDiscovery {
		if o.PoolName == "" {
			return nil, errors.New("extproc: a pool name is required")
		}
		ns := o.PoolNamespace
		if ns == "" {
			ns = config.DefaultNamespace
		}
		pool = &v1.InferencePool{}
		pool.Name, pool.Namespace = o.PoolName, ns
	} else {
		var err error
		if pool, err = choosePool(cfg, o.PoolName, o.PoolNamespace); err != nil {
			return nil, err
		}
	}
	scraper, err := modelserver.NewScraper(o.Scraper)
	if err != nil {
		return nil, fmt.Errorf("extproc: %w", err)
	}
	r := &PoolRuntime{
		log: o.Logger, ns: pool.Namespace, name: pool.Name, pool: config.NamespacedName(pool.Namespace, pool.Name), external: o.ExternalDiscovery,
		scraper: scraper, metrics: telemetry.NewMetrics(), maxAge: o.MetricsMaxAge,
	}
	if r.maxAge <= 0 {
		r.maxAge = datastore.DefaultMaxAge
	}
	sched, err := buildScheduler(cfg)
	if err != nil {
		return nil, err
	}
	r.scheduler, r.epc = sched, cfg.EndpointPickerConfig
	r.store = datastore.NewStore(r.endpointsChanged)
	sat, flow, err := r.admission(cfg)
	if err != nil {
		return nil, err
	}
	r.sat.Store(sat)
	r.flow = flow
	d, err := director.New(director.Options{Store: r.store, Scheduler: sched, Observer: r.metrics, MaxAge: r.maxAge,
		Saturation: sat, FlowControl: flow, FlowObserver: r.metrics.Flow})
	if err != nil {
		return nil, fmt.Errorf("extproc: %w", err)
	}
	r.director = d
	if !r.external {
		r.apply(cfg, pool)
	}
	// The gauge follows the thresholds of the configuration in force.
	r.metrics.RegisterPoolCollector(r.store, func(eps []*datastore.Endpoint, now time.Time) float64 {
		return r.sat.Load().Saturation(eps, now)
	})
	return r, nil
}

// choosePool finds the pool to serve: the named one, or the only one.
func choosePool(cfg *config.Config, name, namespace string) (*v1.InferencePool, error) {
	if name == "" {
		if len(cfg.Pools) == 1 {
			return cfg.Pools[0], nil
		}
		return nil, fmt.Errorf("%s: the file has %d InferencePools (%s); choose one with --pool-name", cfg.Source, len(cfg.Pools), poolList(cfg))
	}
	if p := cfg.Pool(namespace, name); p != nil {
		return p, nil
	}
	return nil, fmt.Errorf("%s: no InferencePool %s (the file has: %s)", cfg.Source, config.NamespacedName(namespace, name), poolList(cfg))
}

func poolList(cfg *config.Config) string {
	if len(cfg.Pools) == 0 {
		return "none"
	}
	names := make([]string, len(cfg.Pools))
	for i, p := range cfg.Pools {
		names[i] = config.NamespacedName(p.Namespace, p.Name)
	}
	return strings.Join(names, ", ")
}

// buildScheduler is the scheduler of cfg's EndpointPickerConfig (the
// default profile without one), as `igw serve` builds it.
func buildScheduler(cfg *config.Config) (*scheduling.Scheduler, error) {
	s, err := plugins.NewSchedulerFromYAML(cfg.EndpointPickerConfig)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", cfg.EndpointPickerConfigSource, err)
	}
	return s, nil
}

// admission is the saturation detector and flow-control bounds of cfg's
// EndpointPickerConfig; the staleness threshold defaults to the metrics max
// age, so an endpoint is never a candidate yet judged stale.
func (r *PoolRuntime) admission(cfg *config.Config) (*flowcontrol.SaturationDetector, flowcontrol.Config, error) {
	base := flowcontrol.DefaultSaturationConfig()
	base.MetricsStalenessThreshold = r.maxAge
	satCfg, flow, err := scheduling.AdmissionFromYAML(cfg.EndpointPickerConfig, base)
	if err != nil {
		return nil, flow, fmt.Errorf("%s: %w", cfg.EndpointPickerConfigSource, err)
	}
	sat, err := flowcontrol.NewSaturationDetector(satCfg)
	if err != nil {
		return nil, flow, fmt.Errorf("%s: %w", cfg.EndpointPickerConfigSource, err)
	}
	return sat, flow, nil
}

// apply makes the datastore hold exactly the pool (static discovery only).
func (r *PoolRuntime) apply(cfg *config.Config, pool *v1.InferencePool) {
	cfg.Apply(r.store, []*v1.InferencePool{pool})
}

// endpointsChanged keeps the scraper and the scheduler's per-endpoint state
// in step with the endpoint set (called under the datastore's writer lock).
func (r *PoolRuntime) endpointsChanged(all []*datastore.Endpoint) {
	r.scraper.SetEndpoints(all)
	if r.director != nil {
		r.director.EndpointsChanged(all)
	}
}

// Reload applies a new configuration. The pool this runtime serves must
// still be in it: a file without it is rejected and the running
// configuration stays, since the process was started to serve that pool.
// With ExternalDiscovery only the EndpointPickerConfig is taken from it.
// The scheduler (and its prefix-cache index) is kept when the
// EndpointPickerConfig did not change.
func (r *PoolRuntime) Reload(cfg *config.Config) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	pool := cfg.Pool(r.ns, r.name)
	if pool == nil && !r.external {
		return fmt.Errorf("%s: no InferencePool %s any more; keeping the running configuration", cfg.Source, r.pool)
	}
	if !slices.Equal(r.epc, cfg.EndpointPickerConfig) {
		sched, err := buildScheduler(cfg)
		if err != nil {
			return err
		}
		sat, flow, err := r.admission(cfg)
		if err != nil {
			return err
		}
		if flow != r.flow {
			// The pool's queues are built once with their bounds.
			r.log.Warn("flowControl changed; it takes effect on restart (saturationDetector applies now)")
		}
		r.scheduler, r.epc = sched, cfg.EndpointPickerConfig
		r.director.SetScheduler(sched)
		r.sat.Store(sat)
		r.director.SetSaturation(sat)
	}
	if !r.external {
		r.apply(cfg, pool)
	}
	r.log.Info("configuration applied", "source", cfg.Source, "pool", r.pool)
	return nil
}

// Run scrapes the pool's model servers until ctx ends.
func (r *PoolRuntime) Run(ctx context.Context) error {
	if err := r.scraper.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("extproc: scraper: %w", err)
	}
	return nil
}

// Director is the request lifecycle a Picker drives.
func (r *PoolRuntime) Director() *director.Director { return r.director }

// Pool is the namespaced name of the pool served.
func (r *PoolRuntime) Pool() string { return r.pool }

// Store is the datastore of the pool.
func (r *PoolRuntime) Store() *datastore.Store { return r.store }

// Metrics are the picker's Prometheus metrics.
func (r *PoolRuntime) Metrics() *telemetry.Metrics { return r.metrics }

// Ready reports whether the pool has at least one schedulable endpoint
// (ready, with fresh metrics): before that every request would get 503.
func (r *PoolRuntime) Ready() bool {
	p := r.store.Pool(r.pool)
	if p == nil {
		return false
	}
	now := time.Now()
	for _, e := range p.Endpoints {
		if datastore.IsCandidate(e, now, r.maxAge) {
			return true
		}
	}
	return false
}
