//go:build unix

package torchprof

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// notBlocked runs f and fails the test when it is still running after 20 s (it
// should take microseconds): then it feeds EOF to whatever waits on the FIFO, so the
// blocked call ends and the test reports instead of hanging.
func notBlocked(t *testing.T, fifo string, f func() error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- f() }()
	select {
	case err := <-done:
		return err
	case <-time.After(20 * time.Second):
	}
	for {
		// A reader blocked in open(2) counts as a reader, so this open succeeds.
		if w, err := os.OpenFile(fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			w.Close()
		}
		select {
		case <-done:
			t.Fatalf("blocked on %s until the test wrote to it", fifo)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// TestRefusesNonRegularFiles: a FIFO named like a trace blocked merge and analyze
// forever (open waits for a writer, reads for data); a device or socket named like one
// is no trace either. Each is refused at once, given directly or found in a directory,
// with the path and what it is.
func TestRefusesNonRegularFiles(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "p-TP-0.trace.json.gz")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	sqliteFifo := filepath.Join(t.TempDir(), "report.sqlite")
	if err := syscall.Mkfifo(sqliteFifo, 0o644); err != nil {
		t.Fatal(err)
	}
	device := filepath.Join(t.TempDir(), "d-TP-0.trace.json.gz")
	if err := os.Symlink("/dev/null", device); err != nil {
		t.Fatal(err)
	}
	subdir := filepath.Join(t.TempDir(), "s-TP-0.trace.json.gz")
	if err := os.Mkdir(subdir, 0o755); err != nil {
		t.Fatal(err)
	}
	sockDir := t.TempDir()
	sock := filepath.Join(sockDir, "u-TP-0.trace.json.gz")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ctx := context.Background()
	out := filepath.Join(t.TempDir(), "m.trace.json.gz")
	for _, tc := range []struct {
		name, path, what string
		call             func() error
	}{
		{"merge a FIFO", fifo, "a named pipe (FIFO)", func() error {
			_, err := Merge(ctx, RankFilesFromPaths([]string{fifo}), out, MergeOptions{})
			return err
		}},
		{"merge a FIFO without clock alignment", fifo, "a named pipe (FIFO)", func() error {
			_, err := Merge(ctx, RankFilesFromPaths([]string{fifo}), out, MergeOptions{NoClockAlign: true})
			return err
		}},
		{"analyze a FIFO", fifo, "a named pipe (FIFO)", func() error {
			_, err := AnalyzeKineto(ctx, RankFilesFromPaths([]string{fifo}))
			return err
		}},
		{"discover a FIFO", fifo, "a named pipe (FIFO)", func() error {
			_, err := Discover(dir)
			return err
		}},
		{"analyze an SQLite FIFO", sqliteFifo, "a named pipe (FIFO)", func() error {
			_, err := AnalyzeNsysSQLite(ctx, sqliteFifo)
			return err
		}},
		{"merge a device", device, "a device", func() error {
			_, err := Merge(ctx, RankFilesFromPaths([]string{device}), out, MergeOptions{})
			return err
		}},
		{"discover a device", device, "a device", func() error {
			_, err := Discover(filepath.Dir(device))
			return err
		}},
		{"analyze a directory", subdir, "a directory", func() error {
			_, err := AnalyzeKineto(ctx, RankFilesFromPaths([]string{subdir}))
			return err
		}},
		{"discover a directory", subdir, "a directory", func() error {
			_, err := Discover(filepath.Dir(subdir))
			return err
		}},
		{"bundle a FIFO", fifo, "a named pipe (FIFO)", func() error {
			_, err := WritePerfettoBundle(ctx, RankFilesFromPaths([]string{fifo}), out, BundleOptions{})
			return err
		}},
		{"bundle a device", device, "a device", func() error {
			_, err := WritePerfettoBundle(ctx, RankFilesFromPaths([]string{device}), out, BundleOptions{})
			return err
		}},
		{"merge a socket", sock, "a socket", func() error {
			_, err := Merge(ctx, RankFilesFromPaths([]string{sock}), out, MergeOptions{})
			return err
		}},
		{"discover a socket", sock, "a socket", func() error {
			_, err := Discover(sockDir)
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := notBlocked(t, tc.path, tc.call)
			if !errors.Is(err, ErrNotRegular) || !strings.Contains(err.Error(), tc.path) || !strings.Contains(err.Error(), tc.what) {
				t.Errorf("error %v, want ErrNotRegular naming %s as %s", err, tc.path, tc.what)
			}
		})
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("a refused merge left %s behind", out)
	}
}
