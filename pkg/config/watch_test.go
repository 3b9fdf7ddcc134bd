package config_test

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

	"github.com/igw-dev/igw/internal/configtest"
	"github.com/igw-dev/igw/pkg/config"
	"github.com/igw-dev/igw/pkg/gateway"
	"github.com/igw-dev/igw/pkg/policy/auth"
)

const (
	hashA = "sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae" // "foo"
	hashB = "sha256:fcde2b2edba56bf408601fb721fe9b5c338d10ee429ea04fae5511b68fbf8fb9" // "bar"
)

// gatewayFile is a valid configuration whose API address is addr; configs
// with addresses of equal length have equal size, which exercises change
// detection when the size does not change.
func gatewayFile(addr string) []byte {
	return configtest.File(configtest.ServerDoc, configtest.PoolDoc, "apiVersion: igw.dev/v1alpha1\nkind: Gateway\nspec: {address: \""+addr+"\"}\n")
}

// address is the API listener address of c.
func address(c *config.Config) string { return gateway.Settings(c).Spec.Address }

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
	reloads chan *config.Config
	errs    chan error
	done    chan error
	cancel  context.CancelFunc
}

func startWatcher(t *testing.T, w *config.Watcher) *watchHarness {
	t.Helper()
	h := &watchHarness{reloads: make(chan *config.Config, 16), errs: make(chan error, 16), done: make(chan error, 1)}
	w.OnReload = func(c *config.Config) { h.reloads <- c }
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

func (h *watchHarness) nextReload(t *testing.T) *config.Config {
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
		t.Fatalf("unexpected reload (address %s)", address(c))
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
		t.Fatalf("unexpected reload (address %s)", address(c))
	case err := <-h.errs:
		t.Fatalf("unexpected error: %v", err)
	case <-time.After(d):
	}
}

func TestWatcher_ReloadsChangedFileAndKeepsOldConfigOnBadEdit(t *testing.T) {
	path := filepath.Join(t.TempDir(), "igw.yaml")
	writeAtomically(t, path, gatewayFile(":8080"))
	h := startWatcher(t, &config.Watcher{Path: path, Schema: schema, Interval: 10 * time.Millisecond, Signals: make(chan os.Signal)})

	if c := h.nextReload(t); address(c) != ":8080" {
		t.Fatalf("initial address = %s", address(c))
	}

	// Same size, rewritten in place right away: only the content hash
	// tells the versions apart.
	if err := os.WriteFile(path, gatewayFile(":8081"), 0o600); err != nil {
		t.Fatal(err)
	}
	if c := h.nextReload(t); address(c) != ":8081" {
		t.Fatalf("address after edit = %s", address(c))
	}

	// A bad edit is reported once and not applied.
	writeAtomically(t, path, append(gatewayFile(":8082"), "---\napiVersion: igw.dev/v1alpha1\nkind: Route\nmetadata: {name: r}\nspec: {backends: [{pool: llama}], bogus: true}\n"...))
	err := h.nextError(t)
	if !errors.Is(err, config.ErrUnknownField) || err.Error() != path+`: document 4 (Route "r"): spec.bogus: unknown field` {
		t.Fatalf("error = %v", err)
	}
	h.quiet(t, 100*time.Millisecond)

	// Fixing the file applies it.
	writeAtomically(t, path, gatewayFile(":8083"))
	if c := h.nextReload(t); address(c) != ":8083" {
		t.Fatalf("address after fix = %s", address(c))
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
	if c := h.nextReload(t); address(c) != ":8084" {
		t.Fatalf("address after re-creation = %s", address(c))
	}
}

func TestWatcher_TouchWithoutChangeDoesNotReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "igw.yaml")
	writeAtomically(t, path, gatewayFile(":8080"))
	initial, err := schema.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	h := startWatcher(t, &config.Watcher{Path: path, Schema: schema, Initial: initial, Interval: 10 * time.Millisecond, Signals: make(chan os.Signal)})
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
	initial, err := schema.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	sig := make(chan os.Signal, 1)
	h := startWatcher(t, &config.Watcher{Path: path, Schema: schema, Initial: initial, Interval: -1, Signals: sig})

	writeAtomically(t, path, gatewayFile(":9000"))
	h.quiet(t, 100*time.Millisecond) // polling is off: only the signal reloads

	sig <- os.Interrupt
	if c := h.nextReload(t); address(c) != ":9000" {
		t.Fatalf("address = %s", address(c))
	}
	// A signal reloads unchanged content too, so an operator can always
	// force a reload.
	sig <- os.Interrupt
	if c := h.nextReload(t); address(c) != ":9000" {
		t.Fatalf("address = %s", address(c))
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
	w := &config.Watcher{Path: path, Schema: schema, OnReload: func(*config.Config) { t.Error("OnReload called with an invalid file") }, Signals: make(chan os.Signal)}
	err := w.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "spec.nope: unknown field") {
		t.Fatalf("Run = %v", err)
	}
	if err := (&config.Watcher{Path: path, Schema: schema}).Run(context.Background()); err == nil {
		t.Fatal("Run without OnReload must fail")
	}
	if err := (&config.Watcher{Path: path, OnReload: func(*config.Config) {}}).Run(context.Background()); err == nil {
		t.Fatal("Run without Schema must fail")
	}
}

func TestWatcher_ReloadsWhenAKeysFileChanges(t *testing.T) {
	dir := t.TempDir()
	keys := filepath.Join(dir, "team.keys")
	writeAtomically(t, keys, []byte(hashA+" first\n"))
	path := filepath.Join(dir, "igw.yaml")
	writeAtomically(t, path, configtest.File(configtest.ServerDoc, configtest.PoolDoc, "apiVersion: igw.dev/v1alpha1\nkind: APIKeys\nmetadata: {name: team}\nspec: {keysFile: team.keys}\n"))
	h := startWatcher(t, &config.Watcher{Path: path, Schema: schema, Interval: 10 * time.Millisecond, Signals: make(chan os.Signal)})
	keyIDs := func(c *config.Config) string {
		var ids []string
		for _, k := range auth.Keys(c)[0].FileKeys {
			ids = append(ids, k.ID)
		}
		return strings.Join(ids, ",")
	}
	c := h.nextReload(t)
	if got := keyIDs(c); got != "first" || len(c.SideFiles) != 1 || c.SideFiles[0].Path != keys {
		t.Fatalf("initial keys %q, side files %+v", got, c.SideFiles)
	}
	h.quiet(t, 100*time.Millisecond) // an unchanged side file reloads nothing

	// Only the keys file changes: the configuration is reloaded.
	writeAtomically(t, keys, []byte(hashA+" first\n"+hashB+" second\n"))
	if got := keyIDs(h.nextReload(t)); got != "first,second" {
		t.Fatalf("keys after edit = %q", got)
	}
	// A broken keys file is reported once and the keys stay.
	writeAtomically(t, keys, []byte("sha256:nothex\n"))
	if err := h.nextError(t); !strings.Contains(err.Error(), "spec.keysFile") {
		t.Fatalf("error = %v", err)
	}
	h.quiet(t, 100*time.Millisecond)
	// Deleted: one error, not one per poll.
	if err := os.Remove(keys); err != nil {
		t.Fatal(err)
	}
	if err := h.nextError(t); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("error = %v", err)
	}
	h.quiet(t, 100*time.Millisecond)
	writeAtomically(t, keys, []byte(hashB+" only\n"))
	if got := keyIDs(h.nextReload(t)); got != "only" {
		t.Fatalf("keys after restore = %q", got)
	}
}
