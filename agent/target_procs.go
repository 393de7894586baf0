package agent

import (
	"fmt"
	"strings"
	"time"

	"github.com/nsys-agent/nsys-agent/nsys"
	"github.com/nsys-agent/nsys-agent/nsys/procs"
)

// withTargetMarker returns env (nil: the target environment) with the marker of session.
func withTargetMarker(env []string, session string) []string {
	if env == nil {
		env = TargetEnv()
	}
	return append(env[:len(env):len(env)], nsys.TargetMarkerEnv+"="+session)
}

// markedTarget lists the target's processes still running (nsys.TargetProcs).
func markedTarget(session string) []procs.Proc { return nsys.TargetProcs(procs.Default, session) }

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
