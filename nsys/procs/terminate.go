package procs

import (
	"fmt"
	"syscall"
	"time"
)

// Terminate ends a process (pid > 0) or a process group (pid < 0, its -pgid): SIGTERM,
// up to grace for it to be gone, then SIGKILL; killed says SIGKILL was needed. The one
// terminate loop of nsys-agent: a session agent after a hung stop, a server group that
// outlived its nsys front-end. An error means it is still there (or could not be
// signalled).
func Terminate(pid int, grace time.Duration) (killed bool, err error) {
	if pid == 0 || pid == -1 || pid == 1 {
		return false, fmt.Errorf("refusing to signal %d", pid) // every process, or init
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		return false, err
	}
	deadline := time.Now().Add(grace)
	for Alive(pid) {
		if time.Now().After(deadline) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			time.Sleep(100 * time.Millisecond)
			if Alive(pid) {
				return true, fmt.Errorf("%s survived SIGKILL", what(pid))
			}
			return true, nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return false, nil
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
