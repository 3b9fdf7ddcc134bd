package extproc

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"strconv"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
)

// ServerOptions configure a Server; zero values get defaults.
type ServerOptions struct {
	Logger *slog.Logger
	// Address is the interface the ports bind to ("" for all).
	Address string
	// GRPCPort serves ext_proc, HealthPort the gRPC health service,
	// MetricsPort (when Metrics is set) Prometheus /metrics. Port 0 picks
	// a free port.
	GRPCPort, HealthPort, MetricsPort int
	// TLS, if set, secures the ext_proc port; with HealthTLS also the
	// health port (plaintext otherwise, for Kubernetes' gRPC probes).
	TLS       *tls.Config
	HealthTLS bool
	// MaxBodyBytes bounds a request body (and so a gRPC message).
	MaxBodyBytes int
	// Metrics serves /metrics on MetricsPort; nil: no metrics port.
	Metrics http.Handler
	// Pages are further handlers of the metrics port, by ServeMux pattern
	// (the live dashboard).
	Pages map[string]http.Handler
	// Pprof adds Go's /debug/pprof/ profiles to the metrics port.
	Pprof bool
	// Ready reports readiness (polled every ReadyInterval, default 250ms);
	// nil: always ready.
	Ready         func() bool
	ReadyInterval time.Duration
}

// Server serves an ext_proc processor (the Picker or the BodyRouter) the
// way Endpoint Pickers are deployed: the ext_proc port, a gRPC health port
// whose readiness follows Ready, and a metrics port. Its lifecycle mirrors
// gateway.Server: New, Start, Shutdown.
type Server struct {
	o      ServerOptions
	p      extprocv3.ExternalProcessorServer
	grpc   *grpc.Server
	health *grpc.Server
	hs     *health.Server
	http   *http.Server

	grpcLn, healthLn, metricsLn net.Listener
	cancel                      context.CancelFunc
	errs                        chan error // every goroutine's result
	failed                      chan error // the first serving error
	running                     int
}

// NewServer serves p; nothing listens until Start.
func NewServer(p extprocv3.ExternalProcessorServer, o ServerOptions) *Server {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.ReadyInterval <= 0 {
		o.ReadyInterval = 250 * time.Millisecond
	}
	if o.Ready == nil {
		o.Ready = func() bool { return true }
	}
	return &Server{o: o, p: p}
}

// Start binds the ports and serves in the background until Shutdown. A
// server that fails later reports on Failed.
func (s *Server) Start(ctx context.Context) error {
	listen := func(port int) (net.Listener, error) {
		ln, err := net.Listen("tcp", net.JoinHostPort(s.o.Address, strconv.Itoa(port)))
		if err != nil {
			return nil, fmt.Errorf("extproc: listen: %w", err)
		}
		return ln, nil
	}
	var err error
	if s.grpcLn, err = listen(s.o.GRPCPort); err != nil {
		return err
	}
	if s.healthLn, err = listen(s.o.HealthPort); err != nil {
		s.grpcLn.Close()
		return err
	}
	if s.o.Metrics != nil {
		if s.metricsLn, err = listen(s.o.MetricsPort); err != nil {
			s.grpcLn.Close()
			s.healthLn.Close()
			return err
		}
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", s.o.Metrics)
		for pattern, h := range s.o.Pages {
			mux.Handle(pattern, h)
		}
		if s.o.Pprof {
			mux.HandleFunc("GET /debug/pprof/", pprof.Index)
			mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
			mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
			mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
		}
		s.http = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	}
	s.grpc = NewGRPCServer(s.p, s.o.MaxBodyBytes, s.o.TLS)
	var healthTLS *tls.Config
	if s.o.HealthTLS {
		healthTLS = s.o.TLS
	}
	s.health, s.hs = NewHealthServer(healthTLS)
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.cancel = cancel
	s.errs, s.failed = make(chan error, 4), make(chan error, 1)
	s.start(func() error { WatchReadiness(runCtx, s.hs, s.o.Ready, s.o.ReadyInterval); return nil })
	s.start(func() error { return wrapServe("ext_proc", s.grpc.Serve(s.grpcLn)) })
	s.start(func() error { return wrapServe("health", s.health.Serve(s.healthLn)) })
	if s.http != nil {
		s.start(func() error {
			if err := s.http.Serve(s.metricsLn); !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("metrics: %w", err)
			}
			return nil
		})
	}
	grpcAddr, healthAddr, metricsAddr := s.Addrs()
	s.o.Logger.Info("serving ext_proc", "grpc", grpcAddr, "health", healthAddr, "metrics", metricsAddr, "tls", s.o.TLS != nil, "health_tls", s.o.TLS != nil && s.o.HealthTLS)
	return nil
}

func (s *Server) start(fn func() error) {
	s.running++
	go func() {
		err := fn()
		if err != nil {
			select {
			case s.failed <- err:
			default:
			}
		}
		s.errs <- err
	}()
}

// Addrs are the bound addresses of the ext_proc, health and metrics ports
// ("" for a port not served), after Start.
func (s *Server) Addrs() (grpcAddr, healthAddr, metricsAddr string) {
	grpcAddr, healthAddr = s.grpcLn.Addr().String(), s.healthLn.Addr().String()
	if s.metricsLn != nil {
		metricsAddr = s.metricsLn.Addr().String()
	}
	return grpcAddr, healthAddr, metricsAddr
}

// Failed delivers the error of a port that stopped serving on its own
// (Shutdown still returns it).
func (s *Server) Failed() <-chan error { return s.failed }

// Shutdown reports NOT_SERVING, lets the streams in flight finish until
// ctx ends (then cuts them), and stops every port. It returns the first
// serving error, if any.
func (s *Server) Shutdown(ctx context.Context) error {
	SetReady(s.hs, false)
	s.cancel()
	drained := make(chan struct{})
	go func() { s.grpc.GracefulStop(); close(drained) }()
	select {
	case <-drained:
	case <-ctx.Done():
		s.grpc.Stop()
	}
	s.health.Stop()
	if s.http != nil {
		_ = s.http.Close()
	}
	var first error
	for ; s.running > 0; s.running-- {
		if err := <-s.errs; err != nil && first == nil {
			first = err
		}
	}
	return first
}

func wrapServe(what string, err error) error {
	if err == nil || errors.Is(err, grpc.ErrServerStopped) {
		return nil
	}
	return fmt.Errorf("%s: %w", what, err)
}
