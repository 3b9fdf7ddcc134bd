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
	"runtime/debug"
	"syscall"
)

// version is stamped at build time by the Makefile (-ldflags -X main.version).
var version = "dev"

// gcPercent is the garbage collector's target when GOGC is not set. igw's
// live heap is small (endpoint state, the prefix index, requests in
// flight) while every request allocates its body and protocol messages, so
// at Go's default of 100 the collector runs many times a second; at 400 it
// runs a quarter as often, for about 20% less CPU per picker decision
// (docs/performance.md), and the heap stays a few times a small number.
// GOGC and GOMEMLIMIT in the environment still decide when set.
const gcPercent = 400

func main() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := newRootCommand().ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "igw:", err)
		os.Exit(1)
	}
}
