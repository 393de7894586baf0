package nsys

import (
	"strings"

	"github.com/nsys-agent/nsys-agent/nsys/procs"
)

// TargetMarkerEnv is put in a target's environment when nsys-agent launches it under
// nsys, set to the session's name (unique on the host while the session exists), so that
// every process of the server can be found from /proc whatever became of the process
// tree: a worker that called setsid (Ray's raylet and workers under vLLM do), a tree
// reparented to init after its nsys front-end died, a rank left over by an agent killed
// mid-way. The server's process group alone missed such processes: on the H200 a
// launch-mode server's port was still held a minute after its agent had ended the
// server's group (docs/gpu-validation.md).
const TargetMarkerEnv = "NSYS_AGENT_TARGET"

// MarkedTargets lists the processes carrying the marker, by session, leaving out nsys'
// own (nsys-launcher, nsys-tee, the session's agent: they inherit it from the front-end
// and end with the session).
func MarkedTargets(r *procs.Reader) (map[string][]procs.Proc, error) {
	by, err := r.ByEnv(TargetMarkerEnv)
	for session, ps := range by {
		ps = withoutNsysHelpers(ps)
		if len(ps) == 0 {
			delete(by, session)
		} else {
			by[session] = ps
		}
	}
	return by, err
}

// TargetProcs lists the processes of session's target still running (see MarkedTargets).
func TargetProcs(r *procs.Reader, session string) []procs.Proc {
	if session == "" {
		return nil
	}
	ps, _ := r.WithEnv(TargetMarkerEnv, session)
	return withoutNsysHelpers(ps)
}

func withoutNsysHelpers(ps []procs.Proc) []procs.Proc {
	out := ps[:0]
	for _, p := range ps {
		if !strings.HasPrefix(p.Comm, "nsys") {
			out = append(out, p)
		}
	}
	return out
}
