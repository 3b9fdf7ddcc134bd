package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"
	"go.opentelemetry.io/otel/trace"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/klog/v2"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/igw-dev/igw/pkg/config"
	"github.com/igw-dev/igw/pkg/datastore"
	"github.com/igw-dev/igw/pkg/discovery/static"
	"github.com/igw-dev/igw/pkg/engine"
	"github.com/igw-dev/igw/pkg/extproc"
	"github.com/igw-dev/igw/pkg/kube"
	"github.com/igw-dev/igw/pkg/telemetry"
)

// extprocFlags are the serving flags igw epp and igw bbr share.
type extprocFlags struct {
	address        string
	grpcPort       int
	healthPort     int
	secure         bool
	secureHealth   bool
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
	fl.BoolVar(&f.secure, "secure-serving", true, "serve ext_proc over TLS (the health port stays plaintext unless --secure-health)")
	fl.BoolVar(&f.secureHealth, "secure-health", false, "serve the gRPC health port over TLS too, with the same certificate (Kubernetes' gRPC probes speak plaintext: probe with a TLS-capable client then)")
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

// eppFlags are igw epp's own flags, beside the serving flags.
type eppFlags struct {
	configFile, poolName, poolNamespace string
	maxAge                              time.Duration
	kube                                kubeFlags
	endpointSelector                    string
	endpointTargetPorts                 []int32
	leaderElection                      bool
	leaseName                           string
	leaseDuration, renewDeadline        time.Duration
	retryPeriod                         time.Duration
	observe                             observeFlags
}

// kubeFlags reach the Kubernetes API server (igw epp and igw bbr).
type kubeFlags struct {
	kubeconfig string
}

func (k *kubeFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&k.kubeconfig, "kubeconfig", "", "kubeconfig file for Kubernetes mode (empty: $KUBECONFIG, the in-cluster service account, then ~/.kube/config)")
}

func newEPPCommand() *cobra.Command {
	var f extprocFlags
	var e eppFlags
	cmd := &cobra.Command{
		Use:   "epp",
		Short: "Run the Endpoint Picker for an Envoy-based gateway (ext_proc)",
		Long: `epp runs igw's Endpoint Picker: an Envoy external processor
(envoy.service.ext_proc.v3.ExternalProcessor) that reads each request's body,
schedules it over one InferencePool with the same Director as igw serve, and
answers with the x-gateway-destination-endpoint header and envoy.lb metadata
(primary endpoint, then fallbacks).

Standalone: when --config-file is a standalone configuration of igw serve
(it declares InferencePools), the pool, its static model servers, objectives,
rewrites and EndpointPickerConfig come from it, reloaded on SIGHUP and when it
changes.

Kubernetes: otherwise --pool-name and --pool-namespace name an InferencePool
in the cluster (kubeconfig from --kubeconfig, $KUBECONFIG or the pod's service
account). The pool's selector picks Ready pods in its namespace, one endpoint
per pod IP and targetPort, engine from the pod label
inference.networking.k8s.io/engine-type; InferenceObjectives and
InferenceModelRewrites naming the pool are followed live. --config-file, if
given, then holds only an EndpointPickerConfig (as for the upstream picker;
reloaded when it changes); without it the default profile applies.
--endpoint-selector with --endpoint-target-ports selects the pods without an
InferencePool object or CRD. With --ha-enable-leader-election replicas elect a
leader through a Lease; every replica keeps its datastore in sync, only the
leader reports ready on the gRPC health port. RBAC: config/rbac/epp.yaml.`,
		Example: `  igw epp --config-file examples/standalone.yaml --pool-name llama --secure-serving=false
  igw epp --pool-name vllm-llama3-8b-instruct --pool-namespace default --config-file /config/plugins.yaml
  igw epp --pool-name llama --endpoint-selector app=vllm-llama --endpoint-target-ports 8000`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runEPP(cmd.Context(), &f, &e)
		},
	}
	f.register(cmd, 9002, 9003)
	e.kube.register(cmd)
	e.observe.register(cmd)
	fl := cmd.Flags()
	fl.StringVar(&e.configFile, "config-file", "", "standalone configuration file, as for igw serve; in Kubernetes mode a file holding only an EndpointPickerConfig")
	fl.StringVar(&e.poolName, "pool-name", "", "InferencePool to serve (standalone: may be left out when the file has one pool); Kubernetes: several, comma-separated, each with its own state, the ext_proc stream naming its pool in gRPC metadata "+extproc.PoolMetadataKey)
	fl.StringVar(&e.poolNamespace, "pool-namespace", config.DefaultNamespace, "namespace of the InferencePool (Kubernetes: the only namespace watched)")
	fl.IntVar(&f.metricsPort, "metrics-port", 9090, "Prometheus /metrics port")
	fl.DurationVar(&e.maxAge, "metrics-staleness-threshold", datastore.DefaultMaxAge, "how old a model server's scraped metrics may be for it to be scheduled")
	fl.BoolVar(&f.pprof, "enable-pprof", false, "serve Go's /debug/pprof/ profiles on the metrics port (for performance work; do not expose it)")
	fl.StringVar(&e.endpointSelector, "endpoint-selector", "", "Kubernetes: pod labels (k=v,k2=v2) selecting the model servers instead of an InferencePool (needs --endpoint-target-ports; no CRD needed)")
	fl.Int32SliceVar(&e.endpointTargetPorts, "endpoint-target-ports", nil, "Kubernetes: model-server ports of the pods --endpoint-selector picks (one endpoint per pod and port)")
	fl.BoolVar(&e.leaderElection, "ha-enable-leader-election", false, "Kubernetes: elect a leader among replicas through a Lease; only the leader reports ready")
	fl.StringVar(&e.leaseName, "ha-lease-name", "", "Kubernetes: the leader election Lease (empty: igw-epp-<pool-name>)")
	fl.DurationVar(&e.leaseDuration, "ha-lease-duration", 15*time.Second, "Kubernetes: how long followers wait before taking over a Lease its holder stopped renewing")
	fl.DurationVar(&e.renewDeadline, "ha-renew-deadline", 10*time.Second, "Kubernetes: how long the leader retries renewing before it gives up leading (and exits)")
	fl.DurationVar(&e.retryPeriod, "ha-retry-period", 2*time.Second, "Kubernetes: how often candidates try to acquire or renew the Lease")
	f.metricsEnabled = true
	return cmd
}

