//go:build !linux

package e2e

import "syscall"

// childAttrs has no parent-death signal outside Linux; cleanup stops the
// children.
func childAttrs() *syscall.SysProcAttr { return nil }
