package main

import (
	"os"
	"strings"
	"testing"

	"github.com/igw-dev/igw/pkg/discovery/static"
	"github.com/igw-dev/igw/pkg/engine"
	"github.com/igw-dev/igw/pkg/gateway"
)

// TestREADMEConfigExampleIsValid keeps the README's configuration example
// honest: it must load and compile into a gateway exactly as shown.
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
	for _, path := range []string{"../../examples/standalone.yaml", "../../examples/secured.yaml"} {
		cfg, err := configSchema().Load(path)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := gateway.New(cfg, gateway.Options{}); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
	}
	raw, err := demoConfig(demoOptions{replicas: 4, simPort: 8001, address: "127.0.0.1:8080", admin: "127.0.0.1:9090"})
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
