package doctor

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/nsys-agent/nsys-agent/nsys"
	"github.com/nsys-agent/nsys-agent/nsys/procs"
)

// checkOrphans finds servers nsys-agent launched that no nsys session holds any more:
// processes carrying nsys.TargetMarkerEnv whose session `nsys sessions list` does not list
// (or lists as Shutdown). Their agent and nsys are gone (kill -9, a crash, a reboot of the
// agent's container) and nothing will end them; they keep GPU memory and ports a new
// server needs. A warning, with their pids and how to end them: a capture still works.
func checkOrphans(ctx context.Context, s *state) []Result {
	const name = "orphaned servers"
	r, err := procs.New(s.cfg.ProcRoot)
	if err != nil {
		return nil
	}
	by, err := nsys.MarkedTargets(r)
	if err != nil {
		return []Result{{Check: name, Status: Warn, Finding: "cannot read processes: " + firstLine(err.Error(), 200),
			Fix: "run the doctor where it can read /proc"}}
	}
	if len(by) == 0 {
		return []Result{{Check: name, Status: OK, Finding: "no server launched by nsys-agent runs on this host without its nsys session"}}
	}
	if s.sessions == nil {
		return []Result{{Check: name, Status: Warn,
			Finding: fmt.Sprintf("%d servers launched by nsys-agent run here (sessions %s); without `nsys sessions list` it is unknown whether their sessions live", len(by), strings.Join(slices.Sorted(maps.Keys(by)), ", ")),
			Fix:     "fix the nsys checks above, then run the doctor again"}}
	}
	live := map[string]bool{}
	for _, se := range s.sessions {
		if se.State != nsys.StateShutdown {
			live[se.Name] = true
		}
	}
	var orphans []string
	var pids []string
	for _, session := range slices.Sorted(maps.Keys(by)) {
		if live[session] {
			continue
		}
		ps := by[session]
		var ds []string
		for i, p := range ps {
			pids = append(pids, fmt.Sprint(p.PID))
			if i < 8 {
				ds = append(ds, fmt.Sprintf("%d (%s)", p.PID, p.Comm))
			}
		}
		if len(ps) > 8 {
			ds = append(ds, fmt.Sprintf("%d more", len(ps)-8))
		}
		orphans = append(orphans, fmt.Sprintf("session %s: %s", session, strings.Join(ds, ", ")))
	}
	if len(orphans) == 0 {
		return []Result{{Check: name, Status: OK, Finding: fmt.Sprintf("%d servers launched by nsys-agent run here, each under its nsys session", len(by))}}
	}
	return []Result{{Check: name, Status: Warn,
		Finding: "servers launched by nsys-agent run with no nsys session left (their agent and nsys are gone; nothing will end them): " + strings.Join(orphans, "; "),
		Fix:     "they hold GPU memory and ports a new server needs: start nsys-agent run on the data dir that launched them (it ends them first), or end them: kill " + strings.Join(pids, " ") + " (kill -9 if they ignore it)"}}
}
