package main

import (
	"bytes"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
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
	// explicit names the port flags given on the command line: a taken
	// port there is an error, while a taken default port is replaced by a
	// free one (and the demo says so).
	explicit map[string]bool
}

func newDemoCommand() *cobra.Command {
	o := demoOptions{}
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run the gateway in front of simulated model servers and show a request routed",
		Long: `demo starts simulated vLLM replicas and the igw gateway in this process, from
an embedded configuration (the default scheduling profile: queue, KV-cache and
prefix-cache scorers), sends one chat completion through the gateway, prints
the curl command to send your own, and serves until interrupted.

Ports: the replicas on 8001 and up (--sim-port), the gateway's API on 8080
(--address) and its admin listener on 9090 (--admin-address). When a default
port is taken the demo picks a free one and says so; a port given with its
flag must be free.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.explicit = map[string]bool{}
			for _, name := range []string{"sim-port", "address", "admin-address"} {
				o.explicit[name] = cmd.Flags().Changed(name)
			}
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
// addresses and the replicas' ports.
func demoConfig(o demoOptions, ports []int) ([]byte, error) {
	t, err := template.New("demo").Parse(demoConfigTemplate)
	if err != nil {
		return nil, err
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
	if errors.Is(err, syscall.EADDRINUSE) && !o.explicit["sim-port"] {
		scfg.Port = 0 // free ports, one per replica
		if fleet, err = sim.StartFleet(scfg, log); err == nil {
			fmt.Fprintf(out, "Ports %d-%d are taken: the simulated replicas listen on free ports instead (choose with --sim-port).\n",
				o.simPort, o.simPort+o.replicas-1)
		}
	}
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return fmt.Errorf("demo: %w (choose other ports with --sim-port)", err)
		}
		return fmt.Errorf("demo: %w", err)
	}
	defer func() {
		c, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = fleet.Close(c)
	}()
	var ports []int
	for _, a := range fleet.Addrs() {
		_, p, _ := net.SplitHostPort(a)
		n, _ := strconv.Atoi(p)
		ports = append(ports, n)
	}
	o.address = freeOrDefault(out, o.address, "address", o.explicit["address"], "the gateway's API")
	o.admin = freeOrDefault(out, o.admin, "admin-address", o.explicit["admin-address"], "the gateway's admin listener")
	raw, err := demoConfig(o, ports)
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
		if errors.Is(err, syscall.EADDRINUSE) {
			return fmt.Errorf("demo: %w (choose other addresses with --address and --admin-address)", err)
		}
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

// freeOrDefault is addr if it can be bound; if it cannot because the port
// is taken and the flag was not given, the same host with a free port
// (":0"), saying so on out. Otherwise addr, for the gateway to report.
func freeOrDefault(out io.Writer, addr, flag string, explicit bool, what string) string {
	ln, err := net.Listen("tcp", addr)
	if err == nil {
		ln.Close()
		return addr
	}
	if explicit || !errors.Is(err, syscall.EADDRINUSE) {
		return addr
	}
	host, _, _ := net.SplitHostPort(addr)
	fmt.Fprintf(out, "%s is taken: %s listens on a free port instead (choose with --%s).\n", addr, what, flag)
	return net.JoinHostPort(host, "0")
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
