package nsys_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/nsys-agent/nsys-agent/nsys"
	"github.com/nsys-agent/nsys-agent/nsys/nsystest"
)

// cpuTarget is a small CPU program: a shell loop that works and sleeps.
var cpuTarget = []string{"/bin/sh", "-c", "while :; do i=0; while [ $i -lt 3000 ]; do i=$((i+1)); done; sleep 0.05; done"}

func uniqueSession(prefix string) string {
	return fmt.Sprintf("%s-%d-%d", prefix, os.Getpid(), time.Now().UnixNano()%1_000_000)
}

// launched starts cpuTarget under nsys and returns a controller for its session. The
// cleanup ends the target through nsys and checks the session is gone.
func launched(t *testing.T, runner nsys.Runner, info *nsys.Info, mode nsys.Mode, firstOut string) *nsys.Controller {
	t.Helper()
	session := uniqueSession("nsystest")
	args, err := nsys.LaunchArgs(info.Caps, nsys.LaunchSpec{Mode: mode, Session: session, Output: firstOut, Command: cpuTarget})
	if err != nil {
		t.Fatal(err)
	}
	var logBuf nsystest.Buffer
	ctl := &nsys.Controller{Runner: runner, Info: info, Session: session, Mode: mode, FirstOutput: firstOut,
		Log: func(f string, a ...any) { t.Logf(f, a...) }}
	proc, err := nsys.Launch(context.Background(), ctl, args, nsys.ProcOptions{Stdout: &logBuf, Stderr: &logBuf, Env: testEnv()}, logBuf.String, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := proc.Terminate(20 * time.Second); err != nil {
			t.Errorf("terminate: %v", err)
		}
		ctx := context.Background()
		deadline := time.Now().Add(20 * time.Second)
		for {
			list, err := nsys.ListSessions(ctx, runner)
			if err != nil {
				t.Errorf("sessions list: %v", err)
				return
			}
			if s, ok := nsys.Lookup(list, session); !ok || s.State == nsys.StateShutdown {
				if ok {
					// Shutdown rows linger briefly on 2022.4; they are gone once nsys exits.
					t.Logf("session %s left in state Shutdown", session)
				}
				return
			}
			if time.Now().After(deadline) {
				t.Errorf("session %s still listed after the target ended: %+v", session, list)
				ctl.Kill(ctx) // leave nothing behind for the next test
				return
			}
			time.Sleep(200 * time.Millisecond)
		}
	})
	return ctl
}

func testEnv() []string {
	return append(os.Environ(), nsys.LaunchEnv()...)
}

func probeReal(t *testing.T) (nsys.Runner, *nsys.Info) {
	t.Helper()
	path := nsystest.Require(t)
	r := nsys.NewExecRunner(path)
	info, err := nsys.Probe(context.Background(), r)
	if err != nil {
		t.Fatalf("probe %s: %v", path, err)
	}
	return r, info
}

func TestProbeRealNsys(t *testing.T) {
	_, info := probeReal(t)
	if info.Version == "" {
		t.Fatal("no version")
	}
	if len(info.Caps.LaunchOptions) == 0 || !info.Caps.LaunchOptions["--session-new"] || !info.Caps.LaunchOptions["--trace"] {
		t.Errorf("launch options not probed: %v", info.Caps.LaunchOptions)
	}
	if !info.Caps.StartOptions["--output"] || !info.Caps.StartOptions["--session"] {
		t.Errorf("start options not probed: %v", info.Caps.StartOptions)
	}
	t.Logf("nsys %s at %s, importer %q, start-later %v, launch accepts --sample %v, stats %s",
		info.Version, info.Path, info.Importer, info.Caps.StartLater, info.Caps.LaunchAccepts("--sample"), info.Caps.KernelSumReport())
	// A version whose help texts are captured in testdata/help must read as captured:
	// the golden files of TestProbeGolden stay true to the installed nsys.
	if golden, err := os.ReadFile(filepath.Join("testdata", "help", info.Version[:strings.LastIndex(info.Version, ".")]+".json")); err == nil {
		var want struct {
			Version string    `json:"version"`
			Caps    nsys.Caps `json:"capabilities"`
		}
		if err := json.Unmarshal(golden, &want); err != nil {
			t.Fatal(err)
		}
		if want.Version != info.Version || !reflect.DeepEqual(want.Caps, info.Caps) {
			t.Errorf("nsys %s reads differently from its captured help (testdata/help): got %+v, want %+v", info.Version, info.Caps, want.Caps)
		}
	}
	if strings.HasPrefix(info.Version, "2022.") {
		// Measured facts about Debian's 2022.4.2 (DESIGN.md).
		if info.Caps.StartLater {
			t.Error("2022.4 has no --start-later, probe says it has")
		}
		if info.Caps.LaunchAccepts("--sample") || info.Caps.LaunchAccepts("--cpuctxsw") {
			t.Error("2022.4 launch refuses --sample/--cpuctxsw, probe says it accepts them")
		}
		if info.Caps.NewStatsNames {
			t.Error("2022.4 uses gpukernsum, probe says cuda_gpu_kern_sum")
		}
		if info.Importer == "" {
			t.Error("Debian's QdstrmImporter not found")
		}
	}
}

