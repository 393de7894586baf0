package procs

import (
	"fmt"
	"os"
	"strings"
)

// WithEnv lists the processes (not zombies) whose environment holds name=value, in pid
// order, leaving out this process. A variable set in a process's environment at exec is
// inherited by everything it forks and execs unless a child clears it, so a marker set on
// a launch finds that launch's processes whatever their parent, process group or session
// (a worker started with setsid, a tree reparented to init). Processes whose environment
// cannot be read (another user's, without privilege) are left out.
func (r *Reader) WithEnv(name, value string) ([]Proc, error) {
	all, err := r.all()
	if err != nil {
		return nil, err
	}
	want := name + "=" + value
	var out []Proc
	for _, p := range all {
		if p.PID == os.Getpid() {
			continue
		}
		st, err := p.Stat()
		if err != nil || st.State == "Z" {
			continue
		}
		env, err := p.Environ()
		if err != nil {
			continue
		}
		for _, kv := range env {
			if kv == want {
				out = append(out, Proc{PID: st.PID, PPID: st.PPID, Comm: st.Comm, State: st.State})
				break
			}
		}
	}
	return out, nil
}

// Describe is a process as an operator needs it when it cannot be ended: its name, state
// and, when it sleeps in the kernel, where (e.g. "pid 4242 (python3), state D, in the
// kernel at os_schedule"). A process stuck in a driver call (state D) ignores even
// SIGKILL until the driver returns.
func (r *Reader) Describe(pid int) string {
	p, err := r.proc(pid)
	if err != nil {
		return fmt.Sprintf("pid %d (gone)", pid)
	}
	st, err := p.Stat()
	if err != nil {
		return fmt.Sprintf("pid %d (gone)", pid)
	}
	s := fmt.Sprintf("pid %d (%s), state %s", pid, st.Comm, st.State)
	if w, err := p.Wchan(); err == nil && w != "" && w != "0" {
		s += ", in the kernel at " + strings.TrimSpace(w)
	}
	return s
}
