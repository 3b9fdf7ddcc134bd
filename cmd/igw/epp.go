package main

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
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"
	"google.golang.org/grpc"

	"github.com/igw-dev/igw/pkg/config"
	"github.com/igw-dev/igw/pkg/datastore"
	"github.com/igw-dev/igw/pkg/extproc"
)

// extprocFlags are the serving flags igw epp and igw bbr share.
type extprocFlags struct {
	address        string
	grpcPort       int
	healthPort     int
	secure         bool
	certPath       string
	bodyMode       string
	maxBody        int
	logLevel       string
	drain          time.Duration
	onListening    func(grpcAddr, healthAddr, metricsAddr string) // tests
	readyInterval  time.Duration
	metricsPort    int
	metricsEnabled bool
	pprof          bool
}

func (f *extprocFlags) register(cmd *cobra.Command, grpcPort, healthPort int) {
	fl := cmd.Flags()
	fl.StringVar(&f.address, "address", "", "address to bind the ports to (empty: all interfaces)")
	fl.IntVar(&f.grpcPort, "grpc-port", grpcPort, "ext_proc gRPC port")
	fl.IntVar(&f.healthPort, "grpc-health-port", healthPort, "gRPC health port (services \"\", liveness, readiness, "+extproc.ServiceName+")")
	fl.BoolVar(&f.secure, "secure-serving", true, "serve ext_proc over TLS")
	fl.StringVar(&f.certPath, "cert-path", "", "directory with tls.crt and tls.key (empty: a self-signed certificate made at start)")
	fl.StringVar(&f.bodyMode, "default-body-mode", "FULL_DUPLEX_STREAMED", "body mode assumed when Envoy does not announce it in protocol_config (FULL_DUPLEX_STREAMED or BUFFERED)")
	fl.IntVar(&f.maxBody, "max-request-body-bytes", extproc.DefaultMaxBodyBytes, "largest request body accepted (413 beyond)")
	fl.StringVar(&f.logLevel, "log-level", "info", "debug, info, warn or error")
	fl.DurationVar(&f.drain, "drain-timeout", 30*time.Second, "how long shutdown waits for streams in flight")
	f.readyInterval = 250 * time.Millisecond
}

func (f *extprocFlags) mode() (extproc.BodyMode, error) {
	m, ok := extproc.ParseBodyMode(f.bodyMode)
	if !ok || (m != extproc.BodyModeFullDuplexStream && m != extproc.BodyModeBuffered) {
		return 0, fmt.Errorf("--default-body-mode: %q is not FULL_DUPLEX_STREAMED or BUFFERED", f.bodyMode)
	}
	return m, nil
}

func newEPPCommand() *cobra.Command {
	var f extprocFlags
	var configFile, poolName, poolNamespace string
	var maxAge time.Duration
	cmd := &cobra.Command{
		Use:   "epp",
		Short: "Run the Endpoint Picker for an Envoy-based gateway (ext_proc)",
		Long: `epp runs igw's Endpoint Picker: an Envoy external processor
(envoy.service.ext_proc.v3.ExternalProcessor) that reads each request's body,
schedules it over one InferencePool with the same Director as igw serve, and
answers with the x-gateway-destination-endpoint header and envoy.lb metadata
(primary endpoint, then fallbacks). Without Kubernetes the pool, its static
model servers, objectives, rewrites and EndpointPickerConfig come from the
standalone YAML of igw serve, reloaded on SIGHUP and when it changes.`,
		Example: `  igw epp --config-file examples/standalone.yaml --pool-name llama --secure-serving=false`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runEPP(cmd.Context(), &f, configFile, poolName, poolNamespace, maxAge)
		},
	}
	f.register(cmd, 9002, 9003)
	fl := cmd.Flags()
	fl.StringVar(&configFile, "config-file", "", "standalone configuration file, as for igw serve (required)")
	fl.StringVar(&poolName, "pool-name", "", "InferencePool to serve (may be left out when the file has one pool)")
	fl.StringVar(&poolNamespace, "pool-namespace", config.DefaultNamespace, "namespace of the InferencePool")
	fl.IntVar(&f.metricsPort, "metrics-port", 9090, "Prometheus /metrics port")
	fl.DurationVar(&maxAge, "metrics-staleness-threshold", datastore.DefaultMaxAge, "how old a model server's scraped metrics may be for it to be scheduled")
	fl.BoolVar(&f.pprof, "enable-pprof", false, "serve Go's /debug/pprof/ profiles on the metrics port (for performance work; do not expose it)")
	f.metricsEnabled = true
	_ = cmd.MarkFlagRequired("config-file")
	return cmd
}

