package config

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// gatewayFile is a valid configuration whose API address is addr; configs
// with addresses of equal length have equal size, which exercises change
// detection when the size does not change.
func gatewayFile(addr string) []byte {
	return file(serverDoc, poolDoc, "apiVersion: igw.dev/v1alpha1\nkind: Gateway\nspec: {address: \""+addr+"\"}\n")
}

// writeAtomically replaces path the way editors and Kubernetes ConfigMap
// volumes do: write a temporary file, then rename it over the original.
func writeAtomically(t *testing.T, path string, data []byte) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// watchHarness runs a Watcher and records what it reports.
type watchHarness struct {
	reloads chan *Config
	errs    chan error
	done    chan error
	cancel  context.CancelFunc
}

func startWatcher(t *testing.T, w *Watcher) *watchHarness {
	t.Helper()
	h := &watchHarness{reloads: make(chan *Config, 16), errs: make(chan error, 16), done: make(chan error, 1)}
	w.OnReload = func(c *Config) { h.reloads <- c }
	w.OnError = func(err error) { h.errs <- err }
	w.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	go func() { h.done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-h.done:
			if err != nil {
				t.Errorf("Run returned %v after cancel", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("Run did not return after cancel")
		}
	})
	return h
}

func (h *watchHarness) nextReload(t *testing.T) *Config {
	t.Helper()
	select {
	case c := <-h.reloads:
		return c
	case err := <-h.errs:
		t.Fatalf("reload failed: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("no reload within 5s")
	}
	return nil
}

func (h *watchHarness) nextError(t *testing.T) error {
	t.Helper()
	select {
	case c := <-h.reloads:
		t.Fatalf("unexpected reload (address %s)", c.Gateway.Spec.Address)
	case err := <-h.errs:
		return err
	case <-time.After(5 * time.Second):
		t.Fatal("no error within 5s")
	}
	return nil
}

// quiet asserts that nothing is reported for d.
func (h *watchHarness) quiet(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case c := <-h.reloads:
		t.Fatalf("unexpected reload (address %s)", c.Gateway.Spec.Address)
	case err := <-h.errs:
		t.Fatalf("unexpected error: %v", err)
	case <-time.After(d):
	}
}

func TestWatcher_ReloadsChangedFileAndKeepsOldConfigOnBadEdit(t *testing.T) {
	path := filepath.Join(t.TempDir(), "igw.yaml")
	writeAtomically(t, path, gatewayFile(":8080"))
	h := startWatcher(t, &Watcher{Path: path, Interval: 10 * time.Millisecond, Signals: make(chan os.Signal)})

	if c := h.nextReload(t); c.Gateway.Spec.Address != ":8080" {
		t.Fatalf("initial address = %s", c.Gateway.Spec.Address)
	}

	// Same size, rewritten in place right away: only the content hash
	// tells the versions apart.
	if err := os.WriteFile(path, gatewayFile(":8081"), 0o600); err != nil {
		t.Fatal(err)
	}
	if c := h.nextReload(t); c.Gateway.Spec.Address != ":8081" {
		t.Fatalf("address after edit = %s", c.Gateway.Spec.Address)
	}

	// A bad edit is reported once and not applied.
	writeAtomically(t, path, append(gatewayFile(":8082"), "---\napiVersion: igw.dev/v1alpha1\nkind: Route\nmetadata: {name: r}\nspec: {backends: [{pool: llama}], bogus: true}\n"...))
	err := h.nextError(t)
	if !errors.Is(err, ErrUnknownField) || err.Error() != path+`: document 4 (Route "r"): spec.bogus: unknown field` {
		t.Fatalf("error = %v", err)
	}
	h.quiet(t, 100*time.Millisecond)

	// Fixing the file applies it.
	writeAtomically(t, path, gatewayFile(":8083"))
	if c := h.nextReload(t); c.Gateway.Spec.Address != ":8083" {
		t.Fatalf("address after fix = %s", c.Gateway.Spec.Address)
	}

	// A deleted file is an error, and the config stays.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := h.nextError(t); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("error for a missing file = %v", err)
	}
	h.quiet(t, 100*time.Millisecond)
	writeAtomically(t, path, gatewayFile(":8084"))
	if c := h.nextReload(t); c.Gateway.Spec.Address != ":8084" {
		t.Fatalf("address after re-creation = %s", c.Gateway.Spec.Address)
	}
}

func TestWatcher_TouchWithoutChangeDoesNotReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "igw.yaml")
	writeAtomically(t, path, gatewayFile(":8080"))
	initial, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	h := startWatcher(t, &Watcher{Path: path, Initial: initial, Interval: 10 * time.Millisecond, Signals: make(chan os.Signal)})
	future := time.Now().Add(time.Hour)
	if err := os.Chtimes(path, future, future); err != nil {
		t.Fatal(err)
	}
	writeAtomically(t, path, gatewayFile(":8080"))
	h.quiet(t, 150*time.Millisecond)
}

func TestWatcher_SignalForcesReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "igw.yaml")
	writeAtomically(t, path, gatewayFile(":8080"))
	initial, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	sig := make(chan os.Signal, 1)
	h := startWatcher(t, &Watcher{Path: path, Initial: initial, Interval: -1, Signals: sig})

	writeAtomically(t, path, gatewayFile(":9000"))
	h.quiet(t, 100*time.Millisecond) // polling is off: only the signal reloads

	sig <- os.Interrupt
	if c := h.nextReload(t); c.Gateway.Spec.Address != ":9000" {
		t.Fatalf("address = %s", c.Gateway.Spec.Address)
	}
	// A signal reloads unchanged content too, so an operator can always
	// force a reload.
	sig <- os.Interrupt
	if c := h.nextReload(t); c.Gateway.Spec.Address != ":9000" {
		t.Fatalf("address = %s", c.Gateway.Spec.Address)
	}
	// A signal with a bad file reports the error every time.
	writeAtomically(t, path, []byte("kind: Nope\napiVersion: x/v1\n"))
	sig <- os.Interrupt
	if err := h.nextError(t); !strings.Contains(err.Error(), `kind: unknown kind "Nope"`) {
		t.Fatalf("error = %v", err)
	}
}

func TestWatcher_InitialLoadFailureIsReturned(t *testing.T) {
	path := filepath.Join(t.TempDir(), "igw.yaml")
	writeAtomically(t, path, []byte("apiVersion: igw.dev/v1alpha1\nkind: Gateway\nspec: {nope: 1}\n"))
	w := &Watcher{Path: path, OnReload: func(*Config) { t.Error("OnReload called with an invalid file") }, Signals: make(chan os.Signal)}
	err := w.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "spec.nope: unknown field") {
		t.Fatalf("Run = %v", err)
	}
	if err := (&Watcher{Path: path}).Run(context.Background()); err == nil {
		t.Fatal("Run without OnReload must fail")
	}
}
