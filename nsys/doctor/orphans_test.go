package doctor

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nsys-agent/nsys-agent/nsys"
	"github.com/nsys-agent/nsys-agent/nsys/nsystest"
)

// addProc adds one process to a fake /proc tree's files (see fakeProc): its stat line
// and environment.
func addProc(files map[string]string, pid int, comm string, env ...string) {
	files[fmt.Sprintf("%d/stat", pid)] = fmt.Sprintf("%d (%s) S 1 %d %d 0 -1 4194304 193 0 3 0 0 0 0 0 20 0 1 0 33536 13029376 643 18446744073709551615 0 0 0 0 0 0 0 0 65538 1 0 0 17 1 0 0 0 0 0 0 0 0 0 0 0 0 0\n", pid, comm, pid, pid)
	files[fmt.Sprintf("%d/environ", pid)] = strings.Join(env, "\x00") + "\x00"
}

func TestOrphansOverAFakeProc(t *testing.T) {
	mark := func(s string) string { return nsys.TargetMarkerEnv + "=" + s }
	files := map[string]string{}
	addProc(files, 4190001, "python3", "PATH=/bin", mark("gone"))
	addProc(files, 4190002, "nsys-launcher", mark("gone")) // nsys' own: ends with the session
	addProc(files, 4190003, "python3", mark("live"))
	addProc(files, 4190004, "python3", "PATH=/bin")
	addProc(files, 4190005, "ray::worker", mark("ended"))
	root := fakeProc(t, files)
	s := &state{cfg: Config{ProcRoot: root}, sessions: []nsys.Session{{Name: "live", State: nsys.StateCollection}, {Name: "ended", State: nsys.StateShutdown}}}
	rs := checkOrphans(context.Background(), s)
	if len(rs) != 1 || rs[0].Status != Warn {
		t.Fatalf("%+v", rs)
	}
	f := rs[0].Finding
	for _, want := range []string{"session ended: 4190005 (ray::worker)", "session gone: 4190001 (python3)"} {
		if !strings.Contains(f, want) {
			t.Errorf("finding lacks %q: %s", want, f)
		}
	}
	if strings.Contains(f, "4190002") || strings.Contains(f, "4190003") || strings.Contains(f, "4190004") {
		t.Errorf("finding names a process that is no orphan: %s", f)
	}
	if !strings.Contains(rs[0].Fix, "kill 4190005 4190001") {
		t.Errorf("fix %q", rs[0].Fix)
	}

	s.sessions = []nsys.Session{{Name: "live"}, {Name: "gone"}, {Name: "ended"}}
	if rs := checkOrphans(context.Background(), s); rs[0].Status != OK || !strings.Contains(rs[0].Finding, "3 servers launched by nsys-agent run here, each under its nsys session") {
		t.Errorf("every session listed: %+v", rs)
	}
	s.sessions = nil
	if rs := checkOrphans(context.Background(), s); rs[0].Status != Warn || !strings.Contains(rs[0].Finding, "unknown whether their sessions live") {
		t.Errorf("no sessions list: %+v", rs)
	}
	empty := &state{cfg: Config{ProcRoot: fakeProc(t, map[string]string{})}, sessions: []nsys.Session{}}
	if rs := checkOrphans(context.Background(), empty); rs[0].Status != OK {
		t.Errorf("no marked process: %+v", rs)
	}
}

// A real process marked with a session nsys does not list: the doctor names it.
func TestOrphanOnThisHost(t *testing.T) {
	path := nsystest.Require(t)
	session := fmt.Sprintf("doctor-orphan-%d", time.Now().UnixNano()%1_000_000_000)
	c := exec.Command("sleep", "60")
	c.Env = append(os.Environ(), nsys.TargetMarkerEnv+"="+session)
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Process.Signal(syscall.SIGKILL); _ = c.Wait() })
	for _, r := range Run(context.Background(), Config{Nsys: path, DataDir: t.TempDir(), Listen: "127.0.0.1:0"}) {
		if r.Check != "orphaned servers" {
			continue
		}
		if r.Status != Warn || !strings.Contains(r.Finding, fmt.Sprintf("session %s: %d (sleep)", session, c.Process.Pid)) || !strings.Contains(r.Fix, fmt.Sprint(c.Process.Pid)) {
			t.Errorf("%+v", r)
		}
		return
	}
	t.Error("no orphaned-servers check ran")
}
