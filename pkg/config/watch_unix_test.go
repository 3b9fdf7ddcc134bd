//go:build unix

package config

import (
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"testing"
	"time"
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
	initial, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	h := startWatcher(t, &Watcher{Path: path, Initial: initial, Interval: -1})
	writeAtomically(t, path, gatewayFile(":7000"))

	deadline := time.After(10 * time.Second)
	for {
		if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		select {
		case c := <-h.reloads:
			if c.Gateway.Spec.Address != ":7000" {
				t.Fatalf("address = %s", c.Gateway.Spec.Address)
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
