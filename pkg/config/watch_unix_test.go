//go:build unix

package config_test

import (
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/igw-dev/igw/internal/configtest"
	"github.com/igw-dev/igw/pkg/config"
	"github.com/igw-dev/igw/pkg/policy/auth"
)

// TestWatcher_ReloadsOnSIGHUP sends a real SIGHUP to the test process. The
// test subscribes to SIGHUP itself first, so that a signal arriving before
// the watcher has subscribed is caught instead of terminating the process;
// it therefore repeats the signal until the watcher has reloaded.
func TestWatcher_ReloadsOnSIGHUP(t *testing.T) {
	guard := make(chan os.Signal, 16)
	signal.Notify(guard, syscall.SIGHUP)
	defer signal.Stop(guard)

	path := filepath.Join(t.TempDir(), "igw.yaml")
	writeAtomically(t, path, gatewayFile(":8080"))
	initial, err := schema.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	h := startWatcher(t, &config.Watcher{Path: path, Schema: schema, Initial: initial, Interval: -1})
	writeAtomically(t, path, gatewayFile(":7000"))

	deadline := time.After(10 * time.Second)
	for {
		if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		select {
		case c := <-h.reloads:
			if address(c) != ":7000" {
				t.Fatalf("address = %s", address(c))
			}
			return
		case err := <-h.errs:
			t.Fatalf("reload failed: %v", err)
		case <-time.After(50 * time.Millisecond):
		case <-deadline:
			t.Fatal("SIGHUP did not reload the configuration")
		}
	}
}

// TestWatcher_KeysFileFromAMountedSecret: in Kubernetes the keys file is a
// Secret mounted as a volume. The kubelet updates it the way it updates
// every projected volume: the new content goes into a fresh timestamped
// directory and the "..data" symlink is swapped to it in one rename, the
// file itself being a symlink through "..data". The watcher follows the
// link and reloads the keys.
func TestWatcher_KeysFileFromAMountedSecret(t *testing.T) {
	dir := t.TempDir()
	mount := filepath.Join(dir, "secret")
	if err := os.Mkdir(mount, 0o755); err != nil {
		t.Fatal(err)
	}
	publish := func(gen int, content string) {
		t.Helper()
		ts := filepath.Join(mount, fmt.Sprintf("..2026_11_22_%d", gen))
		if err := os.Mkdir(ts, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(ts, "keys"), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		tmp := filepath.Join(mount, "..data_tmp")
		if err := os.Symlink(filepath.Base(ts), tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(mount, "..data")); err != nil {
			t.Fatal(err)
		}
	}
	publish(1, hashA+" first\n")
	if err := os.Symlink(filepath.Join("..data", "keys"), filepath.Join(mount, "keys")); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "igw.yaml")
	writeAtomically(t, path, configtest.File(configtest.ServerDoc, configtest.PoolDoc, "apiVersion: igw.dev/v1alpha1\nkind: APIKeys\nmetadata: {name: team}\nspec: {keysFile: secret/keys}\n"))
	h := startWatcher(t, &config.Watcher{Path: path, Schema: schema, Interval: 10 * time.Millisecond, Signals: make(chan os.Signal)})
	ids := func(c *config.Config) string {
		var out []string
		for _, k := range auth.Keys(c)[0].FileKeys {
			out = append(out, k.ID)
		}
		return strings.Join(out, ",")
	}
	if got := ids(h.nextReload(t)); got != "first" {
		t.Fatalf("initial keys %q", got)
	}
	publish(2, hashA+" first\n"+hashB+" rotated\n")
	if got := ids(h.nextReload(t)); got != "first,rotated" {
		t.Fatalf("keys after the Secret changed = %q", got)
	}
}
