package main

import (
	"fmt"
	"runtime"

	"github.com/spf13/cobra"
)

func newRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "igw",
		Short: "igw routes OpenAI-compatible requests to the model-server replica that will serve them fastest",
		Long: `igw is an inference gateway for self-hosted LLMs (vLLM, SGLang, TensorRT-LLM).
It routes each request by queue depth, KV-cache utilization, prefix-cache and
LoRA affinity, admits requests by priority when GPUs are saturated, and shields
the model servers. It runs standalone or as the Endpoint Picker of an
Envoy-based Kubernetes gateway.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newVersionCommand(), newServeCommand(), newDemoCommand(), newSimCommand(), newEPPCommand(), newBBRCommand(), newBenchCommand())
	return root
}

func newVersionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the igw version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprintf(cmd.OutOrStdout(), "igw %s %s/%s %s\n", version, runtime.GOOS, runtime.GOARCH, runtime.Version())
			return err
		},
	}
}
