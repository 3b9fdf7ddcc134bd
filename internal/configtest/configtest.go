// Package configtest holds the building blocks the configuration-kind
// tests of every module share: a pool with one server, documents joined
// into a file, and a file written beside its side files and loaded with a
// schema, so relative paths resolve as they would for an operator's file.
package configtest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/igw-dev/igw/pkg/config"
)

// ServerDoc and PoolDoc are a pool "llama" with one model server.
const (
	ServerDoc = `apiVersion: igw.dev/v1alpha1
kind: ModelServer
metadata: {name: llama-0, labels: {app: llama}}
spec: {address: 127.0.0.1}
`
	PoolDoc = `apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata: {name: llama}
spec:
  selector: {matchLabels: {app: llama}}
  targetPorts: [{number: 8000}]
`
)

// File joins documents into one YAML stream.
func File(docs ...string) []byte {
	return []byte(strings.Join(docs, "---\n"))
}

// Load writes docs (and side files) into a temporary directory and loads
// the configuration from there with schema.
func Load(t testing.TB, schema *config.Schema, side map[string]string, docs ...string) (*config.Config, error) {
	t.Helper()
	dir := t.TempDir()
	for name, content := range side {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(dir, "igw.yaml")
	if err := os.WriteFile(path, File(docs...), 0o600); err != nil {
		t.Fatal(err)
	}
	return schema.Load(path)
}
