package gateway

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/trace"

	"github.com/igw-dev/igw/pkg/config"
	"github.com/igw-dev/igw/pkg/director"
	"github.com/igw-dev/igw/pkg/engine"
	"github.com/igw-dev/igw/pkg/modelserver"
	"github.com/igw-dev/igw/pkg/peerload"
	"github.com/igw-dev/igw/pkg/telemetry"
)

// Options are a Server's dependencies; zero values get defaults.
type Options struct {
	Logger *slog.Logger
	// Transport sends requests to model servers (default: a keep-alive
	// transport without compression, so streams pass through untouched).
	Transport http.RoundTripper
	// Scraper configures model-server scraping (when New builds the
	// engine).
	Scraper modelserver.Options
	// Admission builds the admission policy (token quotas) of each
	// configuration (when New builds the engine); nil: token quotas from
	// the configuration's QuotaPolicies.
	Admission engine.AdmissionBuilder
	// AccessLog and ExplainDecisions are the engine's (when New builds
	// it): a logger for one record per request, and whether requests may
	// ask for their scheduling decision explained.
	AccessLog        *slog.Logger
	ExplainDecisions bool
	// Tracer traces requests (director.Options.Tracer); nil: no tracing.
	Tracer trace.Tracer
	// PeerLoad shares in-flight counts with other igw replicas (when New
	// builds the engine; engine.Options.PeerLoad).
	PeerLoad *peerload.Options
	// Ready, when set, must also hold for /readyz to answer ready (igw
	// serve --kubernetes: the cluster's routes applied), with no grace
	// period: a replica that routes nothing must not receive traffic.
	Ready func() bool
}

// Server is the standalone data plane: the HTTP listeners in front of an
// engine. It maps HTTP to the Director and back — bytes, headers and the
// forwarding of requests to model servers — and nothing else.
type Server struct {
	extraReady func() bool // Options.Ready
	log        *slog.Logger
	engine     *engine.Engine
	director   *director.Director
	metrics    *telemetry.Metrics
	transport  http.RoundTripper
	pickers    *pickerConns // to the remote pickers of pools with an endpointPickerRef
	bodies     bodyPools
	budget     bodyBudget               // buffer bytes held by request bodies in flight
	pace       atomic.Pointer[bodyPace] // how fast request bodies must arrive
	// relayBufs recycles relay buffers: allocating (and zeroing) 32 KiB
	// per request was most of the bytes the request path allocated, and
	// the GC cycles it caused showed up as tail latency.
	relayBufs sync.Pool

	reloadMu sync.Mutex

	api, admin         *http.Server
	apiLn, adminLn     net.Listener
	started            time.Time
	serving            sync.WaitGroup
	runCancel          context.CancelFunc
	ready, shutdownNow atomic.Bool
}

// New builds a Server and its engine from cfg; nothing listens until
// Start.
func New(cfg *config.Config, o Options) (*Server, error) {
	e, err := engine.New(cfg, engine.Options{Logger: o.Logger, Scraper: o.Scraper, Admission: o.Admission,
		AccessLog: o.AccessLog, ExplainDecisions: o.ExplainDecisions, PeerLoad: o.PeerLoad, Tracer: o.Tracer})
	if err != nil {
		return nil, err
	}
	return NewWithEngine(e, o), nil
}

// NewWithEngine serves an engine built by the caller.
func NewWithEngine(e *engine.Engine, o Options) *Server {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Transport == nil {
		o.Transport = NewTransport()
	}
	s := &Server{log: o.Logger, engine: e, director: e.Director(), metrics: e.Metrics(), transport: o.Transport, pickers: newPickerConns(),
		extraReady: o.Ready}
	s.budget.observe = s.metrics.BodyBytesHeld
	s.applyFront(e.Config())
	return s
}

// NewTransport is the transport to model servers: many idle connections
// per server (every replica receives a steady stream) and no compression
// (streams and usage pass through as the server wrote them). Its dial
// timeout is only an outer bound: each attempt bounds its own connect and
// first-byte waits (the route's attempt settings), so a dead or hung
// server fails fast and the request moves on to a fallback.
func NewTransport() *http.Transport {
	return &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        4096,
		MaxIdleConnsPerHost: 512,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
		ForceAttemptHTTP2:   false,
	}
}

// Reload swaps in a new configuration. Requests in flight finish on the
// decisions they already have; a config that fails to build leaves the
// current one in place. Listener addresses take effect only on restart.
func (s *Server) Reload(cfg *config.Config) error {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	prev := s.engine.Config()
	if err := s.engine.Reload(cfg); err != nil {
		return err
	}
	s.applyFront(cfg)
	if a, b := gatewaySpec(prev), gatewaySpec(cfg); a.Address != b.Address || a.AdminAddress != b.AdminAddress {
		s.log.Warn("listener addresses changed; they take effect on restart", "address", b.Address, "adminAddress", b.AdminAddress)
	}
	return nil
}

