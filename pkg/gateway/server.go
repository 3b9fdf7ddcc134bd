package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/igw-dev/igw/pkg/config"
	"github.com/igw-dev/igw/pkg/datastore"
	"github.com/igw-dev/igw/pkg/director"
	"github.com/igw-dev/igw/pkg/gateway/guard"
	"github.com/igw-dev/igw/pkg/modelserver"
	"github.com/igw-dev/igw/pkg/openai"
	"github.com/igw-dev/igw/pkg/telemetry"
)

// Options are a Server's dependencies; zero values get defaults.
type Options struct {
	Logger *slog.Logger
	// Transport sends requests to model servers (default: a keep-alive
	// transport without compression, so streams pass through untouched).
	Transport http.RoundTripper
	// Scraper configures model-server scraping.
	Scraper modelserver.Options
	// Admission builds the admission policy (token quotas) of each
	// configuration; nil admits every authenticated request.
	Admission AdmissionFactory
}

// Server is the standalone gateway: listeners, routes, the Director and the
// model-server scraper, built from one configuration and reloadable.
type Server struct {
	log       *slog.Logger
	store     *datastore.Store
	director  *director.Director
	scraper   *modelserver.Scraper
	metrics   *telemetry.Metrics
	transport http.RoundTripper
	pickers   *pickerConns // to the remote pickers of pools with an endpointPickerRef
	// newAdmission builds each configuration's Admission (may be nil).
	newAdmission AdmissionFactory
	// validator checks request shapes for every guard with validate: true.
	validator *openai.Validator
	quotas    quotaState // token quotas, the default Admission (quota.go)

	rt         atomic.Pointer[runtime]
	reloadMu   sync.Mutex
	requestIDs atomic.Uint64

	api, admin         *http.Server
	apiLn, adminLn     net.Listener
	started            time.Time
	serving            sync.WaitGroup
	runCancel          context.CancelFunc
	ready, shutdownNow atomic.Bool
}

// New builds a Server from cfg; nothing listens until Start.
func New(cfg *config.Config, o Options) (*Server, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Transport == nil {
		o.Transport = NewTransport()
	}
	if o.Scraper.Logger == nil {
		o.Scraper.Logger = o.Logger
	}
	scraper, err := modelserver.NewScraper(o.Scraper)
	if err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	s := &Server{log: o.Logger, scraper: scraper, metrics: telemetry.NewMetrics(), transport: o.Transport, pickers: newPickerConns(),
		newAdmission: o.Admission, validator: openai.NewValidator()}
	if s.newAdmission == nil {
		s.newAdmission = s.quotaAdmission
	}
	s.store = datastore.NewStore(s.endpointsChanged)
	rt, err := compile(cfg, nil, s.newAdmission, s.guardOptions())
	if err != nil {
		return nil, err
	}
	d, err := director.New(director.Options{Store: s.store, Scheduler: rt.scheduler, Saturation: rt.saturation, Observer: s.metrics,
		FlowControl: rt.flow, FlowObserver: s.metrics.Flow})
	if err != nil {
		return nil, err
	}
	s.director = d
	s.rt.Store(rt)
	cfg.Apply(s.store, cfg.Pools)
	// The gauge follows the thresholds of the configuration in force.
	s.metrics.RegisterPoolCollector(s.store, func(eps []*datastore.Endpoint, now time.Time) float64 {
		return s.rt.Load().saturation.Saturation(eps, now)
	})
	return s, nil
}

// guardOptions are the dependencies every route's request guard shares.
func (s *Server) guardOptions() guard.Options {
	return guard.Options{Validator: s.validator, Observer: s.metrics, Logger: s.log}
}

// NewTransport is the transport to model servers: many idle connections
// per server (every replica receives a steady stream), no compression
// (streams and usage pass through as the server wrote them), and a dial
// timeout so a dead server fails fast and the request moves on to a
// fallback.
func NewTransport() *http.Transport {
	return &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 2 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        4096,
		MaxIdleConnsPerHost: 512,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
		ForceAttemptHTTP2:   false,
	}
}

// endpointsChanged keeps the scraper and the scheduler in step with the
// endpoint set (called by the datastore under its writer lock).
func (s *Server) endpointsChanged(all []*datastore.Endpoint) {
	s.scraper.SetEndpoints(all)
	if s.director != nil {
		s.director.EndpointsChanged(all)
	}
}

