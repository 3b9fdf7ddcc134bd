package main

import (
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/igw-dev/igw/pkg/discovery/static"
	"github.com/igw-dev/igw/pkg/engine"
	"github.com/igw-dev/igw/pkg/gateway"
)

// TestREADMEConfigExampleIsValid keeps the README's configuration example
// honest: it is examples/quickstart.yaml byte for byte (the file the
// README's steps serve), and it loads and compiles into a gateway exactly
// as shown.
func TestREADMEConfigExampleIsValid(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, after, ok := strings.Cut(string(readme), "## Configuration")
	if !ok {
		t.Fatal("README has no Configuration section")
	}
	_, block, ok := strings.Cut(after, "```yaml\n")
	if !ok {
		t.Fatal("no yaml block in the Configuration section")
	}
	block, _, _ = strings.Cut(block, "```")
	file, err := os.ReadFile("../../examples/quickstart.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if string(file) != block {
		t.Fatal("the README's configuration example is not examples/quickstart.yaml: copy one onto the other")
	}
	cfg, err := configSchema().Parse("README.md", []byte(block))
	if err != nil {
		t.Fatal(err)
	}
	if pools, routes := static.Pools(cfg), engine.Routes(cfg); len(pools) != 2 || len(routes) != 2 {
		t.Fatalf("example has %d pools and %d routes, want 2 and 2", len(pools), len(routes))
	}
	if _, err := gateway.New(cfg, gateway.Options{}); err != nil {
		t.Fatal(err)
	}
}

// TestExamplesCompile loads every example configuration.
func TestExamplesCompile(t *testing.T) {
	for _, path := range []string{"../../examples/standalone.yaml", "../../examples/secured.yaml", "../../examples/quickstart.yaml"} {
		cfg, err := configSchema().Load(path)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := gateway.New(cfg, gateway.Options{}); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
	}
	raw, err := demoConfig(demoOptions{replicas: 4, address: "127.0.0.1:8080", admin: "127.0.0.1:9090"}, []int{8001, 8002, 8003, 8004})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := configSchema().Parse("demo.yaml", raw)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := gateway.New(cfg, gateway.Options{}); err != nil {
		t.Fatal(err)
	}
}

// TestREADME_RunningTheGatewayStepsRun runs the shell block of the
// README's "Running the gateway" section as written, read from the README
// (not a copy), in bash with -e: make build, the simulators and the gateway
// in the background, the readiness wait, the chat completion, kill. Every
// command must succeed, the completion must be 200, and no process may log
// an error. It needs the README's fixed ports free and skips,
// naming them, when something else holds one.
func TestREADME_RunningTheGatewayStepsRun(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the README's steps build igw and start five processes")
	}
	for _, tool := range []string{"bash", "curl", "make"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("the README's steps need %s, which is not installed", tool)
		}
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(readme), "## Running the gateway")
	if !ok {
		t.Fatal("README has no Running the gateway section")
	}
	_, steps, ok := strings.Cut(section, "```sh\n")
	if !ok {
		t.Fatal("no sh block in Running the gateway")
	}
	steps, _, _ = strings.Cut(steps, "```")
	for _, port := range []string{"8001", "8002", "8003", "8004", "9000", "8080", "9090"} {
		ln, err := net.Listen("tcp", ":"+port)
		if err != nil {
			t.Skipf("port %s, which the README's steps use, is taken: %v", port, err)
		}
		ln.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-euo", "pipefail", "-c", steps)
	cmd.Dir = "../.."
	// The steps run in their own process group, ended whatever happens:
	// a step that fails leaves the background processes running (the
	// README's kill is the last line), and they would hold the ports.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 10 * time.Second // the background processes hold the pipes until they exit
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Start()
	if err == nil {
		defer func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }()
		err = cmd.Wait()
	}
	t.Logf("steps:\n%s\nstdout:\n%s\nstderr:\n%s", steps, stdout.String(), stderr.String())
	if err != nil {
		t.Fatalf("the README's steps failed: %v", err)
	}
	if !strings.Contains(stdout.String(), "HTTP/1.1 200 OK") {
		t.Fatal("the chat completion of the README's steps did not answer 200")
	}
	// Warnings are allowed: on a busy machine the gateway may scrape a
	// simulator before it listens, and says so, as it would for a user.
	for _, bad := range []string{"level=ERROR", "panic:"} {
		if strings.Contains(stderr.String(), bad) {
			t.Fatalf("the README's steps logged %s", bad)
		}
	}
}