// gatewaySpec is the listener configuration of cfg (the defaults when
// the file has no Gateway).
func gatewaySpec(cfg *config.Config) GatewaySpec { return Settings(cfg).Spec }

// Start binds the listeners and serves in the background until Shutdown.
func (s *Server) Start(ctx context.Context) error {
	spec := gatewaySpec(s.engine.Config())
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
	protocols := new(http.Protocols)
	protocols.SetHTTP1(true)
	_, _, _, _, h2c := spec.front()
	protocols.SetUnencryptedHTTP2(h2c)
	s.api = &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: spec.Timeouts.ReadHeader.Duration,
		IdleTimeout:       spec.Timeouts.Idle.Duration,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		Protocols:         protocols,
	}
	if t := spec.TLS; t != nil && t.Certificate != nil {
		protocols.SetHTTP2(true)
		s.api.TLSConfig = &tls.Config{Certificates: []tls.Certificate{*t.Certificate}, MinVersion: tls.VersionTLS12}
	}
	s.admin = &http.Server{Handler: s.AdminHandler(), ReadHeaderTimeout: 10 * time.Second}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.runCancel = cancel
	s.started = time.Now()
	s.serving.Add(3)
	go func() {
		defer s.serving.Done()
		if err := s.engine.Run(runCtx); err != nil {
			s.log.Error("engine stopped", "err", err)
		}
	}()
	go func() { defer s.serving.Done(); s.serve(s.api, apiLn) }()
	go func() { defer s.serving.Done(); s.serve(s.admin, adminLn) }()
	s.log.Info("igw gateway serving", "address", apiLn.Addr().String(), "admin", adminLn.Addr().String())
	return nil
}

func (s *Server) serve(hs *http.Server, ln net.Listener) {
	serve := hs.Serve
	if hs.TLSConfig != nil {
		serve = func(ln net.Listener) error { return hs.ServeTLS(ln, "", "") }
	}
	if err := serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		s.log.Error("listener stopped", "address", ln.Addr().String(), "err", err)
	}
}

// Addr is the API listener's address (after Start).
func (s *Server) Addr() string { return s.apiLn.Addr().String() }

// AdminAddr is the admin listener's address (after Start).
func (s *Server) AdminAddr() string { return s.adminLn.Addr().String() }

// Director is the request lifecycle the server drives.
func (s *Server) Director() *director.Director { return s.director }

// Engine is what the server serves.
func (s *Server) Engine() *engine.Engine { return s.engine }

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
	s.engine.Close()
	return err
}

// AdminHandler serves /metrics, /healthz, /readyz and /debug/kv-index.
func (s *Server) AdminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.metrics.Registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", s.handleHealthz)
	mux.HandleFunc("GET /readyz", s.handleReadyz)
	dash := s.metrics.DashboardHandler(s.engine.Store())
	mux.Handle("GET "+telemetry.DashboardPath, dash)
	mux.Handle("GET "+telemetry.DashboardJSONPath, dash)
	mux.HandleFunc("GET /debug/kv-index", s.handleKVIndex)
	return mux
}

// KVIndexDump is GET /debug/kv-index?endpoint=host:port on the admin
// listener: what igw's KV-event index holds for one endpoint, in the shape
// of igw sim's GET /debug/kv-cache, so an operator (and the e2e tests) can
// compare the router's view with a server's real cache.
type KVIndexDump struct {
	// Blocks are the engine's hashes of the tracked blocks, sorted;
	// Uncertain of them are not matched (after a sequence gap).
	Blocks    []uint64 `json:"blocks"`
	Uncertain int      `json:"uncertain"`
	// Batches, Gaps and Restarts count the endpoint's event batches
	// applied, sequence gaps (lost batches or connections) and publisher
	// restarts (the sequence going back).
	Batches  uint64 `json:"batches"`
	Gaps     uint64 `json:"gaps"`
	Restarts uint64 `json:"restarts"`
}

func (s *Server) handleKVIndex(w http.ResponseWriter, r *http.Request) {
	ep := r.URL.Query().Get("endpoint")
	if ep == "" {
		http.Error(w, "endpoint=host:port is required", http.StatusBadRequest)
		return
	}
	ix := s.engine.KVIndex()
	st := s.engine.KVEventStats(ep)
	dump := KVIndexDump{Blocks: ix.Hashes(ep), Uncertain: ix.Stats(ep).Uncertain, Batches: st.Batches, Gaps: st.Gaps, Restarts: st.Restarts}
	if dump.Blocks == nil {
		dump.Blocks = []uint64{}
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(dump)
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
	if s.extraReady != nil && !s.extraReady() {
		http.Error(w, "routes not applied yet", http.StatusServiceUnavailable)
		return
	}
	if !s.ready.Load() {
		if time.Since(s.started) <= readyGrace && !s.engine.Ready() {
			http.Error(w, "model servers not scraped yet", http.StatusServiceUnavailable)
			return
		}
		s.ready.Store(true)
	}
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write([]byte("ok\n"))
}

const readyGrace = 5 * time.Second
