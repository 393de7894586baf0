package nsys

import (
	"os/exec"
	"slices"
	"testing"
	"time"

	"github.com/nsys-agent/nsys-agent/nsys/procs"
)

// TestSessionProcesses finds a session's processes in the fake /proc of nsys/procs: a
// real `nsys launch --session-new=probe-tree` tree (session ID 1016019) on nsys 2022.4.2.
func TestSessionProcesses(t *testing.T) {
	r, err := procs.New("procs/testdata/proc")
	if err != nil {
		t.Fatal(err)
	}
	agents := []struct {
		session string
		want    []int
	}{
		{"probe-tree", []int{16019}},
		{"probe-tree-2", []int{16050}}, // a name that starts with another session's
		{"probe", nil},
		{"nosuch", nil},
	}
	for _, c := range agents {
		if got := sessionAgentPIDs(r, c.session); !slices.Equal(got, c.want) {
			t.Errorf("agent of %q: got %v, want %v", c.session, got, c.want)
		}
	}
	if got := sessionIDOf(r, 16031); got != "1016019" {
		t.Errorf("session id of the target's child: got %q", got)
	}
	for _, pid := range []int{16011, 16027, 1, 99999} { // front-end, nsys-launcher, unreadable, gone
		if got := sessionIDOf(r, pid); got != "" {
			t.Errorf("pid %d carries no session id, got %q", pid, got)
		}
	}
	// The target (sh) and its children; not nsys' helpers, not the front-end.
	if got := sessionPIDs(r, "1016019"); !slices.Equal(got, []int{16028, 16031, 16032}) {
		t.Errorf("processes of session 1016019: got %v", got)
	}
	if got := sessionPIDs(r, ""); got != nil {
		t.Errorf("an empty id matches nothing, got %v", got)
	}
}

// TestPendingStopsFindsAStopByItsArguments: a stop left running is found by its command
// line, and only for its own session.
func TestPendingStopsFindsAStopByItsArguments(t *testing.T) {
	cmd := exec.Command("/bin/sh", "-c", "sleep 30", "nsys", "stop", "--session=pendingtest")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	deadline := time.Now().Add(5 * time.Second)
	for !slices.Contains(PendingStops("pendingtest"), cmd.Process.Pid) {
		if time.Now().After(deadline) {
			t.Fatalf("pid %d not found", cmd.Process.Pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if pids := PendingStops("pendingtest2"); slices.Contains(pids, cmd.Process.Pid) {
		t.Error("another session's stop matched")
	}
}
