// Package engine is igw's one composition root. From a configuration it
// builds everything a data plane needs — the datastore, static discovery
// (or room for the Kubernetes reconcilers), the model-server scraper, the
// scheduler with its plugins, saturation detection and flow control, the
// request policies (routes, guards, authentication, token quotas) — and the
// Director over them; Reload swaps a new configuration in. igw serve, igw
// epp and igw bbr each build one engine and attach their wire adapter, so
// the two data planes can never disagree on how a request is treated.
//
// As the composition root it is also where the configuration's kinds are
// listed (Kinds, Schema): each is declared beside the module that consumes
// it, and the engine owns the ones that are its own to compile, Route and
// EndpointPickerConfig. The data planes see the engine and its Director
// only, never a module's configuration kinds (imports_test.go keeps it so).
package engine

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

	"go.opentelemetry.io/otel/trace"

	v1 "github.com/igw-dev/igw/api/v1"
	"github.com/igw-dev/igw/pkg/config"
	"github.com/igw-dev/igw/pkg/datastore"
	"github.com/igw-dev/igw/pkg/director"
	"github.com/igw-dev/igw/pkg/discovery/static"
	"github.com/igw-dev/igw/pkg/flowcontrol"
	"github.com/igw-dev/igw/pkg/kvevents"
	"github.com/igw-dev/igw/pkg/modelserver"
	"github.com/igw-dev/igw/pkg/openai"
	"github.com/igw-dev/igw/pkg/peerload"
	"github.com/igw-dev/igw/pkg/policy/guard"
	"github.com/igw-dev/igw/pkg/policy/quota"
	"github.com/igw-dev/igw/pkg/scheduling"
	"github.com/igw-dev/igw/pkg/scheduling/plugins"
	"github.com/igw-dev/igw/pkg/scheduling/plugins/preciseprefix"
	"github.com/igw-dev/igw/pkg/telemetry"
)

// AdmissionBuilder builds the admission policy (token quotas) of a
// configuration, or nil when it needs none. prev is the one being replaced
// (nil at start): returning it, or reusing its state, keeps counters and
// connections across a reload. An error fails the load.
type AdmissionBuilder func(cfg *config.Config, prev director.Admission) (director.Admission, error)

// Options configure an Engine; zero values get defaults.
type Options struct {
	Logger *slog.Logger
	// Scraper configures model-server scraping.
	Scraper modelserver.Options
	// MetricsMaxAge is how old an endpoint's metrics may be for it to be
	// scheduled (default datastore.DefaultMaxAge); the saturation
	// detector's staleness threshold defaults to it, so an endpoint is
	// never a candidate yet judged stale.
	MetricsMaxAge time.Duration
	// PoolName and PoolNamespace make the engine serve one InferencePool
	// (igw epp; namespace default config.DefaultNamespace). An empty
	// PoolName with Pool set serves the file's only pool. Without Pool,
	// every pool of the file is served (igw serve).
	Pool                    bool
	PoolName, PoolNamespace string
	// ExternalDiscovery leaves the pool's endpoints, objectives and
	// rewrites to another feeder of Store() (the Kubernetes reconcilers):
	// the configuration then contributes its EndpointPickerConfig and
	// policies only, and PoolName is required.
	ExternalDiscovery bool
	// Admission builds each configuration's admission policy (default:
	// token quotas from QuotaPolicies).
	Admission AdmissionBuilder
	// AccessLog, when set, receives one record per request
	// (telemetry.Metrics.EnableAccessLog); nil: no access log.
	AccessLog *slog.Logger
	// ExplainDecisions lets requests ask for their scheduling decision
	// explained (director.Options.ExplainDecisions); off by default.
	ExplainDecisions bool
	// Tracer traces requests (director.Options.Tracer); nil: no tracing.
	Tracer trace.Tracer
	// PeerLoad, when set, shares in-flight counts with the other igw
	// replicas of an active-active deployment through Redis (package
	// peerload); nil: this replica's own counts only.
	PeerLoad *peerload.Options
}

// Engine holds one running configuration and everything built from it.
type Engine struct {
	log      *slog.Logger
	store    *datastore.Store
	scraper  *modelserver.Scraper
	director *director.Director
	// kvIndex is what the model servers report caching (their KV-cache
	// events), fed by kvSub while the scheduler has a plugin that reads it.
	kvIndex *kvevents.Index
	kvSub   *kvevents.Subscriber
	// peers shares in-flight counts with other igw replicas; nil when
	// running alone.
	peers     *peerload.Sharer
	metrics   *telemetry.Metrics
	validator *openai.Validator
	maxAge    time.Duration
	admission AdmissionBuilder
	quotas    *quota.Admissions

	pool     string // namespace/name when serving one pool
	ns, name string
	external bool

	mu        sync.Mutex // serializes Reload
	cfg       atomic.Pointer[config.Config]
	epc       []byte // the EndpointPickerConfig the scheduler was built from
	scheduler *scheduling.Scheduler
	flow      flowcontrol.Config
	sat       atomic.Pointer[flowcontrol.SaturationDetector]
	policy    *director.Policy
	closed    bool
}

