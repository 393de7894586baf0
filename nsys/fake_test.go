package nsys_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nsys-agent/nsys-agent/nsys"
	"github.com/nsys-agent/nsys-agent/nsys/nsystest"
)

// fakeRunner runs the scripted fake nsys with its own state folder.
func fakeRunner(t *testing.T, extraEnv ...string) (*nsys.ExecRunner, *nsys.Info) {
	t.Helper()
	r := nsys.NewExecRunner(nsystest.FakePath(t))
	r.Env = append(append(os.Environ(), "FAKE_NSYS_STATE="+t.TempDir()), extraEnv...)
	info, err := nsys.Probe(context.Background(), r)
	if err != nil {
		t.Fatal(err)
	}
	return r, info
}

func startFakeTarget(t *testing.T, r *nsys.ExecRunner, info *nsys.Info, session, first string) *nsys.Process {
	t.Helper()
	args, err := nsys.LaunchArgs(info.Caps, nsys.LaunchSpec{Mode: nsys.ModeStartLater, Session: session, Output: first,
		Command: []string{"sleep", "60"}})
	if err != nil {
		t.Fatal(err)
	}
	ctl := &nsys.Controller{Runner: r, Info: info, Session: session}
	proc, err := nsys.Launch(context.Background(), ctl, args, nsys.ProcOptions{Env: r.Env}, func() string { return "" }, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = proc.Terminate(10 * time.Second) })
	if st, err := ctl.State(context.Background()); err != nil || st != nsys.StateDelayedCollection {
		t.Fatalf("fake session should be DelayedCollection, got %v %v", st, err)
	}
	return proc
}

// TestStartLaterWithFake drives the start-later path against the recorded 2025.3.1
// behaviour: window 1 lands at the profile's -o, later windows as reportN in the
// caller's directory; the driver moves each into its window folder.
func TestStartLaterWithFake(t *testing.T) {
	r, info := fakeRunner(t)
	if !info.Caps.StartLater || nsys.DefaultMode(info.Caps) != nsys.ModeStartLater {
		t.Fatalf("probe of the 2025.3.1 fake found no start-later: %+v", info.Caps)
	}
	if !info.Caps.NewStatsNames || info.Caps.KernelSumReport() != "cuda_gpu_kern_sum" {
		t.Errorf("2025.3.1 uses the new stats names")
	}
	root := t.TempDir()
	first := filepath.Join(root, "session", "first")
	if err := os.MkdirAll(filepath.Dir(first), 0o700); err != nil {
		t.Fatal(err)
	}
	startFakeTarget(t, r, info, "sl", first)
	ctl := &nsys.Controller{Runner: r, Info: info, Session: "sl", Mode: nsys.ModeStartLater, FirstOutput: first}
	ctx := context.Background()
	for i := 1; i <= 3; i++ {
		w := nsys.Window{Dir: filepath.Join(root, "w"+string(rune('0'+i))), Name: "capture"}
		if err := ctl.Start(ctx, w); err != nil {
			t.Fatalf("window %d start: %v", i, err)
		}
		res, err := ctl.Stop(ctx, w)
		if err != nil {
			t.Fatalf("window %d stop: %v", i, err)
		}
		want := filepath.Join(w.Dir, "capture.nsys-rep")
		if res.Report != want {
			t.Fatalf("window %d: report at %q, want %q", i, res.Report, want)
		}
		body, _ := os.ReadFile(want)
		if !strings.Contains(string(body), "window "+string(rune('0'+i))) {
			t.Errorf("window %d got the wrong report: %q", i, body)
		}
		// Nothing of nsys' own naming is left behind.
		entries, _ := os.ReadDir(w.Dir)
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), "report") {
				t.Errorf("window %d: stray %s left in the folder", i, e.Name())
			}
		}
	}
	if _, err := os.Stat(first + ".nsys-rep"); !os.IsNotExist(err) {
		t.Errorf("first window's report should have been moved out of %s", first)
	}
}

// TestStartLaterStartCarriesNoOptions: nsys 2025 refuses options on start in
// start-later mode; the builder must not add any.
func TestStartLaterStartCarriesNoOptions(t *testing.T) {
	args := nsys.StartArgs(nsys.Caps{}, nsys.ModeStartLater, "s", "/x/y", false)
	if len(args) != 2 || args[0] != "start" || args[1] != "--session=s" {
		t.Fatalf("start-later start args: %v", args)
	}
}

// TestHungStopRecovery: a stop that never returns (seen on 2022.4) is cut off by the
// timeout, the session is shut down without killing the target, the session agent is
// ended, and the raw .qdstrm is kept and reported.
func TestHungStopRecovery(t *testing.T) {
	r, info := fakeRunner(t, "FAKE_NSYS_HANG_STOP=1")
	root := t.TempDir()
	first := filepath.Join(root, "first")
	proc := startFakeTarget(t, r, info, "hung", first)
	ctl := &nsys.Controller{Runner: r, Info: info, Session: "hung", Mode: nsys.ModeStartLater, FirstOutput: first,
		StopTimeout: 2 * time.Second}
	ctx := context.Background()
	w := nsys.Window{Dir: filepath.Join(root, "w1")}
	if err := ctl.Start(ctx, w); err != nil {
		t.Fatal(err)
	}
	res, err := ctl.Stop(ctx, w)
	var te *nsys.TimeoutError
	if !errors.As(err, &te) || !errors.Is(err, nsys.ErrTimeout) {
		t.Fatalf("want a TimeoutError, got %v", err)
	}
	if res == nil || res.Qdstrm != filepath.Join(w.Dir, "report.qdstrm") {
		t.Fatalf("the raw stream should be recovered into the window folder, got %+v", res)
	}
	msg := err.Error()
	for _, want := range []string{"did not finish within 2s", "nsys shutdown", "session agent", "recovered:", "report.qdstrm"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q should mention %q", msg, want)
		}
	}
	if pids := nsys.SessionAgentPIDs("hung"); len(pids) != 0 {
		t.Errorf("session agent still running: %v", pids)
	}
	// The target itself was not killed (shutdown --kill=none).
	select {
	case <-proc.Done():
		t.Error("the target died; a hung stop must not take the server down")
	default:
	}
}

// TestCachedStateStrayCleanup: Start trusts a fresh cached row (no listing before
// `nsys start`); if the session vanished meanwhile, nsys creates an empty one under our
// name — the check after the start sees it, removes it and reports the session gone.
func TestCachedStateStrayCleanup(t *testing.T) {
	r, info := fakeRunner(t)
	root := t.TempDir()
	proc := startFakeTarget(t, r, info, "gone", filepath.Join(root, "first"))
	ctl := &nsys.Controller{Runner: r, Info: info, Session: "gone", Mode: nsys.ModeStartLater, MaxStateAge: time.Minute}
	ctx := context.Background()
	if _, err := ctl.Sessions(ctx); err != nil { // primes the cache: DelayedCollection
		t.Fatal(err)
	}
	if err := proc.Terminate(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	err := ctl.Start(ctx, nsys.Window{Dir: filepath.Join(root, "w1")})
	if !errors.Is(err, nsys.ErrSessionNotFound) {
		t.Fatalf("want ErrSessionNotFound, got %v", err)
	}
	list, err := nsys.ListSessions(ctx, r)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 0 {
		t.Fatalf("a stray session was left behind: %+v", list)
	}
}