func runEPP(ctx context.Context, f *extprocFlags, e *eppFlags) error {
	log, err := newLogger(f.logLevel)
	if err != nil {
		return err
	}
	mode, err := f.mode()
	if err != nil {
		return err
	}
	var cfg *config.Config
	if e.configFile != "" {
		if cfg, err = configSchema().Load(e.configFile); err != nil {
			return err
		}
	}
	standalone := cfg != nil && len(static.Pools(cfg)) > 0
	if !standalone {
		if err := e.checkKubernetes(cfg); err != nil {
			return err
		}
		if cfg == nil {
			cfg = &config.Config{Source: "(default EndpointPickerConfig)"}
		}
	}
	tracer, stopTracing, err := e.observe.startTracing(ctx, log, "igw-epp")
	if err != nil {
		return err
	}
	defer stopTracing()
	if names := poolNames(e.poolName); len(names) > 1 {
		if standalone || e.endpointSelector != "" {
			return errors.New("--pool-name with several pools: Kubernetes mode only, without --endpoint-selector")
		}
		return runMultiPoolEPP(ctx, log, f, e, cfg, mode, names, tracer)
	}
	rt, err := engine.New(cfg, engine.Options{Pool: true, PoolName: e.poolName, PoolNamespace: e.poolNamespace,
		Logger: log, MetricsMaxAge: e.maxAge, ExternalDiscovery: !standalone,
		AccessLog: e.observe.accessLogger(), ExplainDecisions: e.observe.explainDecisions, PeerLoad: e.observe.peerLoad(), Tracer: tracer})
	if err != nil {
		return err
	}
	defer rt.Close()
	picker, err := extproc.NewPicker(extproc.PickerOptions{
		Director: rt.Director(), Pool: rt.Pool(), Logger: log,
		MaxBodyBytes: f.maxBody, DefaultBodyMode: mode,
	})
	if err != nil {
		return err
	}
	metrics := promhttp.HandlerFor(rt.Metrics().Registry, promhttp.HandlerOpts{})
	loops := []func(context.Context) error{rt.Run}
	if e.configFile != "" {
		watcher := &config.Watcher{
			Path: e.configFile, Schema: configSchema(), Initial: cfg, Logger: log,
			OnReload: func(c *config.Config) {
				if standalone != (len(static.Pools(c)) > 0) {
					log.Error("configuration rejected: declaring InferencePools or not switches between standalone and Kubernetes mode, which takes a restart")
					return
				}
				if err := rt.Reload(c); err != nil {
					log.Error("configuration rejected; keeping the running one", "err", err)
				}
			},
		}
		loops = append(loops, watcher.Run)
	}
	ready := rt.Ready
	if standalone {
		log.Info("igw endpoint picker starting", "pool", rt.Pool(), "config", e.configFile)
	} else {
		disc, err := e.discovery(log, rt, e.poolName, "")
		if err != nil {
			return err
		}
		loops = append(loops, disc.Run)
		ready = func() bool { return disc.Synced() && disc.Leader() && rt.Ready() }
		log.Info("igw endpoint picker starting in Kubernetes mode", "pool", rt.Pool(), "endpoint-selector", e.endpointSelector,
			"leader-election", e.leaderElection, "config", e.configFile)
	}
	dash := rt.Metrics().DashboardHandler(rt.Store())
	pages := map[string]http.Handler{"GET " + telemetry.DashboardPath: dash, "GET " + telemetry.DashboardJSONPath: dash}
	return serveExtProc(ctx, log, f, picker, ready, metrics, pages, loops...)
}