// New builds the engine of cfg; nothing is scraped until Run.
func New(cfg *config.Config, o Options) (*Engine, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Scraper.Logger == nil {
		o.Scraper.Logger = o.Logger
	}
	if o.MetricsMaxAge <= 0 {
		o.MetricsMaxAge = datastore.DefaultMaxAge
	}
	e := &Engine{log: o.Logger, metrics: telemetry.NewMetrics(), validator: openai.NewValidator(), maxAge: o.MetricsMaxAge,
		external: o.ExternalDiscovery}
	if o.AccessLog != nil {
		e.metrics.EnableAccessLog(o.AccessLog)
	}
	e.quotas = quota.NewAdmissions(e.metrics.Registry, o.Logger)
	e.admission = o.Admission
	if e.admission == nil {
		e.admission = e.quotas.Build
	}
	if o.Pool || o.ExternalDiscovery {
		p, err := choosePool(cfg, o)
		if err != nil {
			return nil, err
		}
		e.ns, e.name, e.pool = p.Namespace, p.Name, config.NamespacedName(p.Namespace, p.Name)
	}
	scraper, err := modelserver.NewScraper(o.Scraper)
	if err != nil {
		return nil, fmt.Errorf("engine: %w", err)
	}
	e.scraper = scraper
	e.kvIndex = kvevents.NewIndex(0)
	if e.kvSub, err = kvevents.NewSubscriber(kvevents.Options{Index: e.kvIndex, Log: e.log}); err != nil {
		return nil, fmt.Errorf("engine: %w", err)
	}
	if o.PeerLoad != nil {
		po := *o.PeerLoad
		if po.Log == nil {
			po.Log = e.log
		}
		if e.peers, err = peerload.New(po); err != nil {
			return nil, fmt.Errorf("engine: %w", err)
		}
		e.log.Info("sharing in-flight counts with the other igw replicas", "redis", po.Addr, "replica", e.peers.Replica())
	}
	e.store = datastore.NewStore(e.endpointsChanged)
	sched, err := buildScheduler(cfg)
	if err != nil {
		return nil, err
	}
	e.useKVEvents(sched)
	sat, flow, err := e.admissionSettings(cfg)
	if err != nil {
		return nil, err
	}
	pol, err := e.compilePolicy(cfg, nil)
	if err != nil {
		return nil, err
	}
	epc, _ := endpointPickerConfig(cfg)
	e.scheduler, e.epc, e.flow, e.policy = sched, epc, flow, pol
	e.sat.Store(sat)
	d, err := director.New(director.Options{Store: e.store, Scheduler: sched, Saturation: sat, MaxAge: e.maxAge,
		Observer: e.metrics, FlowControl: flow, FlowObserver: e.metrics.Flow, Policy: pol, Logger: e.log,
		ExplainDecisions: o.ExplainDecisions, Tracer: o.Tracer,
		Decisions: e.metrics.RecordDecision, DecisionsEvery: telemetry.DecisionSampleEvery, DecisionsWanted: e.metrics.DashboardRead})
	if err != nil {
		closeAdmission(pol.Admission)
		return nil, fmt.Errorf("engine: %w", err)
	}
	e.director = d
	e.cfg.Store(cfg)
	e.discover(cfg)
	// The gauge follows the thresholds of the configuration in force.
	e.metrics.RegisterPoolCollector(e.store, func(eps []*datastore.Endpoint, now time.Time) float64 {
		return e.sat.Load().Saturation(eps, now)
	})
	return e, nil
}

// choosePool finds the pool to serve: the named one, or the only one.
func choosePool(cfg *config.Config, o Options) (*v1.InferencePool, error) {
	ns := o.PoolNamespace
	if ns == "" {
		ns = config.DefaultNamespace
	}
	if o.ExternalDiscovery {
		if o.PoolName == "" {
			return nil, errors.New("engine: a pool name is required")
		}
		p := &v1.InferencePool{}
		p.Name, p.Namespace = o.PoolName, ns
		return p, nil
	}
	if o.PoolName == "" {
		if pools := static.Pools(cfg); len(pools) == 1 {
			return pools[0], nil
		}
		return nil, fmt.Errorf("%s: the file has %d InferencePools (%s); choose one with --pool-name", cfg.Source, len(static.Pools(cfg)), poolList(cfg))
	}
	if p := static.Pool(cfg, ns, o.PoolName); p != nil {
		return p, nil
	}
	return nil, fmt.Errorf("%s: no InferencePool %s (the file has: %s)", cfg.Source, config.NamespacedName(ns, o.PoolName), poolList(cfg))
}

