package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/igw-dev/igw/internal/kubetest"
)

// igwBinary is the igw binary TestMain builds once for the process tests.
// It is the package's only package-level state and is written only by
// TestMain, before any test runs.
var igwBinary string

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

// run builds the binary into a temporary directory, runs the tests and
// removes the directory.
func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "igw-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	root, err := kubetest.ModuleRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	bin := filepath.Join(dir, "igw")
	build := exec.Command("go", "build", "-o", bin, "./cmd/igw")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: building igw: %v\n%s", err, out)
		return 1
	}
	igwBinary = bin
	return kubetest.Main(m, &kubeEnv) // a real API server for kube_test.go, when KUBEBUILDER_ASSETS is set
}

// syncBuffer is a bytes.Buffer safe for one writer and many readers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write appends p.
func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns everything written so far.
func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// proc is a child igw process whose stdout and stderr are captured.
type proc struct {
	name           string
	cmd            *exec.Cmd
	stdout, stderr syncBuffer
	done           chan struct{} // closed when the process has exited
	err            error         // Wait's result, valid after done
}

// startProc runs the igw binary with args. The process is stopped when the
// test ends (SIGTERM, then SIGKILL after a grace period), and its output is
// logged if the test failed.
func startProc(t *testing.T, name string, args ...string) *proc {
	t.Helper()
	p := &proc{name: name, cmd: exec.Command(igwBinary, args...), done: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = &p.stdout, &p.stderr
	p.cmd.SysProcAttr = childAttrs()
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.stop(3 * time.Second)
		if t.Failed() {
			t.Logf("%s (igw %s) output:\n%s%s", name, strings.Join(args, " "), tail(p.stdout.String(), 30), tail(p.stderr.String(), 60))
		}
	})
	return p
}

// stop ends the process: SIGTERM, then SIGKILL if it has not exited within
// grace. It returns once the process has exited.
func (p *proc) stop(grace time.Duration) {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// kill sends SIGKILL and waits for the process to be gone.
func (p *proc) kill() {
	_ = p.cmd.Process.Kill()
	<-p.done
}

// signal sends sig to the process.
func (p *proc) signal(t *testing.T, sig os.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signalling %s: %v", p.name, err)
	}
}

// output is stdout followed by stderr.
func (p *proc) output() string { return p.stdout.String() + p.stderr.String() }

// waitOutput polls the process output until re has matched n times and
// returns the submatches. It fails the test if the process exits first or
// timeout passes.
func (p *proc) waitOutput(t *testing.T, re *regexp.Regexp, n int, timeout time.Duration) [][]string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if m := re.FindAllStringSubmatch(p.output(), -1); len(m) >= n {
			return m[:n]
		}
		select {
		case <-p.done:
			if m := re.FindAllStringSubmatch(p.output(), -1); len(m) >= n {
				return m[:n]
			}
			t.Fatalf("%s exited (%v) before printing %q:\n%s", p.name, p.err, re, tail(p.output(), 40))
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not print %q within %v:\n%s", p.name, re, timeout, tail(p.output(), 40))
		}
	}
}

// waitExit waits up to timeout for the process to exit by itself.
func (p *proc) waitExit(t *testing.T, timeout time.Duration) error {
	t.Helper()
	select {
	case <-p.done:
		return p.err
	case <-time.After(timeout):
		t.Fatalf("%s still running after %v", p.name, timeout)
		return nil
	}
}

var (
	simAddrLine   = regexp.MustCompile(`serving \S+ on http://(\S+)`)
	serveAddrLine = regexp.MustCompile(`msg="igw gateway serving" address=(\S+) admin=(\S+)`)
)

// startSimProc runs `igw sim` with replicas replicas on ports the process
// picks (--port 0) plus extra flags, and returns it with the replicas'
// addresses in replica order.
func startSimProc(t *testing.T, name string, replicas int, extra ...string) (*proc, []string) {
	t.Helper()
	args := append([]string{"sim", "--port", "0", "--replicas", fmt.Sprint(replicas)}, extra...)
	p := startProc(t, name, args...)
	var addrs []string
	for _, m := range p.waitOutput(t, simAddrLine, replicas, 15*time.Second) {
		addrs = append(addrs, m[1])
	}
	return p, addrs
}

// startServeProc runs `igw serve --config path` (a configuration whose
// listeners are on 127.0.0.1:0) with extra flags, waits for it to be
// ready and returns it with its API and admin addresses.
func startServeProc(t *testing.T, path string, extra ...string) (p *proc, api, admin string) {
	t.Helper()
	p = startProc(t, "igw serve", append([]string{"serve", "--config", path, "--log-level", "debug"}, extra...)...)
	m := p.waitOutput(t, serveAddrLine, 1, 15*time.Second)[0]
	api, admin = m[1], m[2]
	waitReady(t, admin)
	return p, api, admin
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.SplitAfter(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "")
}

// writeFileAtomic replaces path with data by writing a temporary file in the
// same directory and renaming it, so a watcher never reads half a file.
func writeFileAtomic(t *testing.T, path string, data []byte) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// withTimeout is a context for one bounded step of a test.
func withTimeout(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
