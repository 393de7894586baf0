package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/nsys-agent/nsys-agent/nsys"
	"github.com/nsys-agent/nsys-agent/nsys/nsystest"
)

// TestTerminalGoneEndsTheServer: the agent's stderr reader goes away (an ssh session
// closed, a log pipe's reader died) and the terminal hangs up. Before, the agent died of
// SIGPIPE at its next log line and left the server running under nsys with nobody in
// control; now it shuts down as on Ctrl-C: exit 0, the session and its server gone.
func TestTerminalGoneEndsTheServer(t *testing.T) {
	nsysPath := nsystest.Require(t)
	dir := t.TempDir()
	bin := buildInto(t, filepath.Join(dir, "nsys-agent"), ".")
	session := fmt.Sprintf("hup%d", time.Now().UnixNano()%1_000_000_000)
	t.Cleanup(func() { cleanupSessions(session) })
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	ready := filepath.Join(dir, "ready")
	cmd := exec.Command(bin, "run", "--listen", "127.0.0.1:0", "--ready-file", ready, "--data-dir", filepath.Join(dir, "data"),
		"--session", session, "--demo-ranks", "1", "--nsys", nsysPath)
	cmd.Stdout, cmd.Stderr = w, w
	cmd.Env = append(os.Environ(), "TMPDIR="+os.TempDir())
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	deadline := time.Now().Add(60 * time.Second)
	for {
		if b, err := os.ReadFile(ready); err == nil && len(b) > 0 {
			break
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			t.Fatal("the agent did not become ready in 60 s")
		}
		time.Sleep(100 * time.Millisecond)
	}
	r.Close() // nobody reads the agent's output any more
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("the agent ended with %v, want exit 0 after finishing its shutdown", err)
		}
	case <-time.After(90 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatal("the agent did not end 90 s after SIGHUP")
	}
	list, err := nsys.ListSessions(context.Background(), nsys.NewExecRunner(nsysPath))
	if err != nil {
		t.Fatal(err)
	}
	if s, ok := nsys.Lookup(list, session); ok && s.State != nsys.StateShutdown {
		t.Errorf("session %s is still %s: its server outlived the agent", session, s.State)
	}
}
