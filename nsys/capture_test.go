package nsys

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/nsys-agent/nsys-agent/nsys/procs"
)

// fakeAgentProc writes a proc tree with process pid running args, holding open (as fd
// links) the given files.
func fakeAgentProc(t *testing.T, root string, pid string, args string, open ...string) {
	t.Helper()
	dir := filepath.Join(root, pid)
	if err := os.MkdirAll(filepath.Join(dir, "fd"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "cmdline"), []byte(args), 0o644); err != nil {
		t.Fatal(err)
	}
	for i, f := range open {
		if err := os.Symlink(f, filepath.Join(dir, "fd", string(rune('3'+i)))); err != nil {
			t.Fatal(err)
		}
	}
}

// TestCaptureBytes: the stream is the .qdstrm the session's agent holds open, whatever
// its name; another session's stream and the agent's other files do not count.
func TestCaptureBytes(t *testing.T) {
	tmp := t.TempDir()
	file := func(name string, size int) string {
		p := filepath.Join(tmp, name)
		if err := os.WriteFile(p, make([]byte, size), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	ours := file("nsys-report-2fb3.qdstrm", 152246)
	theirs := file("nsys-report-9a9a.qdstrm", 999)
	lock := file("SessionManager-2022.4.2.1.lock", 5)

	root := t.TempDir()
	fakeAgentProc(t, root, "10677", "/usr/lib/nsight-systems/target-linux-x64/nsys\x00--start-agent\x00--session-name=mine\x00--shm-name=q\x00", lock, ours, "socket:[42]")
	fakeAgentProc(t, root, "10800", "nsys\x00--start-agent\x00--session-name=other\x00", theirs)
	fakeAgentProc(t, root, "10900", "nsys\x00--start-agent\x00--session-name=idle\x00", lock)
	r, err := procs.New(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		session string
		want    int64
		err     bool
	}{
		{"mine", 152246, false},
		{"other", 999, false},
		{"idle", 0, true},   // no capture open
		{"absent", 0, true}, // no agent
		{"mine-2", 0, true}, // a prefix is not the name
	} {
		got, err := captureBytes(r, tc.session)
		if tc.err != (err != nil) || got != tc.want {
			t.Errorf("%s: %d, %v; want %d (error %v)", tc.session, got, err, tc.want, tc.err)
		}
		if err != nil && !errors.Is(err, ErrNotMeasurable) {
			t.Errorf("%s: %v is not ErrNotMeasurable", tc.session, err)
		}
	}
}