func runEPP(ctx context.Context, f *extprocFlags, path, poolName, poolNamespace string, maxAge time.Duration) error {
	log, err := newLogger(f.logLevel)
	if err != nil {
		return err
	}
	mode, err := f.mode()
	if err != nil {
		return err
	}
	cfg, err := config.Load(path)
	if err != nil {
		return err
	}
	rt, err := extproc.NewPoolRuntime(cfg, extproc.PoolRuntimeOptions{PoolName: poolName, PoolNamespace: poolNamespace, Logger: log, MetricsMaxAge: maxAge})
	if err != nil {
		return err
	}
	picker, err := extproc.NewPicker(extproc.PickerOptions{
		Director: rt.Director(), Pool: rt.Pool(), Metrics: rt.Metrics(), Logger: log,
		MaxBodyBytes: f.maxBody, DefaultBodyMode: mode,
	})
	if err != nil {
		return err
	}
	metrics := promhttp.HandlerFor(rt.Metrics().Registry, promhttp.HandlerOpts{})
	watcher := &config.Watcher{
		Path: path, Initial: cfg, Logger: log,
		OnReload: func(c *config.Config) {
			if err := rt.Reload(c); err != nil {
				log.Error("configuration rejected; keeping the running one", "err", err)
			}
		},
	}
	log.Info("igw endpoint picker starting", "pool", rt.Pool(), "config", path)
	return serveExtProc(ctx, log, f, picker, rt.Ready, metrics, rt.Run, watcher.Run)
}

// serveExtProc binds the ext_proc, health and (optionally) metrics ports,
// runs the background loops, and serves until ctx ends; then it reports
// NOT_SERVING and drains the streams in flight.
func serveExtProc(ctx context.Context, log *slog.Logger, f *extprocFlags, p extprocv3.ExternalProcessorServer, ready func() bool,
	metrics http.Handler, loops ...func(context.Context) error) error {
	var tlsCfg *tls.Config
	if f.secure {
		var err error
		if tlsCfg, err = extproc.TLSConfig(f.certPath); err != nil {
			return err
		}
	}
	listen := func(port int) (net.Listener, error) {
		ln, err := net.Listen("tcp", net.JoinHostPort(f.address, strconv.Itoa(port)))
		if err != nil {
			return nil, fmt.Errorf("listen: %w", err)
		}
		return ln, nil
	}
	var lns []net.Listener
	closeAll := func() {
		for _, ln := range lns {
			_ = ln.Close()
		}
	}
	grpcLn, err := listen(f.grpcPort)
	if err != nil {
		return err
	}
	lns = append(lns, grpcLn)
	healthLn, err := listen(f.healthPort)
	if err != nil {
		closeAll()
		return err
	}
	lns = append(lns, healthLn)
	var metricsLn net.Listener
	if f.metricsEnabled {
		if metricsLn, err = listen(f.metricsPort); err != nil {
			closeAll()
			return err
		}
	}

	srv := extproc.NewGRPCServer(p, f.maxBody, tlsCfg)
	healthSrv, health := extproc.NewHealthServer()
	var metricsSrv *http.Server
	if metricsLn != nil {
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", metrics)
		if f.pprof {
			mux.HandleFunc("GET /debug/pprof/", pprof.Index)
			mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
			mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
			mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
		}
		metricsSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	}

	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	errs := make(chan error, 4+len(loops))
	running := 0
	start := func(fn func() error) {
		running++
		go func() { errs <- fn() }()
	}
	for _, loop := range loops {
		start(func() error { return loop(runCtx) })
	}
	start(func() error { extproc.WatchReadiness(runCtx, health, ready, f.readyInterval); return nil })
	start(func() error { return wrapServe("ext_proc", srv.Serve(grpcLn)) })
	start(func() error { return wrapServe("health", healthSrv.Serve(healthLn)) })
	metricsAddr := ""
	if metricsSrv != nil {
		metricsAddr = metricsLn.Addr().String()
		start(func() error {
			if err := metricsSrv.Serve(metricsLn); !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("metrics: %w", err)
			}
			return nil
		})
	}
	log.Info("serving ext_proc", "grpc", grpcLn.Addr().String(), "health", healthLn.Addr().String(), "metrics", metricsAddr, "tls", tlsCfg != nil)
	if f.onListening != nil {
		f.onListening(grpcLn.Addr().String(), healthLn.Addr().String(), metricsAddr)
	}

	var first error
	select {
	case <-ctx.Done():
	case first = <-errs: // a server or loop failed: stop everything
		running--
	}
	log.Info("shutting down", "drain-timeout", f.drain)
	extproc.SetReady(health, false)
	cancel() // readiness reports NOT_SERVING everywhere, scraping and reloads stop
	drained := make(chan struct{})
	go func() { srv.GracefulStop(); close(drained) }()
	select {
	case <-drained:
	case <-time.After(f.drain):
		srv.Stop()
	}
	healthSrv.Stop()
	if metricsSrv != nil {
		_ = metricsSrv.Close()
	}
	for ; running > 0; running-- {
		if err := <-errs; err != nil && first == nil {
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