// checkKubernetes validates the flags of Kubernetes mode; cfg is the
// --config-file's content, which may hold only an EndpointPickerConfig.
func (e *eppFlags) checkKubernetes(cfg *config.Config) error {
	if cfg != nil && (len(static.ModelServers(cfg)) > 0 || len(engine.Routes(cfg)) > 0 || len(static.Objectives(cfg)) > 0 || len(static.Rewrites(cfg)) > 0) {
		return fmt.Errorf("%s: declares no InferencePool, so igw epp runs in Kubernetes mode, where the file may hold only an EndpointPickerConfig (ModelServers, Routes, objectives and rewrites come from the cluster or need a pool in the file)", cfg.Source)
	}
	if e.poolName == "" {
		return errors.New("--pool-name is required in Kubernetes mode (without a standalone --config-file)")
	}
	if (e.endpointSelector == "") != (len(e.endpointTargetPorts) == 0) {
		return errors.New("--endpoint-selector and --endpoint-target-ports go together")
	}
	for _, p := range e.endpointTargetPorts {
		if p < 1 || p > 65535 {
			return fmt.Errorf("--endpoint-target-ports: %d is not a port number", p)
		}
	}
	return nil
}

// useLoggerForKubernetes routes the logs of controller-runtime and of
// client-go (klog: leader election, reflectors) to log, so a process writes
// one log format. Both libraries keep a process-wide logger, which only the
// command may set.
func useLoggerForKubernetes(log *slog.Logger) {
	l := logr.FromSlogHandler(log.Handler())
	ctrllog.SetLogger(l)
	klog.SetLogger(l)
}

// discovery builds the Kubernetes reconcilers that feed rt's datastore
// with pool's state; leaseSuffix keeps the Leases of several pools of one
// process apart.
func (e *eppFlags) discovery(log *slog.Logger, rt *engine.Engine, pool, leaseSuffix string) (*kube.Discovery, error) {
	var selector map[string]string
	if e.endpointSelector != "" {
		set, err := labels.ConvertSelectorToLabelsMap(e.endpointSelector)
		if err != nil {
			return nil, fmt.Errorf("--endpoint-selector: %w", err)
		}
		selector = set
	}
	restCfg, err := kube.RESTConfig(e.kube.kubeconfig)
	if err != nil {
		return nil, err
	}
	useLoggerForKubernetes(log)
	o := kube.Options{
		Config: restCfg, Namespace: e.poolNamespace, Logger: log,
		Pool: &kube.PoolSource{Name: pool, Selector: selector, TargetPorts: e.endpointTargetPorts, Store: rt.Store()},
	}
	if e.leaderElection {
		name := e.leaseName
		if name == "" {
			name = "igw-epp-" + pool
		} else {
			name += leaseSuffix
		}
		o.LeaderElection = &kube.LeaderElection{LeaseName: name, LeaseDuration: e.leaseDuration, RenewDeadline: e.renewDeadline, RetryPeriod: e.retryPeriod}
	}
	return kube.New(o)
}

