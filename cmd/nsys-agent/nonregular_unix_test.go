//go:build unix

package main

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestMergeAnalyzeRefuseFIFO: a FIFO named like a trace or export, given directly or in
// a directory, made merge and analyze hang forever; they must fail at once saying what
// it is.
func TestMergeAnalyzeRefuseFIFO(t *testing.T) {
	traceDir, sqliteDir := t.TempDir(), t.TempDir()
	trace := filepath.Join(traceDir, "p-TP-0.trace.json.gz")
	export := filepath.Join(sqliteDir, "report.sqlite")
	for _, p := range []string{trace, export} {
		if err := syscall.Mkfifo(p, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out := filepath.Join(t.TempDir(), "m.trace.json.gz")
	for _, tc := range []struct {
		fifo string
		args []string
	}{
		{trace, []string{"merge", trace, "-o", out}},
		{trace, []string{"merge", traceDir, "-o", out}},
		{trace, []string{"analyze", trace}},
		{trace, []string{"analyze", traceDir}},
		{export, []string{"analyze", export}},
		{export, []string{"analyze", sqliteDir}},
	} {
		r := runNotBlocked(t, tc.fifo, tc.args...)
		if r.code != exitFailed || !strings.Contains(r.stderr, tc.fifo+" is a named pipe (FIFO), not a regular file") {
			t.Errorf("%v: exit %d, stderr %q; want exit %d naming the FIFO", tc.args, r.code, r.stderr, exitFailed)
		}
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("a refused merge left %s behind", out)
	}
}

// runNotBlocked runs the CLI; when it is still running after 20 s (it should take
// microseconds), it feeds EOF to the FIFO so the command ends and the test fails
// instead of hanging.
func runNotBlocked(t *testing.T, fifo string, args ...string) result {
	t.Helper()
	done := make(chan result, 1)
	go func() {
		var r result
		defer func() { done <- r }()
		r = runCLI(t, args...)
	}()
	select {
	case r := <-done:
		return r
	case <-time.After(20 * time.Second):
	}
	for {
		// A reader blocked in open(2) counts as a reader, so this open succeeds.
		if w, err := os.OpenFile(fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			w.Close()
		}
		select {
		case r := <-done:
			t.Fatalf("%v blocked on %s until the test wrote to it (exit %d, %s)", args, fifo, r.code, r.stderr)
		case <-time.After(100 * time.Millisecond):
		}
	}
}