// Reload swaps in a new configuration. Requests in flight finish on the
// decisions they already have; a config that fails to compile leaves the
// current one in place. Listener addresses take effect only on restart.
func (s *Server) Reload(cfg *config.Config) error {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	prev := s.rt.Load()
	rt, err := compile(cfg, prev, s.newAdmission, s.guardOptions())
	if err != nil {
		return err
	}
	if prev.admission != nil && prev.admission != rt.admission {
		defer closeAdmission(prev.admission)
	}
	if a, b := prev.cfg.Gateway.Spec, cfg.Gateway.Spec; a.Address != b.Address || a.AdminAddress != b.AdminAddress {
		s.log.Warn("listener addresses changed; they take effect on restart", "address", b.Address, "adminAddress", b.AdminAddress)
	}
	if rt.flow != prev.flow {
		// Each pool's queues are built once with their bounds; swapping
		// them under queued requests is not worth the risk.
		s.log.Warn("flowControl changed; it takes effect on restart (saturationDetector applies now)")
	}
	s.director.SetScheduler(rt.scheduler)
	s.director.SetSaturation(rt.saturation)
	s.rt.Store(rt)
	cfg.Apply(s.store, cfg.Pools)
	s.log.Info("configuration applied", "source", cfg.Source, "digest", cfg.Digest[:12], "pools", len(cfg.Pools), "routes", len(cfg.Routes))
	return nil
}

// Start binds the listeners and serves in the background until Shutdown.
func (s *Server) Start(ctx context.Context) error {
	spec := s.rt.Load().cfg.Gateway.Spec
	apiLn, err := net.Listen("tcp", spec.Address)
	if err != nil {
		return fmt.Errorf("gateway: listen %s: %w", spec.Address, err)
	}
	adminLn, err := net.Listen("tcp", spec.AdminAddress)
	if err != nil {
		apiLn.Close()
		return fmt.Errorf("gateway: listen %s: %w", spec.AdminAddress, err)
	}
	s.apiLn, s.adminLn = apiLn, adminLn
	s.api = &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: spec.Timeouts.ReadHeader.Duration,
		IdleTimeout:       spec.Timeouts.Idle.Duration,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	s.admin = &http.Server{Handler: s.AdminHandler(), ReadHeaderTimeout: 10 * time.Second}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.runCancel = cancel
	s.started = time.Now()
	s.serving.Add(3)
	go func() { defer s.serving.Done(); _ = s.scraper.Run(runCtx) }()
	go func() { defer s.serving.Done(); s.serve(s.api, apiLn) }()
	go func() { defer s.serving.Done(); s.serve(s.admin, adminLn) }()
	s.log.Info("igw gateway serving", "address", apiLn.Addr().String(), "admin", adminLn.Addr().String())
	return nil
}

func (s *Server) serve(hs *http.Server, ln net.Listener) {
	if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		s.log.Error("listener stopped", "address", ln.Addr().String(), "err", err)
	}
}

// Addr is the API listener's address (after Start).
func (s *Server) Addr() string { return s.apiLn.Addr().String() }

// AdminAddr is the admin listener's address (after Start).
func (s *Server) AdminAddr() string { return s.adminLn.Addr().String() }

// Director is the request lifecycle the server drives.
func (s *Server) Director() *director.Director { return s.director }

// Metrics are the gateway's metrics.
func (s *Server) Metrics() *telemetry.Metrics { return s.metrics }

// Shutdown stops accepting requests, reports not ready, and waits (until
// ctx ends) for requests in flight, streams included, to finish.
func (s *Server) Shutdown(ctx context.Context) error {
	s.shutdownNow.Store(true)
	err := s.api.Shutdown(ctx)
	if err != nil {
		_ = s.api.Close()
	}
	_ = s.admin.Shutdown(ctx)
	s.runCancel()
	s.serving.Wait()
	s.pickers.close()
	if a := s.rt.Load().admission; a != nil {
		closeAdmission(a)
	}
	return err
}

// AdminHandler serves /metrics, /healthz and /readyz.
func (s *Server) AdminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.metrics.Registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", s.handleHealthz)
	mux.HandleFunc("GET /readyz", s.handleReadyz)
	return mux
}

func (s *Server) handleHealthz(w http.ResponseWriter, _ *http.Request) {
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write([]byte("ok\n"))
}

// handleReadyz reports ready once every pool has at least one schedulable
// endpoint, or after a grace period (a pool of dead servers must not take
// the whole gateway out of its load balancer); never while shutting down.
func (s *Server) handleReadyz(w http.ResponseWriter, _ *http.Request) {
	if s.shutdownNow.Load() {
		http.Error(w, "shutting down", http.StatusServiceUnavailable)
		return
	}
	if !s.ready.Load() {
		ok := time.Since(s.started) > readyGrace
		if !ok {
			ok = true
			now := time.Now()
			for _, name := range s.store.PoolNames() {
				// A reload may delete the pool between the two reads; a
				// pool that is gone is not one to wait for.
				p := s.store.Pool(name)
				if p != nil && len(datastore.Candidates(nil, p.Endpoints, now, datastore.DefaultMaxAge)) == 0 {
					ok = false
					break
				}
			}
		}
		if !ok {
			http.Error(w, "model servers not scraped yet", http.StatusServiceUnavailable)
			return
		}
		s.ready.Store(true)
	}
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write([]byte("ok\n"))
}

const readyGrace = 5 * time.Second
