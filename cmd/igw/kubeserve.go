package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/igw-dev/igw/pkg/config"
	"github.com/igw-dev/igw/pkg/discovery/static"
	"github.com/igw-dev/igw/pkg/engine"
	"github.com/igw-dev/igw/pkg/gateway"
	"github.com/igw-dev/igw/pkg/gatewayapi"
	"github.com/igw-dev/igw/pkg/kube"
)

// kubeGatewayFlags are igw serve's Kubernetes Gateway API flags.
type kubeGatewayFlags struct {
	enabled        bool
	kube           kubeFlags
	controllerName string
	addresses      []string
	modelHeaders   []string
	address        string
	adminAddress   string
	leaderElection bool
	leaseName      string
	leaseNamespace string
}

func (k *kubeGatewayFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.BoolVar(&k.enabled, "kubernetes", false, "implement Gateway API in the cluster: serve the Gateways, HTTPRoutes and AIGatewayRoutes of igw's GatewayClasses")
	k.kube.register(cmd)
	fl.StringVar(&k.controllerName, "gateway-controller-name", gatewayapi.DefaultControllerName, "Kubernetes: the GatewayClass spec.controllerName igw implements")
	fl.StringSliceVar(&k.addresses, "gateway-address", nil, "Kubernetes: IPs or host names clients reach this data plane at (its Service's), written to every igw Gateway's status.addresses")
	fl.StringSliceVar(&k.modelHeaders, "model-header", []string{gatewayapi.DefaultModelHeader}, "Kubernetes: header names whose HTTPRoute Exact matches select the request body's model (the body-based router's header; e.g. x-gateway-inference-model)")
	fl.StringVar(&k.address, "address", gateway.DefaultAddress, "Kubernetes without --config: the address the data plane listens on")
	fl.StringVar(&k.adminAddress, "admin-address", gateway.DefaultAdminAddress, "Kubernetes without --config: the address of /metrics, /healthz and /readyz")
	fl.BoolVar(&k.leaderElection, "ha-enable-leader-election", false, "Kubernetes: replicas elect a leader through a Lease; only it writes statuses, every replica serves traffic")
	fl.StringVar(&k.leaseName, "ha-lease-name", "igw-gateway", "Kubernetes: the leader election Lease")
	fl.StringVar(&k.leaseNamespace, "ha-lease-namespace", "", "Kubernetes: the Lease's namespace (empty: the pod's, from POD_NAMESPACE)")
}

// kubeConfigs composes the configuration the data plane runs in
// Kubernetes mode: the --config file (or a Gateway with the listen
// addresses) followed by the documents generated from the cluster. Either
// part may change; each change parses the two together.
type kubeConfigs struct {
	schema *config.Schema
	name   string

	mu        sync.Mutex
	base      []byte
	generated []byte
}

// parse builds the configuration of base and generated.
func (c *kubeConfigs) parse(base, generated []byte) (*config.Config, error) {
	data := make([]byte, 0, len(base)+len(generated)+8)
	data = append(data, base...)
	data = append(data, "\n---\n"...)
	data = append(data, generated...)
	cfg, err := c.schema.Parse(c.name, data)
	if err != nil {
		return nil, fmt.Errorf("configuration generated from the cluster: %w", err)
	}
	return cfg, nil
}

// checkBase rejects a --config file that declares what the cluster owns.
func checkKubeBase(cfg *config.Config) error {
	if len(static.Pools(cfg)) > 0 || len(static.ModelServers(cfg)) > 0 || len(engine.Routes(cfg)) > 0 ||
		len(static.Objectives(cfg)) > 0 || len(static.Rewrites(cfg)) > 0 {
		return fmt.Errorf("%s: with --kubernetes the pools, model servers, routes, objectives and rewrites come from the cluster; the file may hold only igw's own settings (Gateway, EndpointPickerConfig, guards, auth, quotas)", cfg.Source)
	}
	return nil
}

