package agent

import (
	"fmt"
	"strings"
	"time"

	"github.com/nsys-agent/nsys-agent/nsys/procs"
)

// TargetMarkerEnv is put in the target's environment at launch, set to the nsys session's
// name (unique on the host while the session exists), so that every process of the
// server can be found from /proc whatever became of the process tree: a worker that
// called setsid (Ray's raylet and workers under vLLM do), a tree reparented to init after
// its nsys front-end died, a rank left over by an agent killed mid-way. The server's
// process group alone missed such processes: on the H200 a launch-mode server's port was
// still held a minute after its agent had ended the server's group (docs/gpu-validation.md).
const TargetMarkerEnv = "NSYS_AGENT_TARGET"

// withTargetMarker returns env (nil: the target environment) with the marker of session.
func withTargetMarker(env []string, session string) []string {
	if env == nil {
		env = TargetEnv()
	}
	return append(env[:len(env):len(env)], TargetMarkerEnv+"="+session)
}

// markedTarget lists the target's processes still running: those carrying session's
// marker, except nsys' own (nsys-launcher, nsys-tee, the session's agent), which inherit
// it from the front-end and end with the session.
func markedTarget(session string) []procs.Proc {
	if session == "" {
		return nil
	}
	all, _ := procs.Default.WithEnv(TargetMarkerEnv, session)
	out := all[:0]
	for _, p := range all {
		if !strings.HasPrefix(p.Comm, "nsys") {
			out = append(out, p)
		}
	}
	return out
}

// markedLeft counts the target's processes still running once they had up to wait to end
// on their own: the front-end may exit while the target's processes are still exiting
// (a rank freeing its GPU memory), and an ending process is not an orphan to report.
func markedLeft(session string, wait time.Duration) int {
	deadline := time.Now().Add(wait)
	for {
		n := len(markedTarget(session))
		if n == 0 || time.Now().After(deadline) {
			return n
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// endMarkedTarget ends every process of session's target still running (SIGTERM, grace,
// SIGKILL), and returns an error describing those that even SIGKILL did not end: a rank
// blocked inside the GPU driver (state D) goes on holding its GPU memory and the server's
// port until the driver returns, and the operator must be told so.
func endMarkedTarget(session string, grace time.Duration) (ended int, err error) {
	find := func() []int {
		ps := markedTarget(session)
		pids := make([]int, len(ps))
		for i, p := range ps {
			pids[i] = p.PID
		}
		return pids
	}
	first := find()
	if len(first) == 0 {
		return 0, nil
	}
	_, left := procs.TerminateAll(find, grace)
	if len(left) == 0 {
		return len(first), nil
	}
	desc := make([]string, len(left))
	for i, pid := range left {
		desc[i] = procs.Default.Describe(pid)
	}
	return len(first) - len(left), &ServerLeftError{Processes: desc}
}

// ServerLeftError says that processes of the server outlived SIGKILL: the agent no longer
// controls them and cannot end them. `run` fails with it rather than exit as if all ended.
type ServerLeftError struct {
	Processes []string // as procs.Describe puts them
}

func (e *ServerLeftError) Error() string {
	return fmt.Sprintf("%d of the server's processes survived SIGKILL: %s; a process blocked in the kernel (state D, e.g. inside the GPU driver) ends only when the driver lets it go, and until then it may hold the server's port and GPU memory: check nvidia-smi and `cat /proc/PID/stack` as root, and do not start the server again on this GPU before they are gone", len(e.Processes), strings.Join(e.Processes, "; "))
}
