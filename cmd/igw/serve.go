package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/spf13/cobra"
	"go.opentelemetry.io/otel/trace"

	"github.com/igw-dev/igw/pkg/config"
	"github.com/igw-dev/igw/pkg/gateway"
	"github.com/igw-dev/igw/pkg/gatewayapi"
	"github.com/igw-dev/igw/pkg/peerload"
	"github.com/igw-dev/igw/pkg/telemetry"
)

func newServeCommand() *cobra.Command {
	var configFile, logLevel string
	var drain time.Duration
	var obs observeFlags
	var k kubeGatewayFlags
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the standalone inference gateway",
		Long: `serve runs igw's standalone gateway from one YAML file: OpenAI-compatible
listeners, routes by model, InferencePools of static model servers scheduled by
the embedded endpoint picker, objectives and model rewrites. The file is
reloaded on SIGHUP and when it changes; a bad edit keeps the running config.

With --kubernetes igw is a Kubernetes Gateway API implementation: it serves
the Gateways of the GatewayClasses whose controllerName is
` + gatewayapi.DefaultControllerName + ` (--gateway-controller-name), their
HTTPRoutes and AIGatewayRoutes, with backends that are InferencePools
(scheduled by the embedded picker over the pools' ready pods) or Services
(their EndpointSlices' ready endpoints); it writes the Gateway API statuses
and the pools' status.parents. --config, if given, then holds only igw's own
kinds (Gateway listener settings, EndpointPickerConfig, guards, quotas); the
pools and routes come from the cluster. RBAC: config/rbac/gateway.yaml.`,
		Example: `  igw serve --config examples/standalone.yaml
  igw serve --kubernetes --gateway-address 10.96.0.20`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := newLogger(logLevel)
			if err != nil {
				return err
			}
			if k.enabled {
				return runKubeServe(cmd.Context(), log, configFile, drain, obs, &k)
			}
			if configFile == "" {
				return errors.New("--config is required (or --kubernetes)")
			}
			return runServe(cmd.Context(), log, configFile, drain, obs)
		},
	}
	cmd.Flags().StringVar(&configFile, "config", "", "standalone configuration file (required without --kubernetes)")
	cmd.Flags().StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	cmd.Flags().DurationVar(&drain, "drain-timeout", 30*time.Second, "how long shutdown waits for requests in flight")
	obs.register(cmd)
	k.register(cmd)
	return cmd
}

func newLogger(level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l})), nil
}

// observeFlags are the switches igw serve and igw epp share: observability
// (off by default) and the in-flight sharing of active-active replicas.
type observeFlags struct {
	accessLog, explainDecisions, tracing bool
	// Active-active: the Redis server replicas share in-flight counts on.
	peerRedis, replicaID        string
	peerInterval, peerStaleness time.Duration
}

func (o *observeFlags) register(cmd *cobra.Command) {
	cmd.Flags().BoolVar(&o.accessLog, "access-log", false, "write one JSON access log record per request to stderr (request id, model, target model, objective, tenant, endpoint, status, TTFT, tokens, retries)")
	cmd.Flags().BoolVar(&o.tracing, "tracing", false, "trace requests with OpenTelemetry, exported over OTLP as the standard OTEL_* variables say (also on when OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set; sampler: OTEL_TRACES_SAMPLER)")
	cmd.Flags().StringVar(&o.peerRedis, "peer-load-redis", "", "host:port of a Redis server shared by igw replicas running active-active: each publishes its in-flight request counts there and adds the others' to its own (empty: off)")
	cmd.Flags().StringVar(&o.replicaID, "replica-id", "", "this replica's name among the replicas sharing --peer-load-redis (default: host name and process id; the pod name in Kubernetes)")
	cmd.Flags().DurationVar(&o.peerInterval, "peer-load-interval", peerload.DefaultInterval, "how often in-flight counts are shared")
	cmd.Flags().DurationVar(&o.peerStaleness, "peer-load-staleness", peerload.DefaultStaleness, "age past which another replica's count is ignored (a dead replica stops counting)")
	cmd.Flags().BoolVar(&o.explainDecisions, "explain-decisions", false, "answer requests sent with x-igw-debug-decision: 1 with their scheduling decision explained in x-igw-decision (shows endpoints and their scores: for debugging, not for untrusted clients)")
}

// peerLoad is the in-flight sharing configuration, nil when off.
func (o *observeFlags) peerLoad() *peerload.Options {
	if o.peerRedis == "" {
		return nil
	}
	return &peerload.Options{Addr: o.peerRedis, Replica: o.replicaID, Interval: o.peerInterval, Staleness: o.peerStaleness}
}

// accessLogger is the access log's logger: JSON records on stderr, or nil
// when the access log is off.
func (o *observeFlags) accessLogger() *slog.Logger {
	if !o.accessLog {
		return nil
	}
	return slog.New(slog.NewJSONHandler(os.Stderr, nil))
}

// startTracing builds OpenTelemetry tracing when it is on (--tracing or
// the OTEL_* variables): the tracer for the engine, and a stop function
// that sends the spans still batched. Off: a nil tracer and a no-op.
func (o *observeFlags) startTracing(ctx context.Context, log *slog.Logger, service string) (trace.Tracer, func(), error) {
	if !telemetry.TracingEnabled(o.tracing, os.Getenv) {
		return nil, func() {}, nil
	}
	t, err := telemetry.NewTracing(ctx, service, os.Getenv)
	if err != nil {
		return nil, nil, err
	}
	log.Info("tracing requests with OpenTelemetry", "service", service)
	return t.Tracer, func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := t.Shutdown(sctx); err != nil {
			log.Warn("tracing", "err", err)
		}
	}, nil
}

func runServe(ctx context.Context, log *slog.Logger, path string, drain time.Duration, obs observeFlags) error {
	schema := configSchema()
	cfg, err := schema.Load(path)
	if err != nil {
		return err
	}
	tracer, stopTracing, err := obs.startTracing(ctx, log, "igw")
	if err != nil {
		return err
	}
	defer stopTracing()
	gw, err := gateway.New(cfg, gateway.Options{Logger: log, AccessLog: obs.accessLogger(), ExplainDecisions: obs.explainDecisions,
		PeerLoad: obs.peerLoad(), Tracer: tracer})
	if err != nil {
		return err
	}
	if err := gw.Start(ctx); err != nil {
		return err
	}
	watcher := &config.Watcher{
		Path:    path,
		Schema:  schema,
		Initial: cfg,
		Logger:  log,
		OnReload: func(c *config.Config) {
			if err := gw.Reload(c); err != nil {
				log.Error("configuration rejected; keeping the running one", "err", err)
			}
		},
	}
	watchDone := make(chan error, 1)
	go func() { watchDone <- watcher.Run(ctx) }()
	<-ctx.Done()
	log.Info("shutting down", "drain-timeout", drain)
	shutdown, cancel := context.WithTimeout(context.Background(), drain)
	defer cancel()
	err = gw.Shutdown(shutdown)
	<-watchDone
	return err
}