func poolList(cfg *config.Config) string {
	pools := static.Pools(cfg)
	if len(pools) == 0 {
		return "none"
	}
	names := make([]string, len(pools))
	for i, p := range pools {
		names[i] = config.NamespacedName(p.Namespace, p.Name)
	}
	return strings.Join(names, ", ")
}

// buildScheduler is the scheduler of cfg's EndpointPickerConfig (the
// default profile without one), its errors prefixed with where it came
// from.
func buildScheduler(cfg *config.Config) (*scheduling.Scheduler, error) {
	epc, source := endpointPickerConfig(cfg)
	s, err := plugins.NewSchedulerFromYAML(epc)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", source, err)
	}
	return s, nil
}

// admissionSettings are the saturation detector and flow-control bounds of
// cfg's EndpointPickerConfig.
func (e *Engine) admissionSettings(cfg *config.Config) (*flowcontrol.SaturationDetector, flowcontrol.Config, error) {
	base := flowcontrol.DefaultSaturationConfig()
	base.MetricsStalenessThreshold = e.maxAge
	epc, source := endpointPickerConfig(cfg)
	satCfg, flow, err := scheduling.AdmissionFromYAML(epc, base)
	if err != nil {
		return nil, flow, fmt.Errorf("%s: %w", source, err)
	}
	sat, err := flowcontrol.NewSaturationDetector(satCfg)
	if err != nil {
		return nil, flow, fmt.Errorf("%s: %w", source, err)
	}
	return sat, flow, nil
}

// discover makes the datastore hold the configuration's pools (static
// discovery); with ExternalDiscovery the reconcilers do it instead.
func (e *Engine) discover(cfg *config.Config) {
	if e.external {
		return
	}
	pools := static.Pools(cfg)
	if e.pool != "" {
		pools = []*v1.InferencePool{static.Pool(cfg, e.ns, e.name)}
	}
	static.Apply(cfg, e.store, pools)
}

// endpointsChanged keeps the scraper and the scheduler's per-endpoint state
// in step with the endpoint set (called under the datastore's writer lock).
func (e *Engine) endpointsChanged(all []*datastore.Endpoint) {
	e.scraper.SetEndpoints(all)
	e.kvSub.SetEndpoints(all)
	if e.peers != nil {
		e.peers.SetEndpoints(all)
	}
	if e.director != nil {
		e.director.EndpointsChanged(all)
	}
}

// useKVEvents gives sched's KV-event readers (precise-prefix-cache-scorer)
// the index and subscribes to the endpoints' events while one exists.
func (e *Engine) useKVEvents(sched *scheduling.Scheduler) {
	wanted := false
	for _, p := range sched.Plugins() {
		if s, ok := p.(*preciseprefix.Scorer); ok {
			wanted = true
			s.AttachIndex(e.kvIndex)
			if p := s.Parameters(); s.Hashing() {
				e.log.Info("precise-prefix-cache-scorer: precise matching from KV-cache events", "plugin", s.TypedName().String(),
					"tokenizer", p.Tokenizer, "modelTokenizers", len(p.ModelTokenizers), "blockSize", p.BlockSize)
			} else {
				e.log.Warn("precise-prefix-cache-scorer has no tokenizer (parameters tokenizer, modelTokenizers): it falls back to approximate prefix matching", "plugin", s.TypedName().String())
			}
		}
	}
	e.kvSub.SetActive(wanted)
}

// KVIndex is what the model servers report caching, from their KV-cache
// events; empty unless the scheduler has a precise-prefix-cache-scorer.
func (e *Engine) KVIndex() *kvevents.Index { return e.kvIndex }

// KVEventStats are the counters of the KV-event subscription of the
// endpoint at addr: batches applied, gaps, publisher restarts.
func (e *Engine) KVEventStats(addr string) kvevents.Stats { return e.kvSub.Stats(addr) }

