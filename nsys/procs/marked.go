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
	by, err := r.ByEnv(name)
	return by[value], err
}

// ByEnv lists the processes (not zombies, not this one) whose environment has name, by
// its value, each list in pid order (see WithEnv).
func (r *Reader) ByEnv(name string) (map[string][]Proc, error) {
	all, err := r.all()
	if err != nil {
		return nil, err
	}
	prefix := name + "="
	out := map[string][]Proc{}
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
			if v, ok := strings.CutPrefix(kv, prefix); ok {
				out[v] = append(out[v], Proc{PID: st.PID, PPID: st.PPID, Comm: st.Comm, State: st.State})
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
