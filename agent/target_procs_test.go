package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nsys-agent/nsys-agent/nsys"
	"github.com/nsys-agent/nsys-agent/nsys/nsystest"
	"github.com/nsys-agent/nsys-agent/nsys/procs"
)

// A worker of the server that left its process group (setsid, as Ray's workers do) and
// ignores SIGTERM. When the nsys front-end is SIGKILLed (the OOM killer), nothing of nsys
// ends the target: the agent does, the worker included (through the session's id when the
// session is still listed, as here; through the target's marker when it is not, see
// TestPreviousTargetMarkedProcessesEnded).
func TestWorkerOutsideGroupEndedAfterFrontEndKilled(t *testing.T) {
	ta, outside := startWithOutsideWorker(t)
	if err := syscall.Kill(ta.sup.PID(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ta.sup.Done():
	case <-time.After(90 * time.Second):
		t.Fatal("the supervisor did not notice the front-end's death")
	}
	assertMarkedGone(t, ta, outside)
	log, _ := os.ReadFile(filepath.Join(ta.store.Root, "target.log"))
	if !regexp.MustCompile(`running: true; [2-9] processes marked NSYS_AGENT_TARGET=\w+\) .*ending them`).Match(log) {
		t.Errorf("target.log should say what the agent ended:\n%s", log)
	}
}

// The same worker when the target is stopped as on shutdown (SIGTERM to the front-end):
// nothing of the target may outlive the stop, whoever ends it (nsys 2022.4 ends the
// worker itself).
func TestWorkerOutsideGroupEndedWithTarget(t *testing.T) {
	ta, outside := startWithOutsideWorker(t)
	if err := ta.sup.Stop(20 * time.Second); err != nil {
		t.Errorf("stop: %v", err)
	}
	assertMarkedGone(t, ta, outside)
}

func startWithOutsideWorker(t *testing.T) (*testAgent, []int) {
	worker := `setsid sh -c "trap '' TERM; while :; do sleep 1; done" &`
	cmd := []string{"/bin/sh", "-c", "echo target up; " + worker + " while :; do sleep 1; done"}
	ta := newTestAgent(t, nsystest.Require(t), nil, nsys.ModeLaunch, cmd, 0)
	var outside []int
	deadline := time.Now().Add(30 * time.Second)
	for len(outside) == 0 && time.Now().Before(deadline) {
		group := ta.sup.ServerGroup()
		for _, p := range markedTarget(ta.ctl.Session) {
			if pgid, err := syscall.Getpgid(p.PID); err == nil && group > 1 && pgid != group {
				outside = append(outside, p.PID)
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	if len(outside) == 0 {
		t.Fatalf("no marked worker outside the server's group %d: %+v", ta.sup.ServerGroup(), markedTarget(ta.ctl.Session))
	}
	return ta, outside
}

func assertMarkedGone(t *testing.T, ta *testAgent, outside []int) {
	t.Helper()
	for _, pid := range outside {
		if procs.Alive(pid) {
			t.Errorf("the worker outside the group is still running: %s", procs.Default.Describe(pid))
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	if left := markedTarget(ta.ctl.Session); len(left) != 0 {
		t.Errorf("marked processes left: %+v", left)
	}
}

// An agent killed outright leaves its server behind; the next agent on the same data dir
// ends every process carrying the old target's marker, whatever its group, before it
// launches anew.
func TestPreviousTargetMarkedProcessesEnded(t *testing.T) {
	runner := nsys.NewExecRunner(nsystest.Require(t))
	dir := t.TempDir()
	session := fmt.Sprintf("gone%d", time.Now().UnixNano()%1_000_000_000)
	c := exec.Command("/bin/sh", "-c", "trap '' TERM; setsid sleep 300 & sleep 300")
	c.Env = withTargetMarker(os.Environ(), session)
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	go c.Wait()
	t.Cleanup(func() {
		for _, p := range markedTarget(session) {
			_ = syscall.Kill(p.PID, syscall.SIGKILL)
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for len(markedTarget(session)) < 3 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := len(markedTarget(session)); n < 3 {
		t.Fatalf("want the shell and two sleeps marked, got %d", n)
	}
	// The record names a front-end that is gone and no group: only the marker finds them.
	if err := SaveTarget(dir, &TargetRecord{Session: session, Mode: "launch", PID: 0, StartedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if _, ok := previousTarget(context.Background(), dir, runner, slog.New(slog.NewTextHandler(io.Discard, nil))); ok {
		t.Fatal("a record whose front-end is gone was adopted")
	}
	if left := markedTarget(session); len(left) != 0 {
		t.Errorf("the previous server's processes are still running: %+v", left)
	}
}

func TestWithTargetMarker(t *testing.T) {
	base := make([]string, 1, 4)
	base[0] = "A=1"
	got := withTargetMarker(base, "s1")
	if len(got) != 2 || got[1] != nsys.TargetMarkerEnv+"=s1" {
		t.Errorf("got %q", got)
	}
	// The caller's slice is not written through its spare capacity.
	if other := append(base, "B=2"); other[1] != "B=2" || got[1] != nsys.TargetMarkerEnv+"=s1" {
		t.Errorf("aliased: %q %q", other, got)
	}
	if env := withTargetMarker(nil, "s2"); len(env) < 2 || env[len(env)-1] != nsys.TargetMarkerEnv+"=s2" {
		t.Errorf("nil env: %q", env[len(env)-1])
	}
	if markedTarget("") != nil {
		t.Error("an empty session matched processes")
	}
}

func TestServerLeftErrorSaysWhatToDo(t *testing.T) {
	err := errors.Join(errors.New("nsys (pid 7) did not end"), &ServerLeftError{Processes: []string{"pid 42 (python3), state D, in the kernel at os_schedule"}})
	var left *ServerLeftError
	if !errors.As(err, &left) || len(left.Processes) != 1 {
		t.Fatalf("not found in %v", err)
	}
	for _, want := range []string{"1 of the server's processes survived SIGKILL", "pid 42 (python3), state D", "nvidia-smi", "/proc/PID/stack"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q lacks %q", err, want)
		}
	}
}
