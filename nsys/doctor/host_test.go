package doctor

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nsys-agent/nsys-agent/internal/diskspace/diskspacetest"
)

// fakeProc writes files under a fake /proc root: path → content.
func fakeProc(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for p, content := range files {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func uid(n int) func() int { return func() int { return n } }

func TestCheckPerf(t *testing.T) {
	for _, tc := range []struct {
		name     string
		paranoid string // "" = file absent
		euid     int
		status   Status
		finding  string
	}{
		{"root ignores the level", "4\n", 0, OK, "running as root"},
		{"level 2 lets users sample", "2\n", 1000, OK, "perf_event_paranoid 2: --sample-cpu allowed"},
		{"level -1", "-1\n", 1000, OK, "perf_event_paranoid -1"},
		{"level 3 (Debian's default)", "3\n", 1000, Warn, "perf_event_paranoid 3: nsys cannot sample CPUs"},
		{"level 4 (Ubuntu hardening)", "4", 1000, Warn, "perf_event_paranoid 4"},
		{"garbage", "x\n", 1000, Warn, "not a number"},
		{"absent", "", 1000, Warn, "cannot read"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			files := map[string]string{}
			if tc.paranoid != "" {
				files["sys/kernel/perf_event_paranoid"] = tc.paranoid
			}
			s := &state{cfg: Config{ProcRoot: fakeProc(t, files), Euid: uid(tc.euid)}}
			rs := checkPerf(context.Background(), s)
			if len(rs) != 1 || rs[0].Status != tc.status || !strings.Contains(rs[0].Finding, tc.finding) {
				t.Fatalf("got %+v, want %s with %q", rs, tc.status, tc.finding)
			}
			if tc.status == Warn && tc.name != "garbage" && rs[0].Fix == "" {
				t.Error("a warning about sampling must say the fix")
			}
		})
	}
}

func TestCheckDataDir(t *testing.T) {
	base := t.TempDir()
	file := filepath.Join(base, "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		dir     string
		minFree uint64
		status  Status
		finding string
	}{
		{"existing", base, 1, OK, "free at " + base},
		{"not made yet: judged by its parent", filepath.Join(base, "a", "b"), 1, OK, "free at " + filepath.Join(base, "a", "b")},
		{"a file in the way", filepath.Join(file, "data"), 1, Fail, "is not a folder"},
		{"below the floor", base, 1 << 60, Fail, "below the 1024.0 PiB a window needs to start"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rs := checkDataDir(context.Background(), &state{cfg: Config{DataDir: tc.dir, MinFree: tc.minFree}})
			if len(rs) != 1 || rs[0].Status != tc.status || !strings.Contains(rs[0].Finding, tc.finding) {
				t.Fatalf("got %+v, want %s with %q", rs, tc.status, tc.finding)
			}
		})
	}
}

// TestCheckDataDirSmallDisk: a real 8 MiB file system is below the default floor (a
// failure with the numbers) and, with no floor, below a large window (a warning).
func TestCheckDataDirSmallDisk(t *testing.T) {
	dir := diskspacetest.Small(t, 8<<20)
	rs := checkDataDir(context.Background(), &state{cfg: Config{DataDir: dir, MinFree: 100 << 20}})
	if rs[0].Status != Fail || !strings.Contains(rs[0].Finding, "MiB free at "+dir+", below the 100.0 MiB a window needs") {
		t.Errorf("got %+v", rs)
	}
	rs = checkDataDir(context.Background(), &state{cfg: Config{DataDir: dir}})
	if rs[0].Status != Warn || !strings.Contains(rs[0].Finding, "2 GB") {
		t.Errorf("got %+v", rs)
	}
}

func TestCheckTmpdir(t *testing.T) {
	t.Setenv("TMPDIR", t.TempDir())
	if rs := checkTmpdir(context.Background(), &state{}); rs[0].Status == Fail {
		t.Errorf("a writable TMPDIR: %+v", rs)
	}
	t.Setenv("TMPDIR", "/nonexistent/tmp")
	rs := checkTmpdir(context.Background(), &state{})
	if rs[0].Status != Fail || !strings.Contains(rs[0].Finding, "cannot write in /nonexistent/tmp") || rs[0].Fix == "" {
		t.Errorf("an unwritable TMPDIR: %+v", rs)
	}
}

func TestCheckPort(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	busy := l.Addr().String()
	for _, tc := range []struct {
		listen  string
		status  Status
		finding string
		fix     string
	}{
		{"127.0.0.1:0", OK, "is free", ""},
		{busy, Fail, busy + " is in use by another program", "ss -ltnp"},
		{"256.1.1.1:80", Fail, "cannot listen on 256.1.1.1:80", "an address of this host"},
	} {
		rs := checkPort(context.Background(), &state{cfg: Config{Listen: tc.listen}})
		if len(rs) != 1 || rs[0].Status != tc.status || !strings.Contains(rs[0].Finding, tc.finding) || !strings.Contains(rs[0].Fix, tc.fix) {
			t.Errorf("%s: got %+v, want %s with %q", tc.listen, rs, tc.status, tc.finding)
		}
	}
}
