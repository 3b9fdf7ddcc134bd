package main

import (
	"context"
	"errors"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/igw-dev/igw/pkg/datastore"
	"github.com/igw-dev/igw/pkg/extproc"
	"github.com/igw-dev/igw/pkg/kube"
)

func newBBRCommand() *cobra.Command {
	var f extprocFlags
	var configFile, namespace string
	var requireModel bool
	var k kubeFlags
	cmd := &cobra.Command{
		Use:   "bbr",
		Short: "Run the body-based router for an Envoy-based gateway (ext_proc)",
		Long: `bbr runs igw's body-based router: an Envoy external processor that reads
the model from each OpenAI request body and sets the X-Gateway-Model-Name
header (and X-Gateway-Base-Model-Name when the model is a LoRA adapter or a
listed base model) with clear_route_cache, so HTTPRoute header matches can
choose the InferencePool. The body passes unchanged.

The optional --config-file maps LoRA adapters to base models, with the data
keys of the bbr-managed ConfigMaps; it is re-read when it changes:

  - baseModel: meta-llama/Llama-3.1-8B-Instruct
    adapters: [food-review, sql-lora]

In Kubernetes, --namespace N reads the same mappings from the ConfigMaps
of namespace N labelled inference.networking.k8s.io/bbr-managed=true, one
base model each (data keys baseModel and adapters, the latter a YAML list),
and follows them live; kubeconfig from --kubeconfig, $KUBECONFIG or the pod's
service account; RBAC: config/rbac/bbr.yaml.

A body without a model is rejected with 400 unless --require-model=false,
which passes it through without the headers.`,
		Example: `  igw bbr --config-file adapters.yaml --secure-serving=false`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runBBR(cmd.Context(), &f, configFile, namespace, &k, requireModel)
		},
	}
	f.register(cmd, 9004, 9005)
	cmd.Flags().StringVar(&configFile, "config-file", "", "LoRA adapter → base model map (YAML list of {baseModel, adapters})")
	cmd.Flags().StringVar(&namespace, "namespace", "", "Kubernetes: read the adapter map from this namespace's bbr-managed ConfigMaps (instead of --config-file)")
	k.register(cmd)
	cmd.Flags().BoolVar(&requireModel, "require-model", true, "reject a request whose body names no model with 400 (false: pass it through)")
	return cmd
}

func runBBR(ctx context.Context, f *extprocFlags, path, namespace string, k *kubeFlags, requireModel bool) error {
	log, err := newLogger(f.logLevel)
	if err != nil {
		return err
	}
	mode, err := f.mode()
	if err != nil {
		return err
	}
	if path != "" && namespace != "" {
		return errors.New("--config-file and --namespace are two sources of the adapter map: choose one")
	}
	var adapters *datastore.AdapterMap
	if path != "" {
		if adapters, err = datastore.LoadAdapterMap(path); err != nil {
			return err
		}
	}
	router := extproc.NewBodyRouter(extproc.RouterOptions{
		Adapters: adapters, AllowMissingModel: !requireModel, Logger: log,
		MaxBodyBytes: f.maxBody, DefaultBodyMode: mode,
	})
	var loops []func(context.Context) error
	if path != "" {
		loops = append(loops, func(ctx context.Context) error {
			watchFile(ctx, path, time.Second, func() {
				m, err := datastore.LoadAdapterMap(path)
				if err != nil {
					log.Error("adapter map rejected; keeping the running one", "err", err)
					return
				}
				router.SetAdapters(m)
				log.Info("adapter map reloaded", "path", path)
			})
			return nil
		})
	}
	ready := func() bool { return true }
	if namespace != "" {
		restCfg, err := kube.RESTConfig(k.kubeconfig)
		if err != nil {
			return err
		}
		useLoggerForKubernetes(log)
		disc, err := kube.New(kube.Options{Config: restCfg, Namespace: namespace, Logger: log, Adapters: router.SetAdapters})
		if err != nil {
			return err
		}
		loops = append(loops, disc.Run)
		ready = disc.Synced // the map is complete once the ConfigMaps are listed
	}
	log.Info("igw body-based router starting", "adapters", path, "namespace", namespace, "require-model", requireModel)
	return serveExtProc(ctx, log, f, router, ready, nil, nil, loops...)
}

// watchFile calls changed whenever path's size or modification time
// changes (atomic renames of ConfigMap volumes included), until ctx ends.
func watchFile(ctx context.Context, path string, every time.Duration, changed func()) {
	stamp := func() (int64, time.Time) {
		fi, err := os.Stat(path)
		if err != nil {
			return -1, time.Time{}
		}
		return fi.Size(), fi.ModTime()
	}
	size, mod := stamp()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if s, m := stamp(); s != size || !m.Equal(mod) {
				size, mod = s, m
				changed()
			}
		}
	}
}
