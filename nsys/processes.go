package nsys

// The session's processes, read from /proc: its agent
// (`nsys --start-agent --session-name=NAME`, what must be ended after a hung stop) and the
// target's processes (they carry NSYS_PROFILING_SESSION_ID in their environment).

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// SessionAgentPIDs finds `nsys --start-agent --session-name=NAME` processes in /proc.
func SessionAgentPIDs(session string) []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	want := "--session-name=" + session
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		raw, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(strings.TrimRight(string(raw), "\x00"), "\x00")
		hasAgent, hasName := false, false
		for _, a := range args {
			if a == "--start-agent" {
				hasAgent = true
			}
			if a == want {
				hasName = true
			}
		}
		if hasAgent && hasName {
			pids = append(pids, pid)
		}
	}
	return pids
}

// SessionIDOf reads NSYS_PROFILING_SESSION_ID from a process's environment, mapping
// target PIDs to sessions ("" if absent or unreadable).
func SessionIDOf(pid int) string {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
	if err != nil {
		return ""
	}
	for _, kv := range strings.Split(string(raw), "\x00") {
		if v, ok := strings.CutPrefix(kv, "NSYS_PROFILING_SESSION_ID="); ok {
			return v
		}
	}
	return ""
}

// endSessionAgent ends the session's `nsys --start-agent` processes (SIGTERM, then
// SIGKILL after 5 s) and says which it ended. After a hung stop the agent would otherwise
// keep the session in Generation for good.
func (c *Controller) endSessionAgent() []string {
	var ended []string
	for _, pid := range SessionAgentPIDs(c.Session) {
		if err := terminate(pid, 5*time.Second); err == nil {
			ended = append(ended, fmt.Sprintf("ended the session agent (pid %d)", pid))
		}
	}
	return ended
}

// terminate sends SIGTERM and waits up to grace for the process to go, then SIGKILLs it.
func terminate(pid int, grace time.Duration) error {
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		return err
	}
	deadline := time.Now().Add(grace)
	for time.Now().Before(deadline) {
		if syscall.Kill(pid, 0) != nil {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return syscall.Kill(pid, syscall.SIGKILL)
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
	if id != "" {
		entries, _ := os.ReadDir("/proc")
		for _, e := range entries {
			pid, err := strconv.Atoi(e.Name())
			if err == nil && pid != os.Getpid() && SessionIDOf(pid) == id {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
	for _, pid := range SessionAgentPIDs(c.Session) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}
