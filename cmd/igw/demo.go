package main

import (
	"bytes"
	"context"
	_ "embed"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"text/template"
	"time"

	"github.com/spf13/cobra"

	"github.com/igw-dev/igw/pkg/gateway"
	"github.com/igw-dev/igw/pkg/sim"
)

//go:embed demo.yaml
var demoConfigTemplate string

const demoModel = "meta-llama/Llama-3.1-8B-Instruct"

type demoOptions struct {
	replicas  int
	simPort   int
	address   string
	admin     string
	timeScale float64
}

func newDemoCommand() *cobra.Command {
	o := demoOptions{}
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run the gateway in front of simulated model servers and show a request routed",
		Long: `demo starts simulated vLLM replicas and the igw gateway in this process, from
an embedded configuration (the default scheduling profile: queue, KV-cache and
prefix-cache scorers), sends one chat completion through the gateway, prints
the curl command to send your own, and serves until interrupted.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDemo(cmd.Context(), cmd.OutOrStdout(), o)
		},
	}
	f := cmd.Flags()
	f.IntVar(&o.replicas, "replicas", 4, "simulated model-server replicas (1..8)")
	f.IntVar(&o.simPort, "sim-port", 8001, "port of the first simulated replica")
	f.StringVar(&o.address, "address", "127.0.0.1:8080", "gateway API address")
	f.StringVar(&o.admin, "admin-address", "127.0.0.1:9090", "gateway /metrics, /healthz, /readyz address")
	f.Float64Var(&o.timeScale, "time-scale", 1, "simulator speed-up")
	return cmd
}

// demoConfig renders the embedded standalone configuration for the demo's
// ports.
func demoConfig(o demoOptions) ([]byte, error) {
	t, err := template.New("demo").Parse(demoConfigTemplate)
	if err != nil {
		return nil, err
	}
	ports := make([]int, o.replicas)
	for i := range ports {
		ports[i] = o.simPort + i
	}
	var buf bytes.Buffer
	err = t.Execute(&buf, map[string]any{"Address": o.address, "Admin": o.admin, "Model": demoModel, "Ports": ports})
	return buf.Bytes(), err
}

func runDemo(ctx context.Context, out io.Writer, o demoOptions) error {
	if o.replicas < 1 || o.replicas > 8 {
		return fmt.Errorf("--replicas must be 1..8 (an InferencePool has at most 8 target ports)")
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	scfg := sim.DefaultConfig()
	scfg.Model, scfg.Replicas, scfg.Port, scfg.TimeScale = demoModel, o.replicas, o.simPort, o.timeScale
	fleet, err := sim.StartFleet(scfg, log)
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	defer func() {
		c, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = fleet.Close(c)
	}()
	raw, err := demoConfig(o)
	if err != nil {
		return err
	}
	cfg, err := configSchema().Parse("demo.yaml (embedded)", raw)
	if err != nil {
		return err
	}
	gw, err := gateway.New(cfg, gateway.Options{Logger: log})
	if err != nil {
		return err
	}
	if err := gw.Start(ctx); err != nil {
		return err
	}
	defer func() {
		c, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = gw.Shutdown(c)
	}()
	if err := waitReady("http://"+gw.AdminAddr()+"/readyz", 10*time.Second); err != nil {
		return err
	}

	target := "http://" + gw.Addr() + "/v1/chat/completions"
	body := `{"model":"` + demoModel + `","messages":[{"role":"user","content":"What does an inference gateway do?"}],"max_tokens":24}`
	fmt.Fprintf(out, "igw gateway on http://%s in front of %d simulated %s replicas (%s)\n\n",
		gw.Addr(), o.replicas, demoModel, strings.Join(fleet.Addrs(), ", "))
	resp, err := http.Post(target, "application/json", strings.NewReader(body))
	if err != nil {
		return fmt.Errorf("demo request: %w", err)
	}
	answer, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Fprintf(out, "Try it:\n  curl -si %s -H 'Content-Type: application/json' \\\n    -d '%s'\n\n", target, body)
	fmt.Fprintf(out, "The picker chose %s (header %s).\nAnswer (%s):\n  %s\n\n",
		resp.Header.Get(gateway.HeaderDestinationServed), gateway.HeaderDestinationServed, resp.Status, answer)
	fmt.Fprintf(out, "Metrics: http://%s/metrics   Serving until Ctrl-C.\n", gw.AdminAddr())
	<-ctx.Done()
	return nil
}

// waitReady polls a readiness URL until it answers 200.
func waitReady(url string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("gateway not ready after %v", timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
