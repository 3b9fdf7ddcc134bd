// Command igw is the one binary of the igw inference gateway: the standalone
// gateway, the Envoy Endpoint Picker and Body-Based Router, the model-server
// simulator and the benchmark tool are subcommands of it, so a platform team
// deploys and versions a single artifact.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

// version is stamped at build time by the Makefile (-ldflags -X main.version).
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := newRootCommand().ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "igw:", err)
		os.Exit(1)
	}
}
