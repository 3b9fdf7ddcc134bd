//go:build !linux

package bench

import (
	"os"
	"syscall"
	"time"
)

// childProcAttr has no process-group or parent-death support outside Linux:
// only the direct child is signalled there.
func childProcAttr() *syscall.SysProcAttr { return nil }

// signalGroup signals p itself.
func signalGroup(p *os.Process, sig syscall.Signal) error {
	if p == nil {
		return nil
	}
	if err := p.Signal(sig); err != nil && err != os.ErrProcessDone {
		return err
	}
	return nil
}

// selfCPU is not measured outside Linux.
func selfCPU() time.Duration { return 0 }

// hostCPU is not measured outside Linux.
func hostCPU() (busy, total time.Duration, ok bool) { return 0, 0, false }