// serveExtProc serves p on the ext_proc, health and (optionally) metrics
// ports, runs the background loops, and serves until ctx ends or a port or
// loop fails; then it reports NOT_SERVING and drains the streams in flight.
func serveExtProc(ctx context.Context, log *slog.Logger, f *extprocFlags, p extprocv3.ExternalProcessorServer, ready func() bool,
	metrics http.Handler, pages map[string]http.Handler, loops ...func(context.Context) error) error {
	var tlsCfg *tls.Config
	if f.secureHealth && !f.secure {
		return errors.New("--secure-health needs --secure-serving")
	}
	if f.secure {
		var err error
		if tlsCfg, err = extproc.TLSConfig(f.certPath); err != nil {
			return err
		}
	}
	o := extproc.ServerOptions{Logger: log, Address: f.address, GRPCPort: f.grpcPort, HealthPort: f.healthPort,
		TLS: tlsCfg, HealthTLS: f.secureHealth, MaxBodyBytes: f.maxBody, Pprof: f.pprof, Ready: ready, ReadyInterval: f.readyInterval}
	if f.metricsEnabled {
		o.Metrics, o.MetricsPort, o.Pages = metrics, f.metricsPort, pages
	}
	srv := extproc.NewServer(p, o)
	if err := srv.Start(ctx); err != nil {
		return err
	}
	if f.onListening != nil {
		f.onListening(srv.Addrs())
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	errs := make(chan error, len(loops))
	for _, loop := range loops {
		go func() { errs <- loop(runCtx) }()
	}
	running := len(loops)
	var first error
	select {
	case <-ctx.Done():
	case first = <-srv.Failed(): // a port failed: stop everything
	case first = <-errs:
		running--
	}
	log.Info("shutting down", "drain-timeout", f.drain)
	cancel() // scraping and reloads stop
	drain, cancelDrain := context.WithTimeout(context.Background(), f.drain)
	defer cancelDrain()
	if err := srv.Shutdown(drain); err != nil && first == nil {
		first = err
	}
	for ; running > 0; running-- {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return first
}

// poolNames splits --pool-name's comma-separated list.
func poolNames(flag string) []string {
	var out []string
	for _, n := range strings.Split(flag, ",") {
		if n = strings.TrimSpace(n); n != "" {
			out = append(out, n)
		}
	}
	return out
}

// runMultiPoolEPP serves several InferencePools of one namespace from one
// process: one engine (datastore, scheduler, flow control, metrics), one
// set of reconcilers and one picker per pool, so the pools' state stays
// apart; one ext_proc port routes each stream to its pool by the gRPC
// metadata extproc.PoolMetadataKey. Readiness needs every pool ready.
func runMultiPoolEPP(ctx context.Context, log *slog.Logger, f *extprocFlags, e *eppFlags, cfg *config.Config, mode extproc.BodyMode, names []string, tracer trace.Tracer) error {
	pickers := map[string]*extproc.Picker{}
	var engines []*engine.Engine
	var discs []*kube.Discovery
	var gatherers prometheus.Gatherers
	loops := []func(context.Context) error{}
	defer func() {
		for _, rt := range engines {
			rt.Close()
		}
	}()
	for _, name := range names {
		rt, err := engine.New(cfg, engine.Options{Pool: true, PoolName: name, PoolNamespace: e.poolNamespace,
			Logger: log.With("pool", name), MetricsMaxAge: e.maxAge, ExternalDiscovery: true,
			AccessLog: e.observe.accessLogger(), ExplainDecisions: e.observe.explainDecisions, PeerLoad: e.observe.peerLoad(), Tracer: tracer})
		if err != nil {
			return err
		}
		engines = append(engines, rt)
		picker, err := extproc.NewPicker(extproc.PickerOptions{Director: rt.Director(), Pool: rt.Pool(), Logger: log,
			MaxBodyBytes: f.maxBody, DefaultBodyMode: mode})
		if err != nil {
			return err
		}
		if _, dup := pickers[rt.Pool()]; dup {
			return fmt.Errorf("--pool-name: %s twice", name)
		}
		pickers[rt.Pool()] = picker
		disc, err := e.discovery(log.With("pool", name), rt, name, "-"+name)
		if err != nil {
			return err
		}
		discs = append(discs, disc)
		gatherers = append(gatherers, rt.Metrics().Registry)
		loops = append(loops, rt.Run, disc.Run)
	}
	router, err := extproc.NewPoolRouter(pickers)
	if err != nil {
		return err
	}
	if e.configFile != "" {
		watcher := &config.Watcher{
			Path: e.configFile, Schema: configSchema(), Initial: cfg, Logger: log,
			OnReload: func(c *config.Config) {
				if err := e.checkKubernetes(c); err != nil {
					log.Error("configuration rejected; keeping the running one", "err", err)
					return
				}
				for _, rt := range engines {
					if err := rt.Reload(c); err != nil {
						log.Error("configuration rejected; keeping the running one", "pool", rt.Pool(), "err", err)
					}
				}
			},
		}
		loops = append(loops, watcher.Run)
	}
	ready := func() bool {
		for i, d := range discs {
			if !d.Synced() || !d.Leader() || !engines[i].Ready() {
				return false
			}
		}
		return true
	}
	// Each engine has its own registry (its pool's series); process-wide
	// series (Go, process) are in all of them and served once.
	metrics := promhttp.HandlerFor(gatherers, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
	log.Info("igw endpoint picker starting in Kubernetes mode", "pools", names, "namespace", e.poolNamespace, "leader-election", e.leaderElection)
	// No live dashboard here yet: it shows one engine's pool (the
	// single-pool picker and igw serve serve it).
	return serveExtProc(ctx, log, f, router, ready, metrics, nil, loops...)
}
