package procs

import (
	"fmt"
	"syscall"
	"time"
)

// Terminate ends a process (pid > 0) or a process group (pid < 0, its -pgid): SIGTERM,
// up to grace for it to be gone, then SIGKILL; killed says SIGKILL was needed. An error
// means it is still there (or could not be signalled).
func Terminate(pid int, grace time.Duration) (killed bool, err error) {
	if pid == 0 || pid == -1 || pid == 1 {
		return false, fmt.Errorf("refusing to signal %d", pid) // every process, or init
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		return false, err
	}
	killed, left := endLoop(grace, func() []int {
		if Alive(pid) {
			return []int{pid}
		}
		return nil
	}, func(int) { _ = syscall.Kill(pid, syscall.SIGKILL) })
	if len(left) > 0 {
		return killed, fmt.Errorf("%s survived SIGKILL", what(pid))
	}
	return killed, nil
}

// TerminateAll ends every process that find lists (looked up again while it waits, so a
// process forked meanwhile is ended too): SIGTERM to each, up to grace for all to be gone,
// then SIGKILL to whatever find still lists. It returns whether SIGKILL was needed and the
// pids still there after it (a process in uninterruptible sleep inside a driver ends only
// when the driver lets it go).
func TerminateAll(find func() []int, grace time.Duration) (killed bool, left []int) {
	pids := find()
	if len(pids) == 0 {
		return false, nil
	}
	for _, pid := range pids {
		if pid > 1 {
			_ = syscall.Kill(pid, syscall.SIGTERM)
		}
	}
	return endLoop(grace, find, func(pid int) {
		if pid > 1 {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})
}

// endLoop is the one terminate loop of nsys-agent (a session agent after a hung stop, a
// server group that outlived its nsys front-end, a target's marked processes): after
// SIGTERM went out, it waits up to grace for alive to list nothing, then kills what it
// lists and gives the kernel up to a second to tear those down (a process with GPU memory
// takes a moment to be gone after SIGKILL).
func endLoop(grace time.Duration, alive func() []int, kill func(pid int)) (killed bool, left []int) {
	deadline := time.Now().Add(grace)
	for {
		left = alive()
		if len(left) == 0 {
			return killed, nil
		}
		if killed {
			if time.Now().After(deadline) {
				return true, left
			}
		} else if time.Now().After(deadline) {
			for _, pid := range left {
				kill(pid)
			}
			killed, deadline = true, time.Now().Add(time.Second)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Alive reports whether a process (pid > 0) or a process group (pid < 0) still has a
// process that is not a zombie. kill(2) with signal 0 is not enough: a killed process
// whose parent does not reap it (an orphan under a container's init) stays a zombie, and
// signalling its group still succeeds.
func Alive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	all, err := Default.all()
	if err != nil {
		return true // cannot tell: kill said it exists
	}
	for _, p := range all {
		st, err := p.Stat()
		if err != nil || st.State == "Z" {
			continue
		}
		if (pid > 0 && st.PID == pid) || (pid < 0 && st.PGRP == -pid) {
			return true
		}
	}
	return false
}

func what(pid int) string {
	if pid < 0 {
		return fmt.Sprintf("process group %d", -pid)
	}
	return fmt.Sprintf("process %d", pid)
}
