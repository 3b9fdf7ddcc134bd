package e2e

import "syscall"

// childAttrs makes a child process die with the test binary (Linux's
// parent-death signal), so a test binary killed by a timeout leaves no
// simulator or gateway running.
func childAttrs() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