func runKubeServe(ctx context.Context, log *slog.Logger, path string, drain time.Duration, obs observeFlags, k *kubeGatewayFlags) error {
	configs := &kubeConfigs{schema: configSchema(), name: "(kubernetes)"}
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("--config: %w", err)
		}
		configs.base, configs.name = data, path
	} else {
		configs.base = fmt.Appendf(nil, "apiVersion: %s\nkind: %s\nmetadata: {name: igw}\nspec: {address: %q, adminAddress: %q}\n",
			config.IGWAPIVersion, gateway.KindGateway, k.address, k.adminAddress)
	}
	cfg, err := configs.parse(configs.base, nil)
	if err != nil {
		return err
	}
	if err := checkKubeBase(cfg); err != nil {
		return err
	}
	// ctl is set before the gateway starts serving, so /readyz sees it.
	var ctl *gatewayapi.Controller
	gw, err := gateway.New(cfg, gateway.Options{Logger: log, AccessLog: obs.accessLogger(), ExplainDecisions: obs.explainDecisions,
		Ready: func() bool { return ctl != nil && ctl.Ready() }})
	if err != nil {
		return err
	}
	restCfg, err := kube.RESTConfig(k.kube.kubeconfig)
	if err != nil {
		return err
	}
	useLoggerForKubernetes(log)
	var le *kube.LeaderElection
	leaseNS := k.leaseNamespace
	if k.leaderElection {
		le = &kube.LeaderElection{LeaseName: k.leaseName}
		if leaseNS == "" {
			leaseNS = os.Getenv("POD_NAMESPACE")
		}
		if leaseNS == "" {
			return errors.New("--ha-enable-leader-election needs --ha-lease-namespace (or POD_NAMESPACE)")
		}
	}
	ctl, err = gatewayapi.New(gatewayapi.Options{
		Config: restCfg, Logger: log, ControllerName: k.controllerName, ModelHeaders: k.modelHeaders, Addresses: k.addresses,
		LeaderElection: le, LeaseNamespace: leaseNS,
		Check: func(generated []byte) error {
			configs.mu.Lock()
			base := configs.base
			configs.mu.Unlock()
			_, err := configs.parse(base, generated)
			return err
		},
		Apply: func(generated []byte) error {
			configs.mu.Lock()
			defer configs.mu.Unlock()
			c, err := configs.parse(configs.base, generated)
			if err != nil {
				return err
			}
			if err := gw.Reload(c); err != nil {
				return err
			}
			configs.generated = generated
			return nil
		},
	})
	if err != nil {
		return err
	}
	if err := gw.Start(ctx); err != nil {
		return err
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 2)
	go func() { done <- ctl.Run(runCtx) }()
	running := 1
	if path != "" {
		watcher := &config.Watcher{
			Path: path, Schema: configSchema(), Initial: cfg, Logger: log,
			OnReload: func(c *config.Config) {
				if err := checkKubeBase(c); err != nil {
					log.Error("configuration rejected; keeping the running one", "err", err)
					return
				}
				data, err := os.ReadFile(path)
				if err != nil {
					log.Error("configuration rejected; keeping the running one", "err", err)
					return
				}
				configs.mu.Lock()
				defer configs.mu.Unlock()
				merged, err := configs.parse(data, configs.generated)
				if err == nil {
					err = gw.Reload(merged)
				}
				if err != nil {
					log.Error("configuration rejected; keeping the running one", "err", err)
					return
				}
				configs.base = data
			},
		}
		running++
		go func() { done <- watcher.Run(runCtx) }()
	}
	log.Info("igw gateway starting in Kubernetes mode", "controller-name", k.controllerName, "gateway-address", k.addresses, "model-headers", k.modelHeaders)
	var first error
	select {
	case <-ctx.Done():
	case first = <-done:
		running--
		if first == nil {
			first = errors.New("the Gateway API controller stopped")
		}
	}
	log.Info("shutting down", "drain-timeout", drain)
	cancel()
	shutdown, cancelShutdown := context.WithTimeout(context.Background(), drain)
	defer cancelShutdown()
	if err := gw.Shutdown(shutdown); err != nil && first == nil {
		first = err
	}
	for ; running > 0; running-- {
		if err := <-done; err != nil && first == nil && !errors.Is(err, context.Canceled) {
			first = err
		}
	}
	return first
}
