package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/igw-dev/igw/pkg/config"
	"github.com/igw-dev/igw/pkg/gateway"
	"github.com/igw-dev/igw/pkg/gatewayapi"
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

// observeFlags are the observability switches igw serve and igw epp
// share: both are off by default.
type observeFlags struct {
	accessLog, explainDecisions bool
}

func (o *observeFlags) register(cmd *cobra.Command) {
	cmd.Flags().BoolVar(&o.accessLog, "access-log", false, "write one JSON access log record per request to stderr (request id, model, target model, objective, tenant, endpoint, status, TTFT, tokens, retries)")
	cmd.Flags().BoolVar(&o.explainDecisions, "explain-decisions", false, "answer requests sent with x-igw-debug-decision: 1 with their scheduling decision explained in x-igw-decision (shows endpoints and their scores: for debugging, not for untrusted clients)")
}

// accessLogger is the access log's logger: JSON records on stderr, or nil
// when the access log is off.
func (o *observeFlags) accessLogger() *slog.Logger {
	if !o.accessLog {
		return nil
	}
	return slog.New(slog.NewJSONHandler(os.Stderr, nil))
}

func runServe(ctx context.Context, log *slog.Logger, path string, drain time.Duration, obs observeFlags) error {
	schema := configSchema()
	cfg, err := schema.Load(path)
	if err != nil {
		return err
	}
	gw, err := gateway.New(cfg, gateway.Options{Logger: log, AccessLog: obs.accessLogger(), ExplainDecisions: obs.explainDecisions})
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
