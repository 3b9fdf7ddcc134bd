// Package testredis runs a real redis-server for tests: Debian's binary,
// started on a loopback port of its own, with persistence off, and killed
// when the test ends. Tests of the shared quota store use it instead of a
// fake, so what they exercise is the Lua that production runs.
//
// Finding the binary: $IGW_REDIS_SERVER if set (`make test` sets it to the
// copy `make redis-server` caches in bin/), else redis-server on $PATH.
// Without one the test is skipped with a message saying how to install it
// — unless $IGW_REQUIRE_REDIS is 1 (as under `make test`), in which case it
// fails: CI must never pass by skipping the Redis tests (internal/testtool;
// IGW_REQUIRE_TOOLS=1 requires it too).
package testredis

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/igw-dev/igw/internal/testtool"
)

// EnvBinary and EnvRequire are the environment variables the package reads.
const (
	EnvBinary  = "IGW_REDIS_SERVER"
	EnvRequire = "IGW_REQUIRE_REDIS"
)

// Server is one redis-server process on 127.0.0.1. It can be stopped and
// started again on the same port, which is how tests simulate an outage.
type Server struct {
	t    testing.TB
	bin  string
	Addr string // 127.0.0.1:port

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	out  *strings.Builder
}

// Binary finds redis-server, or skips (or fails, when required) t.
func Binary(t testing.TB) string {
	t.Helper()
	return testtool.Tool{Name: "redis-server", Env: EnvBinary, Require: []string{EnvRequire},
		Install: "`apt-get install -y redis-server` or `make redis-server`"}.Path(t)
}

// Start runs redis-server on a free loopback port and waits until it
// answers PING. It is killed when the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	s := &Server{t: t, bin: Binary(t)}
	var lastErr error
	for range 5 { // the port can be taken between choosing and binding it
		port, err := freePort()
		if err != nil {
			t.Fatalf("choosing a port for redis-server: %v", err)
		}
		s.Addr = fmt.Sprintf("127.0.0.1:%d", port)
		if lastErr = s.start(); lastErr == nil {
			t.Cleanup(s.Stop)
			return s
		}
	}
	t.Fatalf("starting redis-server: %v", lastErr)
	return nil
}

// Restart starts the server again on its port after Stop (an empty
// database: persistence is off, as after a real crash without it).
func (s *Server) Restart() {
	s.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := s.start()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("restarting redis-server on %s: %v", s.Addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (s *Server) start() error {
	_, port, _ := net.SplitHostPort(s.Addr)
	cmd := exec.Command(s.bin, "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--protected-mode", "yes", "--daemonize", "no", "--loglevel", "warning")
	out := &strings.Builder{}
	var mu sync.Mutex
	cmd.Stdout = writerFunc(func(p []byte) (int, error) { mu.Lock(); defer mu.Unlock(); return out.Write(p) })
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if Ping(s.Addr) == nil {
			break
		}
		select {
		case <-done:
			mu.Lock()
			defer mu.Unlock()
			return fmt.Errorf("redis-server exited: %s", out.String())
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-done
			return errors.New("redis-server did not answer PING within 5s")
		}
	}
	s.mu.Lock()
	s.cmd, s.done, s.out = cmd, done, out
	s.mu.Unlock()
	return nil
}

// Stop kills the server (SIGKILL: an abrupt outage) and waits for it to
// exit. Stopping a stopped server does nothing.
func (s *Server) Stop() {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	<-done
}

// Do sends one command and returns its reply line (for a bulk reply, the
// bulk's content): enough for FLUSHALL, INFO and the like in tests.
func (s *Server) Do(args ...string) (string, error) {
	return do(s.Addr, args...)
}

// Ping sends PING to addr and expects PONG.
func Ping(addr string) error {
	r, err := do(addr, "PING")
	if err != nil {
		return err
	}
	if r != "PONG" {
		return fmt.Errorf("PING answered %q", r)
	}
	return nil
}

func do(addr string, args ...string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := c.Write([]byte(b.String())); err != nil {
		return "", err
	}
	r := bufio.NewReader(c)
	line, err := r.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimRight(line, "\r\n")
	switch {
	case strings.HasPrefix(line, "+"), strings.HasPrefix(line, ":"):
		return line[1:], nil
	case strings.HasPrefix(line, "-"):
		return "", errors.New(line[1:])
	case strings.HasPrefix(line, "$"):
		var n int
		if _, err := fmt.Sscanf(line[1:], "%d", &n); err != nil || n < 0 {
			return "", err
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return "", err
		}
		return string(buf[:n]), nil
	}
	return line, nil
}

// CommandCalls returns how many times Redis ran cmd (e.g. "evalsha"),
// from INFO commandstats: the server's own count of commands received.
func (s *Server) CommandCalls(cmd string) (int64, error) {
	info, err := s.Do("INFO", "commandstats")
	if err != nil {
		return 0, err
	}
	prefix := "cmdstat_" + strings.ToLower(cmd) + ":calls="
	for _, line := range strings.Split(info, "\n") {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(line), prefix); ok {
			var n int64
			_, err := fmt.Sscanf(rest, "%d", &n)
			return n, err
		}
	}
	return 0, nil
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