// Reload applies a new configuration. A configuration that fails to build
// leaves the running one in place; one serving a single pool must still
// declare it (unless discovery is external). The scheduler (and its
// prefix-cache index) is kept when the EndpointPickerConfig did not change;
// flow-control bounds take effect on restart.
func (e *Engine) Reload(cfg *config.Config) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.pool != "" && !e.external && static.Pool(cfg, e.ns, e.name) == nil {
		return fmt.Errorf("%s: no InferencePool %s any more; keeping the running configuration", cfg.Source, e.pool)
	}
	sched, sat := e.scheduler, e.sat.Load()
	epc, _ := endpointPickerConfig(cfg)
	if !slices.Equal(e.epc, epc) {
		var err error
		if sched, err = buildScheduler(cfg); err != nil {
			return err
		}
		var flow flowcontrol.Config
		if sat, flow, err = e.admissionSettings(cfg); err != nil {
			return err
		}
		if flow != e.flow {
			// Each pool's queues are built once with their bounds;
			// swapping them under queued requests is not worth the risk.
			e.log.Warn("flowControl changed; it takes effect on restart (saturationDetector applies now)")
		}
	}
	prev := e.policy
	pol, err := e.compilePolicy(cfg, prev)
	if err != nil {
		return err
	}
	if prev.Admission != nil && prev.Admission != pol.Admission {
		defer closeAdmission(prev.Admission)
	}
	if sched != e.scheduler {
		e.useKVEvents(sched)
	}
	e.scheduler, e.epc, e.policy = sched, epc, pol
	e.sat.Store(sat)
	e.director.SetScheduler(sched)
	e.director.SetSaturation(sat)
	e.director.SetPolicy(pol)
	e.cfg.Store(cfg)
	e.discover(cfg)
	e.log.Info("configuration applied", "source", cfg.Source, "digest", digest(cfg), "pools", len(static.Pools(cfg)), "routes", len(Routes(cfg)))
	return nil
}

func digest(cfg *config.Config) string {
	if len(cfg.Digest) > 12 {
		return cfg.Digest[:12]
	}
	return cfg.Digest
}

// Run scrapes the model servers, and subscribes to their KV-cache events
// when the scheduler reads them, until ctx ends.
func (e *Engine) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	var subErr error
	wg.Go(func() { subErr = e.kvSub.Run(ctx) })
	if e.peers != nil {
		wg.Go(func() { _ = e.peers.Run(ctx) })
	}
	err := e.scraper.Run(ctx)
	wg.Wait()
	if err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("engine: scraper: %w", err)
	}
	if subErr != nil && !errors.Is(subErr, context.Canceled) {
		return fmt.Errorf("engine: kv events: %w", subErr)
	}
	return nil
}

// Close releases what the running configuration holds (the quota store's
// connections). Requests in flight may still settle on it.
func (e *Engine) Close() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return
	}
	e.closed = true
	closeAdmission(e.policy.Admission)
}

// Ready reports whether every pool served has at least one schedulable
// endpoint (ready, with fresh metrics): before that its requests get 503.
func (e *Engine) Ready() bool {
	names := []string{e.pool}
	if e.pool == "" {
		names = e.store.PoolNames()
	}
	now := time.Now()
	for _, name := range names {
		p := e.store.Pool(name)
		if p == nil {
			if e.pool != "" {
				return false
			}
			continue // deleted by a reload between the two reads
		}
		ok := false
		for _, ep := range p.Endpoints {
			if datastore.IsCandidate(ep, now, e.maxAge) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

// Director is the request lifecycle the data planes drive.
func (e *Engine) Director() *director.Director { return e.director }

// Store is the datastore; the Kubernetes reconcilers feed it with
// ExternalDiscovery.
func (e *Engine) Store() *datastore.Store { return e.store }

// Metrics are the engine's Prometheus metrics (the planes add theirs to
// the same registry).
func (e *Engine) Metrics() *telemetry.Metrics { return e.metrics }

// Config is the configuration in force.
func (e *Engine) Config() *config.Config { return e.cfg.Load() }

// Pool is the namespaced name of the one pool served ("" for all).
func (e *Engine) Pool() string { return e.pool }

// Saturation is the pool's saturation (0..1+) under the thresholds in
// force, for readiness and autoscaling.
func (e *Engine) Saturation(eps []*datastore.Endpoint, now time.Time) float64 {
	return e.sat.Load().Saturation(eps, now)
}

// guardOptions are the dependencies every route's request guard shares.
func (e *Engine) guardOptions() guard.Options {
	return guard.Options{Validator: e.validator, Observer: e.metrics, Logger: e.log}
}

// Scheduler is the scheduler in force (kept across reloads that leave the
// EndpointPickerConfig unchanged, with its prefix-cache index).
func (e *Engine) Scheduler() *scheduling.Scheduler {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.scheduler
}