// TestLaunchModeWindows drives real nsys in launch mode: five windows, each a non-empty
// .nsys-rep that nsys export can read.
func TestLaunchModeWindows(t *testing.T) {
	runner, info := probeReal(t)
	ctl := launched(t, runner, info, nsys.ModeLaunch, "")
	ctx := context.Background()
	root := t.TempDir()
	for i := 1; i <= 5; i++ {
		w := nsys.Window{Dir: filepath.Join(root, fmt.Sprintf("w%d", i))}
		if err := ctl.Start(ctx, w); err != nil {
			t.Fatalf("window %d start: %v", i, err)
		}
		// A second start while collecting is refused before nsys is asked.
		if i == 1 {
			err := ctl.Start(ctx, nsys.Window{Dir: filepath.Join(root, "again")})
			if !errors.Is(err, nsys.ErrWrongState) {
				t.Fatalf("start while collecting: want wrong state, got %v", err)
			}
		}
		time.Sleep(300 * time.Millisecond)
		res, err := ctl.Stop(ctx, w)
		if err != nil {
			t.Fatalf("window %d stop: %v", i, err)
		}
		st, err := os.Stat(res.Report)
		if err != nil || st.Size() == 0 {
			t.Fatalf("window %d: report %q missing or empty (%v)", i, res.Report, err)
		}
		if filepath.Dir(res.Report) != w.Dir {
			t.Errorf("window %d: report %s not in its folder %s", i, res.Report, w.Dir)
		}
		sqlite, err := ctl.Export(ctx, res.Report)
		if err != nil {
			t.Fatalf("window %d export: %v", i, err)
		}
		head := make([]byte, 16)
		f, err := os.Open(sqlite)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = f.Read(head)
		f.Close()
		if string(head) != "SQLite format 3\x00" {
			t.Errorf("window %d: %s is not an SQLite database", i, sqlite)
		}
		t.Logf("window %d: %s (%d bytes, imported by us: %v) in %s", i, filepath.Base(res.Report), st.Size(), res.Imported, res.Duration)
	}
	// Nothing collecting now: stop is refused with the wrong-state error.
	_, err := ctl.Stop(ctx, nsys.Window{Dir: filepath.Join(root, "none")})
	if !errors.Is(err, nsys.ErrWrongState) {
		t.Fatalf("stop with nothing collecting: want ErrWrongState, got %v", err)
	}
	if !strings.Contains(err.Error(), "nothing is capturing") {
		t.Errorf("error should say nothing is capturing: %v", err)
	}
}

// TestStartMisspelledSession: nsys itself would create an empty session "typo"; the
// driver refuses and leaves nothing behind.
func TestStartMisspelledSession(t *testing.T) {
	runner, info := probeReal(t)
	ctx := context.Background()
	name := uniqueSession("nosuch")
	ctl := &nsys.Controller{Runner: runner, Info: info, Session: name, Mode: nsys.ModeLaunch}
	err := ctl.Start(ctx, nsys.Window{Dir: t.TempDir()})
	if !errors.Is(err, nsys.ErrSessionNotFound) {
		t.Fatalf("want ErrSessionNotFound, got %v", err)
	}
	if !strings.Contains(err.Error(), "silently create") {
		t.Errorf("error should explain the nsys pitfall: %v", err)
	}
	list, err := nsys.ListSessions(ctx, runner)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := nsys.Lookup(list, name); ok {
		t.Fatalf("a stray session %q was created: %+v", name, list)
	}
}

// TestStopWithoutWindowReal: the real nsys answers a stop on an idle session with a
// wrong-state message; the driver maps it to ErrWrongState before or after asking.
func TestSessionsListShowsLaunched(t *testing.T) {
	runner, info := probeReal(t)
	ctl := launched(t, runner, info, nsys.ModeLaunch, "")
	list, err := nsys.ListSessions(context.Background(), runner)
	if err != nil {
		t.Fatal(err)
	}
	s, ok := nsys.Lookup(list, ctl.Session)
	if !ok || s.State != nsys.StateLaunched || s.Launch != "1" {
		t.Fatalf("want %s Launched with 1 launch, got %+v (%v)", ctl.Session, s, ok)
	}
}
