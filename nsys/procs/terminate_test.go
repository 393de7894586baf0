package procs

import (
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

func TestTerminateProcessAndGroup(t *testing.T) {
	// A process that ends on SIGTERM.
	c := exec.Command("sleep", "30")
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	go c.Wait()
	if killed, err := Terminate(c.Process.Pid, 5*time.Second); err != nil || killed {
		t.Errorf("sleep: killed %v, %v", killed, err)
	}
	// A group whose leader ignores SIGTERM: killed after grace, and said so.
	g := exec.Command("sh", "-c", "trap '' TERM; sleep 30 & wait")
	g.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := g.Start(); err != nil {
		t.Fatal(err)
	}
	go g.Wait()
	time.Sleep(100 * time.Millisecond)
	if killed, err := Terminate(-g.Process.Pid, 300*time.Millisecond); err != nil || !killed {
		t.Errorf("group ignoring SIGTERM: killed %v, %v", killed, err)
	}
	if Alive(-g.Process.Pid) {
		t.Error("the group is still there")
	}
	for _, bad := range []int{0, -1, 1} {
		if _, err := Terminate(bad, time.Millisecond); err == nil {
			t.Errorf("signalled %d", bad)
		}
	}
}

// A marked tree whose worker left the process group (setsid) and ignores SIGTERM: killing
// the group misses it, TerminateAll over the marker ends it.
func TestTerminateAllMarked(t *testing.T) {
	marker := fmt.Sprintf("terminate-all-%d-%d", os.Getpid(), time.Now().UnixNano())
	c := exec.Command("sh", "-c", "setsid sh -c \"trap '' TERM; sleep 60 & wait\" & sleep 60 & wait")
	c.Env = append(os.Environ(), "PROCS_TEST_MARK="+marker)
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	go c.Wait()
	find := func() []int {
		ps, _ := Default.WithEnv("PROCS_TEST_MARK", marker)
		var pids []int
		for _, p := range ps {
			pids = append(pids, p.PID)
		}
		return pids
	}
	t.Cleanup(func() {
		for _, pid := range find() {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for len(find()) < 5 && time.Now().Before(deadline) { // sh, sleep, setsid'd sh, its sleep (+ setsid before exec)
		time.Sleep(20 * time.Millisecond)
	}
	outside := 0
	for _, pid := range find() {
		if pgid, err := syscall.Getpgid(pid); err == nil && pgid != c.Process.Pid {
			outside++
		}
	}
	if outside == 0 {
		t.Fatalf("the setsid'd worker should have left the group: %v", find())
	}
	if _, err := Terminate(-c.Process.Pid, 300*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if len(find()) == 0 {
		t.Fatal("the worker outside the group should have outlived the group's end")
	}
	killed, left := TerminateAll(find, 300*time.Millisecond)
	if !killed || len(left) != 0 {
		t.Errorf("killed %v, left %v", killed, left)
	}
	if pids := find(); len(pids) != 0 {
		t.Errorf("still running: %v", pids)
	}
	if killed, left := TerminateAll(find, time.Second); killed || left != nil {
		t.Errorf("nothing to end: killed %v, left %v", killed, left)
	}
}
