package agent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nsys-agent/nsys-agent/agent/backends"
	"github.com/nsys-agent/nsys-agent/agent/windows"
	"github.com/nsys-agent/nsys-agent/nsys"
	"github.com/nsys-agent/nsys-agent/nsys/nsystest"
	"github.com/nsys-agent/nsys-agent/nsys/procs"
)

var cpuLoop = []string{"/bin/sh", "-c", "echo target up; while :; do i=0; while [ $i -lt 2000 ]; do i=$((i+1)); done; sleep 0.05; done"}

type testAgent struct {
	m     *windows.Manager
	sup   *Supervisor
	store *windows.Store
	ctl   *nsys.Controller
}

// newTestAgent launches command under the nsys at nsysPath (real or fake) and returns a
// manager for it. Cleanup closes the manager and ends the target through nsys.
func newTestAgent(t *testing.T, nsysPath string, env []string, mode nsys.Mode, command []string, stopTimeout time.Duration) *testAgent {
	t.Helper()
	store, err := windows.NewStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	runner := nsys.NewExecRunner(nsysPath)
	runner.Env = env
	info, err := nsys.Probe(context.Background(), runner)
	if err != nil {
		t.Fatal(err)
	}
	session := fmt.Sprintf("agenttest%d", time.Now().UnixNano()%1_000_000_000)
	first := filepath.Join(store.Root, "session", "first")
	_ = os.MkdirAll(filepath.Dir(first), 0o700)
	args, err := nsys.LaunchArgs(info.Caps, nsys.LaunchSpec{Mode: mode, Session: session, Output: first, Command: command})
	if err != nil {
		t.Fatal(err)
	}
	if env == nil {
		env = os.Environ()
	}
	ctl := &nsys.Controller{Runner: runner, Info: info, Session: session, Mode: mode, FirstOutput: first, StopTimeout: stopTimeout}
	sup, err := StartTarget(context.Background(), ctl, args, command, filepath.Join(store.Root, "target.log"), append(env, nsys.LaunchEnv()...), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(testWriter{t}, nil))
	entries, err := backends.Builtin(context.Background(), ctl, "test", nil)
	if err != nil {
		t.Fatal(err)
	}
	registry, err := windows.NewRegistry(entries...)
	if err != nil {
		t.Fatal(err)
	}
	m, err := windows.New(windows.Options{Store: store, Backends: registry, Target: sup, Session: session, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_ = m.Close(ctx)
		if err := sup.Stop(20 * time.Second); err != nil {
			t.Errorf("stopping target: %v", err)
		}
		if list, err := nsys.ListSessions(ctx, runner); err == nil {
			if s, ok := nsys.Lookup(list, session); ok && s.State != nsys.StateShutdown {
				t.Errorf("session %s left behind in state %s", session, s.State)
				ctl.Kill(ctx)
			}
		}
	})
	return &testAgent{m: m, sup: sup, store: store, ctl: ctl}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Logf("%s", strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func waitWindow(t *testing.T, m *windows.Manager, id string, within time.Duration) *windows.Manifest {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		w, err := m.Window(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if w.State.Terminal() {
			return w
		}
		if time.Now().After(deadline) {
			t.Fatalf("window %s still %s after %s", id, w.State, within)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// apiStatus is the HTTP status the API would answer for err (0 for nil).
func apiStatus(err error) int {
	if err == nil {
		return 0
	}
	code, _ := ErrorStatus(err)
	return code
}

func TestWindowsOnRealNsys(t *testing.T) {
	ta := newTestAgent(t, nsystest.Require(t), nil, nsys.ModeLaunch, cpuLoop, 0)
	ctx := context.Background()
	who := windows.Requester{Remote: "127.0.0.1:1", TokenID: "abcd1234"}

	if _, err := ta.m.StopWindow(ctx, "", who); apiStatus(err) != http.StatusConflict {
		t.Fatalf("stop with nothing capturing: want 409, got %v", err)
	}
	if _, err := ta.m.CreateWindow(ctx, windows.CreateRequest{Backend: "magic"}, who); apiStatus(err) != http.StatusBadRequest || !strings.Contains(err.Error(), "backend") {
		t.Fatalf("unknown backend: want 400 naming the field, got %v", err)
	}
	for _, bad := range []string{"../escape", "a/b", "..", "x..y"} {
		if _, err := ta.m.CreateWindow(ctx, windows.CreateRequest{Name: bad}, who); apiStatus(err) != http.StatusBadRequest {
			t.Fatalf("name %q: want 400, got %v", bad, err)
		}
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(ta.store.Root), "escape")); !os.IsNotExist(err) {
		t.Fatal("a file was written outside the data dir")
	}

	for i := 1; i <= 2; i++ {
		w, err := ta.m.CreateWindow(ctx, windows.CreateRequest{Name: fmt.Sprintf("win%d", i), Export: i == 2}, who)
		if err != nil {
			t.Fatalf("window %d: %v", i, err)
		}
		if w.State != windows.StateCapturing {
			t.Fatalf("window %d: state %s, want capturing", i, w.State)
		}
		if _, err := ta.m.CreateWindow(ctx, windows.CreateRequest{}, who); apiStatus(err) != http.StatusConflict {
			t.Fatalf("second window while capturing: want 409, got %v", err)
		}
		time.Sleep(300 * time.Millisecond)
		stopped, err := ta.m.StopWindow(ctx, w.ID, who)
		if err != nil {
			t.Fatal(err)
		}
		if stopped.State != windows.StateFinalizing || stopped.StoppedBy == nil || stopped.StoppedBy.TokenID != "abcd1234" {
			t.Fatalf("stop should return finalizing with who stopped it: %+v", stopped)
		}
		done := waitWindow(t, ta.m, w.ID, 2*time.Minute)
		if done.State != windows.StateReady {
			t.Fatalf("window %d: %s: %s", i, done.State, done.Error)
		}
		var rep *windows.Artifact
		for k := range done.Artifacts {
			if done.Artifacts[k].Kind == "nsys-rep" {
				rep = &done.Artifacts[k]
			}
		}
		if rep == nil || rep.Name != fmt.Sprintf("win%d.nsys-rep", i) || rep.Bytes == 0 {
			t.Fatalf("window %d: no report artifact: %+v", i, done.Artifacts)
		}
		// Reports embed the server's environment: private to their owner.
		for _, a := range done.Artifacts {
			p, _, _ := ta.m.ArtifactPath(ctx, w.ID, a.Name)
			if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != 0o600 {
				t.Errorf("window %d: %s has mode %v, want 0600", i, a.Name, fi.Mode().Perm())
			}
		}
		p, _, err := ta.m.ArtifactPath(ctx, w.ID, rep.Name)
		if err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(data)
		if hex.EncodeToString(sum[:]) != rep.SHA256 || int64(len(data)) != rep.Bytes {
			t.Fatalf("window %d: artifact hash/size mismatch", i)
		}
		if i == 2 {
			found := false
			for _, a := range done.Artifacts {
				found = found || a.Kind == "sqlite"
			}
			if !found {
				t.Errorf("export requested but no sqlite artifact: %+v (warnings %v)", done.Artifacts, done.Warnings)
			}
		}
		// The manifest on disk says the same, once the save that follows the state change
		// has landed: the state machine settles a window in memory, then writes it (seen
		// once in CI: the disk still said finalizing when the poll above saw ready).
		dir, _ := ta.store.WindowDir(w.ID)
		var raw []byte
		final := func() bool {
			raw, err = os.ReadFile(filepath.Join(dir, "manifest.json"))
			return err == nil && strings.Contains(string(raw), `"state": "ready"`) && strings.Contains(string(raw), rep.SHA256)
		}
		for end := time.Now().Add(10 * time.Second); !final() && time.Now().Before(end); {
			time.Sleep(20 * time.Millisecond)
		}
		if !final() {
			t.Fatalf("manifest on disk not final: %v\n%s", err, raw)
		}
	}
	if _, _, err := ta.m.ArtifactPath(ctx, ta.m.Windows(ctx)[0].ID, "../../etc/passwd"); apiStatus(err) != http.StatusNotFound {
		t.Errorf("artifact path escape: want 404, got %v", err)
	}
	st := (&daemon{Manager: ta.m, target: ta.sup, sessionState: func(ctx context.Context) (string, error) { s, err := ta.ctl.State(ctx); return string(s), err }}).Status(ctx)
	if st.Target.State != "running" || st.Session.State != string(nsys.StateLaunched) || st.Windows != 2 || len(st.Target.Ranks) == 0 {
		t.Errorf("status: %+v", st)
	}

	// Back to back: a start right after a stop waits for that stop's nsys work, then
	// captures; both windows end ready.
	a, err := ta.m.CreateWindow(ctx, windows.CreateRequest{Name: "a"}, who)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ta.m.StopWindow(ctx, a.ID, who); err != nil {
		t.Fatal(err)
	}
	b, err := ta.m.CreateWindow(ctx, windows.CreateRequest{Name: "b"}, who)
	if err != nil {
		t.Fatalf("start right after a stop: %v", err)
	}
	if _, err := ta.m.StopWindow(ctx, b.ID, who); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{a.ID, b.ID} {
		if w := waitWindow(t, ta.m, id, 2*time.Minute); w.State != windows.StateReady {
			t.Errorf("back-to-back window %s: %s %s", w.Name, w.State, w.Error)
		}
	}
}

func TestDurationAutoStop(t *testing.T) {
	ta := newTestAgent(t, nsystest.Require(t), nil, nsys.ModeLaunch, cpuLoop, 0)
	w, err := ta.m.CreateWindow(context.Background(), windows.CreateRequest{Duration: "500ms"}, windows.Requester{Remote: "local"})
	if err != nil {
		t.Fatal(err)
	}
	if w.Trigger != windows.TriggerDuration {
		t.Errorf("trigger %q", w.Trigger)
	}
	done := waitWindow(t, ta.m, w.ID, 2*time.Minute)
	if done.State != windows.StateReady || done.StoppedBy == nil || done.StoppedBy.Trigger != windows.TriggerDuration {
		t.Fatalf("duration window: %+v", done)
	}
}

// TestTargetCrashMidWindow: the window fails with the exit code and the log tail, the
// manager stays up and refuses new windows with 503.
func TestTargetCrashMidWindow(t *testing.T) {
	crash := []string{"/bin/sh", "-c", "echo serving; while [ ! -e \"$CRASH_FILE\" ]; do sleep 0.05; done; echo 'fatal: CUDA error: an illegal memory access' >&2; exit 3"}
	crashFile := filepath.Join(t.TempDir(), "crash")
	t.Setenv("CRASH_FILE", crashFile)
	ta := newTestAgent(t, nsystest.Require(t), nil, nsys.ModeLaunch, crash, 0)
	ctx := context.Background()
	w, err := ta.m.CreateWindow(ctx, windows.CreateRequest{}, windows.Requester{Remote: "local"})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(crashFile, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	done := waitWindow(t, ta.m, w.ID, time.Minute)
	if done.State != windows.StateFailed || !strings.Contains(done.Error, "exited with code 3") || !strings.Contains(done.Error, "illegal memory access") {
		t.Fatalf("want failed with exit code and log tail, got %s: %q", done.State, done.Error)
	}
	// What the capture held up to the crash can be opened: the raw stream the front-end
	// left is imported (before, only the .qdstrm was kept).
	kinds := map[string]bool{}
	for _, a := range done.Artifacts {
		kinds[a.Kind] = a.Bytes > 0
	}
	if !kinds["nsys-rep"] || !slices.ContainsFunc(done.Warnings, func(s string) bool { return strings.Contains(s, "was imported") }) {
		t.Errorf("the crashed window's capture should be imported: %+v %q", done.Artifacts, done.Warnings)
	}
	if _, err := ta.m.CreateWindow(ctx, windows.CreateRequest{}, windows.Requester{Remote: "local"}); apiStatus(err) != http.StatusServiceUnavailable {
		t.Fatalf("new window after the target died: want 503, got %v", err)
	}
	st := (&daemon{Manager: ta.m, target: ta.sup, sessionState: func(ctx context.Context) (string, error) { s, err := ta.ctl.State(ctx); return string(s), err }}).Status(ctx)
	if st.Target.State != "exited" || st.Target.ExitCode == nil || *st.Target.ExitCode != 3 {
		t.Fatalf("status after crash: %+v", st.Target)
	}
}

// TestHungStopFailsWindow: with the scripted fake (a stop that never returns), the
// window fails after the timeout, says what was recovered and keeps the raw stream.
func TestHungStopFailsWindow(t *testing.T) {
	env := append(os.Environ(), "FAKE_NSYS_STATE="+t.TempDir(), "FAKE_NSYS_HANG_STOP=1")
	ta := newTestAgent(t, nsystest.FakePath(t), env, nsys.ModeStartLater, []string{"sleep", "120"}, 2*time.Second)
	ctx := context.Background()
	w, err := ta.m.CreateWindow(ctx, windows.CreateRequest{}, windows.Requester{Remote: "local"})
	if err != nil {
		t.Fatal(err)
	}
	begin := time.Now()
	if _, err := ta.m.StopWindow(ctx, w.ID, windows.Requester{Remote: "local"}); err != nil {
		t.Fatal(err)
	}
	t.Logf("stop answered in %s", time.Since(begin))
	done := waitWindow(t, ta.m, w.ID, time.Minute)
	if done.State != windows.StateFailed || !strings.Contains(done.Error, "did not finish within 2s") || !strings.Contains(done.Error, "recovered") {
		t.Fatalf("want failed with recovery details, got %s: %q", done.State, done.Error)
	}
	if len(done.Artifacts) != 1 || done.Artifacts[0].Kind != "qdstrm" || done.Artifacts[0].Bytes == 0 {
		t.Fatalf("the raw stream should be kept as a partial artifact: %+v", done.Artifacts)
	}
	// The session is gone: a new window is refused at once, saying what to do, and leaves
	// no failed record (before: a 503 and a junk failed window for every try).
	before := len(ta.m.Windows(ctx))
	_, err = ta.m.CreateWindow(ctx, windows.CreateRequest{}, windows.Requester{Remote: "local"})
	if apiStatus(err) != http.StatusBadRequest || !strings.Contains(err.Error(), "restart the agent") {
		t.Fatalf("a start after the session was lost: %v", err)
	}
	if after := len(ta.m.Windows(ctx)); after != before {
		t.Errorf("a refused start left a record (%d -> %d)", before, after)
	}
}

// TestStopProgressShowsElapsed: while nsys stop runs, progress says how long it has run
// and how long it may (before: "10%" for the whole timeout).
func TestStopProgressShowsElapsed(t *testing.T) {
	env := append(os.Environ(), "FAKE_NSYS_STATE="+t.TempDir(), "FAKE_NSYS_HANG_STOP=1")
	ta := newTestAgent(t, nsystest.FakePath(t), env, nsys.ModeStartLater, []string{"sleep", "120"}, 3*time.Second)
	ctx := context.Background()
	events, cancel := ta.m.Subscribe()
	defer cancel()
	w, err := ta.m.CreateWindow(ctx, windows.CreateRequest{}, windows.Requester{Remote: "local"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ta.m.StopWindow(ctx, w.ID, windows.Requester{Remote: "local"}); err != nil {
		t.Fatal(err)
	}
	deadline := time.After(time.Minute)
	for {
		select {
		case ev := <-events:
			if ev.Window != nil && ev.Window.Progress != nil && strings.Contains(ev.Window.Progress.Step, "s of at most 3s") {
				return
			}
		case <-deadline:
			t.Fatal("no progress event with elapsed time and deadline")
		}
	}
}

// TestLaunchFailureQuotesNsys: a server command that cannot start fails the launch at
// once with what nsys printed, and leaves no session behind.
func TestLaunchFailureQuotesNsys(t *testing.T) {
	path := nsystest.Require(t)
	store, err := windows.NewStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	runner := nsys.NewExecRunner(path)
	info, err := nsys.Probe(context.Background(), runner)
	if err != nil {
		t.Fatal(err)
	}
	session := fmt.Sprintf("badcmd%d", time.Now().UnixNano()%1_000_000_000)
	cmd := []string{"/nonexistent/server"}
	args, err := nsys.LaunchArgs(info.Caps, nsys.LaunchSpec{Mode: nsys.ModeLaunch, Session: session, Command: cmd})
	if err != nil {
		t.Fatal(err)
	}
	ctl := &nsys.Controller{Runner: runner, Info: info, Session: session, Mode: nsys.ModeLaunch}
	_, err = StartTarget(context.Background(), ctl, args, cmd, filepath.Join(store.Root, "target.log"), nil, time.Minute)
	if err == nil || !strings.Contains(err.Error(), "/nonexistent/server") {
		t.Fatalf("want an error quoting nsys about the missing program, got %v", err)
	}
	list, _ := nsys.ListSessions(context.Background(), runner)
	if s, ok := nsys.Lookup(list, session); ok && s.State != nsys.StateShutdown {
		t.Errorf("session left behind: %+v", s)
	}
}

// TestFrontEndKilledEndsServer: SIGKILL on the nsys front-end (the OOM killer) used to
// leave the server running with its GPUs while the agent reported the target gone, and
// the next run started a second one. The agent now ends the server's process group and
// the session.
func TestFrontEndKilledEndsServer(t *testing.T) {
	ta := newTestAgent(t, nsystest.Require(t), nil, nsys.ModeLaunch, cpuLoop, 0)
	deadline := time.Now().Add(10 * time.Second)
	for ta.sup.ServerGroup() == 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	pgid := ta.sup.ServerGroup()
	if pgid <= 1 || !procs.Alive(-pgid) {
		t.Fatalf("the server's process group was not found (%d)", pgid)
	}
	if err := syscall.Kill(ta.sup.PID(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ta.sup.Done():
	case <-time.After(90 * time.Second):
		t.Fatal("the supervisor did not notice the front-end's death")
	}
	if procs.Alive(-pgid) {
		t.Fatalf("the server (process group %d) is still running", pgid)
	}
	if st, err := ta.ctl.State(context.Background()); err == nil && st != nsys.StateShutdown {
		t.Errorf("the session is still %s", st)
	}
	log, _ := os.ReadFile(filepath.Join(ta.store.Root, "target.log"))
	if !strings.Contains(string(log), "ending them") {
		t.Errorf("target.log should say what the agent ended:\n%s", log)
	}
}
