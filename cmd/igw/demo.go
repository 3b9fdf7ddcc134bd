package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/igw-dev/igw/pkg/sim"
)

const demoModel = "meta-llama/Llama-3.1-8B-Instruct"

func newDemoCommand() *cobra.Command {
	var replicas, port int
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Start simulated model servers and show a request answered",
		Long: `demo starts simulated vLLM replicas in this process, sends one chat
completion through them to show it works, prints the curl command to send
your own, and serves until interrupted.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDemo(cmd.Context(), cmd.OutOrStdout(), replicas, port)
		},
	}
	cmd.Flags().IntVar(&replicas, "replicas", 4, "simulated model-server replicas")
	cmd.Flags().IntVar(&port, "port", 8000, "port of the first replica")
	return cmd
}

func runDemo(ctx context.Context, out io.Writer, replicas, port int) error {
	cfg := sim.DefaultConfig()
	cfg.Model, cfg.Replicas, cfg.Port = demoModel, replicas, port
	fleet, err := sim.StartFleet(cfg, slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	defer func() {
		c, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = fleet.Close(c)
	}()
	target := "http://" + fleet.Addrs()[0] + "/v1/chat/completions"
	body := `{"model":"` + demoModel + `","messages":[{"role":"user","content":"What does an inference gateway do?"}],"max_tokens":24}`
	fmt.Fprintf(out, "Simulated %s replicas: %s\n\n", demoModel, strings.Join(fleet.Addrs(), " "))
	resp, err := http.Post(target, "application/json", strings.NewReader(body))
	if err != nil {
		return fmt.Errorf("demo request: %w", err)
	}
	answer, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Fprintf(out, "Try it:\n  curl -s %s -H 'Content-Type: application/json' \\\n    -d '%s'\n\n", target, body)
	fmt.Fprintf(out, "Answer (%s):\n  %s\n\nServing until Ctrl-C.\n", resp.Status, answer)
	<-ctx.Done()
	return nil
}
