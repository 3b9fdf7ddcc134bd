package bench

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// process is a child process of the comparison (a simulated fleet, a
// gateway, an external contender). It runs in its own process group so that
// stopping it also stops whatever it started (a shell's children), and it
// is stopped when the context that started it ends, so an error or Ctrl-C
// never leaves a fleet running.
type process struct {
	name string
	cmd  *exec.Cmd
	log  *os.File
	tail *tailWriter

	done    chan struct{} // closed when the process has exited and been reaped
	waitErr error         // valid once done is closed
}

// stopGrace is how long a child gets to exit on SIGTERM before its group is
// killed.
const stopGrace = 5 * time.Second

// startProcess starts argv with stderr (and stdout, unless stdout is given)
// appended to logPath. The process is terminated, with its group, when ctx
// ends.
func startProcess(ctx context.Context, name string, argv []string, logPath string, stdout io.Writer) (*process, error) {
	if len(argv) == 0 {
		return nil, fmt.Errorf("%s: empty command", name)
	}
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("%s: log file: %w", name, err)
	}
	p := &process{name: name, log: logf, tail: &tailWriter{max: 4 << 10}, done: make(chan struct{})}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.SysProcAttr = childProcAttr()
	cmd.Stdin = nil
	errOut := io.MultiWriter(logf, p.tail)
	cmd.Stderr = errOut
	cmd.Stdout = errOut
	if stdout != nil {
		cmd.Stdout = io.MultiWriter(logf, stdout)
	}
	// On cancellation terminate the whole group, then give it stopGrace
	// before Go kills the leader; stop() kills the group for good.
	cmd.Cancel = func() error { return signalGroup(cmd.Process, syscall.SIGTERM) }
	cmd.WaitDelay = stopGrace
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("%s: start %s: %w", name, argv[0], err)
	}
	p.cmd = cmd
	go func() {
		p.waitErr = cmd.Wait()
		// Whatever the leader left behind in its group goes too.
		_ = signalGroup(cmd.Process, syscall.SIGKILL)
		close(p.done)
	}()
	return p, nil
}

// exited reports whether the process has ended.
func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop terminates the process group (SIGTERM, then SIGKILL after
// stopGrace), waits for the process and closes its log. It is safe to call
// more than once.
func (p *process) stop() {
	if !p.exited() {
		_ = signalGroup(p.cmd.Process, syscall.SIGTERM)
		t := time.NewTimer(stopGrace)
		select {
		case <-p.done:
		case <-t.C:
			_ = signalGroup(p.cmd.Process, syscall.SIGKILL)
			<-p.done
		}
		t.Stop()
	}
	_ = p.log.Close()
}

// cpu is the CPU time (user + system) the process and the children it
// waited for used; 0 before it has exited.
func (p *process) cpu() time.Duration {
	if !p.exited() || p.cmd.ProcessState == nil {
		return 0
	}
	return p.cmd.ProcessState.UserTime() + p.cmd.ProcessState.SystemTime()
}

// exitError describes an unexpected exit with the tail of the process's
// output, which usually holds the reason (a port in use, a bad setting).
func (p *process) exitError() error {
	out := strings.TrimSpace(p.tail.String())
	if out != "" {
		out = "\n" + out
	}
	if p.waitErr != nil {
		return fmt.Errorf("%s exited: %w%s", p.name, p.waitErr, out)
	}
	return fmt.Errorf("%s exited%s", p.name, out)
}

// tailWriter keeps the last max bytes written to it.
type tailWriter struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func (t *tailWriter) Write(b []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, b...)
	if over := len(t.buf) - t.max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(b), nil
}

func (t *tailWriter) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}

// doneChan is p's exit channel, or nil (never ready) for no process, so
// waits can watch an optional process.
func doneChan(p *process) <-chan struct{} {
	if p == nil {
		return nil
	}
	return p.done
}
