package nsys

// The session's processes, read from /proc through nsys/procs: its agent
// (`nsys --start-agent --session-name=NAME`, what must be ended after a hung stop) and the
// target's processes (they carry NSYS_PROFILING_SESSION_ID in their environment).

import (
	"context"
	"fmt"
	"slices"
	"syscall"
	"time"

	"github.com/nsys-agent/nsys-agent/nsys/procs"
)

// envSessionID is set by nsys in the environment of every process of a target: seen on
// 2022.4.2 as NSYS_PROFILING_SESSION_ID=1016019, the session's ID in `nsys sessions list`
// (procs/testdata/proc). nsys' own helpers (nsys-launcher, nsys-tee) do not carry it.
const envSessionID = "NSYS_PROFILING_SESSION_ID"

// SessionAgentPIDs finds the session's agent, `nsys --start-agent --session-name=NAME`.
// It runs detached from the front-end (on 2022.4.2: parent 1, its own process session),
// so only its command line finds it.
func SessionAgentPIDs(session string) []int { return sessionAgentPIDs(procs.Default, session) }

func sessionAgentPIDs(r *procs.Reader, session string) []int {
	name := "--session-name=" + session
	pids, _ := r.Find(func(args []string) bool {
		return slices.Contains(args, "--start-agent") && slices.Contains(args, name)
	})
	return pids
}

// SessionIDOf reads NSYS_PROFILING_SESSION_ID from a process's environment, mapping
// target PIDs to sessions ("" if absent or unreadable).
func SessionIDOf(pid int) string { return sessionIDOf(procs.Default, pid) }

func sessionIDOf(r *procs.Reader, pid int) string {
	id, _, _ := r.LookupEnv(pid, envSessionID)
	return id
}

// sessionPIDs finds the processes that carry the session's ID (see envSessionID),
// leaving out this process: it carries the ID itself when it was started under nsys.
func sessionPIDs(r *procs.Reader, id string) []int {
	if id == "" {
		return nil
	}
	ps, _ := r.WithEnv(envSessionID, id)
	pids := make([]int, len(ps))
	for i, p := range ps {
		pids[i] = p.PID
	}
	return pids
}

// endSessionAgent ends the session's `nsys --start-agent` processes (SIGTERM, then
// SIGKILL after 5 s) and says which it ended. After a hung stop the agent would otherwise
// keep the session in Generation for good.
func (c *Controller) endSessionAgent() []string {
	var ended []string
	for _, pid := range SessionAgentPIDs(c.Session) {
		if _, err := procs.Terminate(pid, 5*time.Second); err == nil {
			ended = append(ended, fmt.Sprintf("ended the session agent (pid %d)", pid))
		}
	}
	return ended
}

// Kill ends everything of the session, target included: `nsys shutdown --kill=sigterm`,
// then SIGKILL for any process still carrying the session's id in its environment
// (NSYS_PROFILING_SESSION_ID) and for the session's agent. For cleanup after a crash or
// a failed test; a normal stop goes through the front-end (Process.Terminate).
func (c *Controller) Kill(ctx context.Context) {
	id := ""
	if list, err := c.Sessions(ctx); err == nil {
		if s, ok := Lookup(list, c.Session); ok {
			id = s.ID
		}
	}
	_, _ = c.Runner.Run(ctx, Call{Args: []string{"shutdown", "--session=" + c.Session, "--kill=sigterm"}, Timeout: 30 * time.Second})
	for _, pid := range sessionPIDs(procs.Default, id) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	for _, pid := range SessionAgentPIDs(c.Session) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

// PendingStops lists the `nsys stop --session=NAME` processes still running: a previous
// agent killed while finalizing leaves its stop behind, and the stop keeps writing the
// report into the window folder after the agent is gone.
func PendingStops(session string) []int {
	pids, _ := procs.Default.Find(func(argv []string) bool {
		return slices.Contains(argv, "stop") && slices.Contains(argv, "--session="+session)
	})
	return pids
}
