// Package testtool finds the outside programs igw's tests run for real
// (Prometheus and promtool, Jaeger, Chromium, redis-server) and starts them
// on loopback ports of their own.
//
// Finding a program: the environment variable the tool names (which `make
// test` sets to the copy it caches in bin/), else the program on $PATH.
// Without one the test is skipped with a message saying how to install it —
// unless $IGW_REQUIRE_TOOLS is 1 (as under `make test`), in which case it
// fails: CI must never pass by skipping the tests of real components.
package testtool

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// EnvRequire turns a missing program into a test failure instead of a
// skip; `make test` sets it to 1.
const EnvRequire = "IGW_REQUIRE_TOOLS"

// Tool names one outside program: how to find it and how to get it.
type Tool struct {
	// Name is the program's name on $PATH.
	Name string
	// Env is the environment variable that, when set, is its path.
	Env string
	// Install says how to get the program, for the skip or failure message.
	Install string
	// Require names further variables that, set to 1, also make the
	// program required (e.g. the older IGW_REQUIRE_REDIS).
	Require []string
}

// Path finds the program, or skips t (or fails it, when required).
func (tool Tool) Path(t testing.TB) string {
	t.Helper()
	if tool.Env != "" {
		if p := os.Getenv(tool.Env); p != "" {
			if _, err := os.Stat(p); err == nil {
				return p
			}
			t.Fatalf("%s=%s: no such file (%s)", tool.Env, p, tool.Install)
		}
	}
	if p, err := exec.LookPath(tool.Name); err == nil {
		return p
	}
	msg := fmt.Sprintf("%s is not installed: %s", tool.Name, tool.Install)
	for _, env := range append([]string{EnvRequire}, tool.Require...) {
		if os.Getenv(env) == "1" {
			t.Fatalf("%s, and %s=1 requires it", msg, env)
		}
	}
	t.Skip(msg)
	return ""
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
// Whoever binds it next may race another process for it; callers that can
// retry should.
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("choosing a loopback port: %v", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// Process is a program a test started, killed when the test ends; its
// output is kept and logged when the test failed.
type Process struct {
	Name string
	cmd  *exec.Cmd
	out  lockedBuffer
	done chan struct{}
}

// Start runs path with args in dir ("" for the test's) and arranges for it
// to be killed, and its output logged on failure, when t ends.
func Start(t testing.TB, dir, path string, args ...string) *Process {
	t.Helper()
	p := &Process{Name: path, cmd: exec.Command(path, args...), done: make(chan struct{})}
	p.cmd.Dir = dir
	p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", path, err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() {
			t.Logf("%s %s output:\n%s", path, strings.Join(args, " "), tail(p.Output(), 60))
		}
	})
	return p
}

// Exited reports whether the process has ended.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Stop kills the process and waits for it to be gone.
func (p *Process) Stop() {
	if p.Exited() {
		return
	}
	_ = p.cmd.Process.Kill()
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
	}
}

// Output is what the process wrote to stdout and stderr so far.
func (p *Process) Output() string { return p.out.String() }

// WaitUntil polls ready every 100ms until it returns nil, failing t if the
// process exits first or timeout passes.
func (p *Process) WaitUntil(t testing.TB, timeout time.Duration, ready func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := ready()
		if err == nil {
			return
		}
		if p.Exited() {
			t.Fatalf("%s exited before it was ready (%v):\n%s", p.Name, err, tail(p.Output(), 40))
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not ready within %v: %v\n%s", p.Name, timeout, err, tail(p.Output(), 40))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func tail(s string, n int) string {
	lines := strings.SplitAfter(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "")
}
