package doctor

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nsys-agent/nsys-agent/nsys"
)

// probeTimeout bounds the whole nsys probe (--version and five --help calls take a few
// hundred milliseconds on nsys 2022.4; a hung nsys must not hang the doctor).
const probeTimeout = 60 * time.Second

// checkNsys finds nsys as the agent would, runs it, and says which arming modes and
// features it offers.
func checkNsys(ctx context.Context, s *state) []Result {
	path, err := nsys.Locate(s.cfg.Nsys)
	if err != nil {
		return []Result{{Check: "nsys", Status: Fail, Finding: notFoundFinding(err), Fix: nsys.InstallHint}}
	}
	s.path = path
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	info, err := nsys.Probe(ctx, nsys.NewExecRunner(path))
	if err != nil {
		return []Result{{Check: "nsys", Status: Fail,
			Finding: fmt.Sprintf("nsys at %s does not run: %s", path, firstLine(err.Error(), 300)),
			Fix:     "reinstall Nsight Systems, or point --nsys / NSYS_AGENT_NSYS at a working nsys"}}
	}
	s.info = info
	return []Result{
		{Check: "nsys", Status: OK, Finding: fmt.Sprintf("nsys %s at %s", info.Version, path)},
		{Check: "nsys capabilities", Status: OK, Finding: capsFinding(info.Caps)},
	}
}

// notFoundFinding names where nsys was looked for, without the install hint (that is
// the fix).
func notFoundFinding(err error) string {
	var nf *nsys.NotInstalledError
	if errors.As(err, &nf) {
		return "nsys not found (looked in: " + strings.Join(nf.Looked, ", ") + ")"
	}
	return firstLine(err.Error(), 300)
}

// capsFinding says which arming modes this nsys allows (DESIGN: detected from --help,
// never from version numbers).
func capsFinding(c nsys.Caps) string {
	arm := "launch (no --start-later in this nsys: windows use nsys launch + start)"
	if c.StartLater {
		arm = "start-later (default) or launch"
	}
	cp := "cuda-profiler windows: one per server (no --capture-range-end)"
	if c.CaptureRangeEnd {
		cp = "cuda-profiler windows: repeatable"
	}
	return "arming: " + arm + "; " + cp
}

// checkSessions runs `nsys sessions list`, which every start and stop relies on, and
// counts the sessions already capturing (another agent's, or one left behind).
func checkSessions(ctx context.Context, s *state) []Result {
	if s.info == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	list, err := nsys.ListSessions(ctx, nsys.NewExecRunner(s.path))
	if err != nil {
		return []Result{{Check: "nsys sessions", Status: Fail,
			Finding: "nsys sessions list failed: " + firstLine(err.Error(), 300),
			Fix:     "run `" + s.path + " sessions list` by hand to see why; the agent checks every start and stop against it"}}
	}
	s.sessions = append([]nsys.Session{}, list...) // read: not nil, even with none listed
	var capturing []string
	for _, se := range list {
		if se.State.Collecting() {
			capturing = append(capturing, se.Name)
		}
	}
	r := Result{Check: "nsys sessions", Status: OK, Finding: fmt.Sprintf("%d nsys sessions on this host, none capturing", len(list))}
	if len(capturing) > 0 {
		r.Finding = fmt.Sprintf("%d nsys sessions on this host, capturing: %s", len(list), strings.Join(capturing, ", "))
		r.Status = Warn
		r.Fix = "a capture of another session costs GPU and disk at the same time; see `nsys-agent sessions`, end a stray one with `nsys shutdown --session=NAME`"
	}
	return []Result{r}
}
