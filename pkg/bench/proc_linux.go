package bench

import (
	"bytes"
	"os"
	"strconv"
	"syscall"
	"time"
)

// childProcAttr puts a child in its own process group (so the whole group
// can be signalled) and has the kernel kill it if this process dies without
// stopping it (SIGKILL, a crash), so no simulated fleet outlives a run.
func childProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// signalGroup signals p's process group. A group that is already gone is
// not an error.
func signalGroup(p *os.Process, sig syscall.Signal) error {
	if p == nil {
		return nil
	}
	if err := syscall.Kill(-p.Pid, sig); err != nil && err != syscall.ESRCH {
		return err
	}
	return nil
}

// selfCPU is the CPU time this process (the load generator) has used.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// hostCPU is the CPU time all processes on the host have used since boot
// (busy: user, nice, system, irq, softirq and steal, which a hypervisor
// took for other guests) and the wall time all CPUs have had, both from
// /proc/stat; ok is false where it cannot be read. Over a run, the share
// not used by the benchmark's own processes is what other work took.
func hostCPU() (busy, total time.Duration, ok bool) {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, false
	}
	line, _, _ := bytes.Cut(data, []byte("\n"))
	fields := bytes.Fields(line)
	if len(fields) < 9 || string(fields[0]) != "cpu" {
		return 0, 0, false
	}
	var ticks [8]int64 // user nice system idle iowait irq softirq steal
	for i := range ticks {
		v, err := strconv.ParseInt(string(fields[i+1]), 10, 64)
		if err != nil {
			return 0, 0, false
		}
		ticks[i] = v
	}
	var sum int64
	for _, v := range ticks {
		sum += v
	}
	idle := ticks[3] + ticks[4]
	// USER_HZ is 100 on every Linux architecture Go supports.
	const tick = 10 * time.Millisecond
	return time.Duration(sum-idle) * tick, time.Duration(sum) * tick, true
}
