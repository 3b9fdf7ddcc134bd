//go:build linux

package bench

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// alive reports whether pid exists (and is not a zombie).
func alive(pid int) bool {
	st, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	fields := strings.Fields(string(st))
	return len(fields) > 2 && fields[2] != "Z"
}

// startShell starts a shell that leaves a grandchild running and reports
// its pid in a file.
func startShell(t *testing.T, ctx context.Context) (*process, int) {
	t.Helper()
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "pid")
	p, err := startProcess(ctx, "sh", []string{"/bin/sh", "-c", "sleep 300 & echo $! > " + pidFile + "; wait"}, filepath.Join(dir, "log"), nil)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if b, err := os.ReadFile(pidFile); err == nil && strings.HasSuffix(string(b), "\n") {
			pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
			return p, pid
		}
		time.Sleep(10 * time.Millisecond)
	}
	p.stop()
	t.Fatal("the shell did not start its child")
	return nil, 0
}

func waitGone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for alive(pid) {
		if time.Now().After(deadline) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("grandchild %d survived", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestProcess_StopKillsTheWholeGroup(t *testing.T) {
	p, grandchild := startShell(t, context.Background())
	p.stop()
	if !p.exited() {
		t.Fatal("process still running after stop")
	}
	waitGone(t, grandchild)
	p.stop() // idempotent
}

func TestProcess_ContextCancelKillsTheWholeGroup(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	p, grandchild := startShell(t, ctx)
	cancel()
	select {
	case <-p.done:
	case <-time.After(stopGrace + 2*time.Second):
		t.Fatal("cancel did not end the process")
	}
	waitGone(t, grandchild)
	p.stop()
}

func TestProcess_ExitErrorCarriesOutput(t *testing.T) {
	dir := t.TempDir()
	p, err := startProcess(context.Background(), "failing", []string{"/bin/sh", "-c", "echo 'listen: address in use' >&2; exit 3"}, filepath.Join(dir, "log"), nil)
	if err != nil {
		t.Fatal(err)
	}
	<-p.done
	msg := p.exitError().Error()
	if !strings.Contains(msg, "failing exited") || !strings.Contains(msg, "address in use") || !strings.Contains(msg, "exit status 3") {
		t.Fatalf("exit error %q", msg)
	}
	p.stop()
	if log, _ := os.ReadFile(filepath.Join(dir, "log")); !strings.Contains(string(log), "address in use") {
		t.Fatalf("log %q", log)
	}
	tw := &tailWriter{max: 4}
	_, _ = tw.Write([]byte("abcdef"))
	if tw.String() != "cdef" {
		t.Fatalf("tail %q", tw.String())
	}
}

func TestHostCPU_CountsBusyTime(t *testing.T) {
	b0, t0, ok := hostCPU()
	if !ok {
		t.Fatal("/proc/stat not readable")
	}
	end := time.Now().Add(100 * time.Millisecond)
	for time.Now().Before(end) { // keep one CPU busy
	}
	b1, t1, _ := hostCPU()
	if b1-b0 < 50*time.Millisecond || t1-t0 < b1-b0 {
		t.Fatalf("busy %v of %v over a 100 ms spin", b1-b0, t1-t0)
	}
}
