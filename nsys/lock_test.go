package nsys

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestLockFile: a second holder waits until the first lets go, including within one
// process (Terminate waits for a Launch in another goroutine), and gives up with its
// context.
func TestLockFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "launch.lock")
	ctx := context.Background()
	unlock, err := lockFile(ctx, path)
	if err != nil {
		t.Fatal(err)
	}

	short, cancel := context.WithTimeout(ctx, 150*time.Millisecond)
	defer cancel()
	if _, err := lockFile(short, path); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a held lock must time out with the caller's context, got %v", err)
	}

	got := make(chan error, 1)
	go func() {
		u, err := lockFile(ctx, path)
		if err == nil {
			u()
		}
		got <- err
	}()
	select {
	case err := <-got:
		t.Fatalf("second holder got the lock while the first held it (err %v)", err)
	case <-time.After(200 * time.Millisecond):
	}
	unlock()
	select {
	case err := <-got:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("second holder did not get the lock after the first let go")
	}

	if _, err := lockFile(ctx, filepath.Join(t.TempDir(), "no-such-dir", "launch.lock")); err == nil || !strings.Contains(err.Error(), "taking launch lock") {
		t.Errorf("an unopenable lock file: got %v", err)
	}
}

// TestLockFileOtherProcess: the lock is host-wide. This test binary, run again as a
// second process, holds the lock until its stdin closes; lockFile here waits for it.
func TestLockFileOtherProcess(t *testing.T) {
	if path := os.Getenv("NSYS_TEST_HOLD_LOCK"); path != "" {
		unlock, err := lockFile(context.Background(), path)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Println("locked")
		_, _ = io.Copy(io.Discard, os.Stdin)
		unlock()
		return
	}
	path := filepath.Join(t.TempDir(), "launch.lock")
	cmd := exec.Command(os.Args[0], "-test.run=^TestLockFileOtherProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), "NSYS_TEST_HOLD_LOCK="+path)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	lines := bufio.NewScanner(stdout)
	if !lines.Scan() || lines.Text() != "locked" {
		t.Fatalf("the other process did not take the lock: %q %v", lines.Text(), lines.Err())
	}

	short, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	if _, err := lockFile(short, path); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("lock held by another process: want the context's error, got %v", err)
	}
	stdin.Close() // the other process lets go
	ctx, cancel2 := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel2()
	unlock, err := lockFile(ctx, path)
	if err != nil {
		t.Fatalf("lock not taken after the other process let go: %v", err)
	}
	unlock()
}
