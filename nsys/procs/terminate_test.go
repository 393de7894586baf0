package procs

import (
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
