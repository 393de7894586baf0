package pluginhost

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nsys-agent/nsys-agent/nsys/procs"
	"github.com/nsys-agent/nsys-agent/plugins/shared"
)

func loadOne(t *testing.T, name, spec string) (*Plugin, *logBuffer) {
	t.Helper()
	dir := t.TempDir()
	install(t, dir, name, 0o755)
	o, lb := testOptions(t, behave(nil, name, spec))
	h, err := Load(context.Background(), dir, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	if len(h.Plugins()) != 1 {
		t.Fatalf("plugin not loaded: %+v", h.Skipped())
	}
	return h.Plugins()[0], lb
}

type progressLog struct{ steps []string }

func (p *progressLog) Send(e shared.ProgressEvent) { p.steps = append(p.steps, e.Step) }

// window runs Start and Stop of one window named name on p.
func window(t *testing.T, p *Plugin, name string, stopCtx context.Context) (shared.Window, shared.Result, error) {
	t.Helper()
	w := shared.Window{ID: "w-" + name, Dir: t.TempDir(), Name: name}
	if err := p.Start(context.Background(), w); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	res, err := p.Stop(stopCtx, w, &progressLog{})
	return w, res, err
}

// TestCrashInStopFailsTheCallAndTheNextWindowRelaunches: a plugin process that exits in
// Stop fails that call with its pid, status and last words; the next Start launches a
// new process, told the target again, and it works.
func TestCrashInStopFailsTheCallAndTheNextWindowRelaunches(t *testing.T) {
	p, lb := loadOne(t, "torch", "")
	target := shared.Target{ServerURL: "http://127.0.0.1:30000", Session: "s1", Mode: "launch", Nsys: "/usr/bin/nsys", PIDs: []int{42}}
	if err := p.Configure(context.Background(), target); err != nil {
		t.Fatal(err)
	}
	pid := p.PID()
	_, _, err := window(t, p, "crash-stop-1", context.Background())
	var ee *ExitedError
	if !errors.As(err, &ee) || !errors.Is(err, shared.ErrPluginExited) {
		t.Fatalf("Stop of a crashing plugin: %T %v, want an ExitedError", err, err)
	}
	for _, want := range []string{"backend plugin torch (pid ", "exited: exit status 3 (during Stop", "testplugin: crashing in Stop as told"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if ee.PID != pid || procs.Alive(pid) {
		t.Errorf("error names pid %d, the plugin was %d (alive: %v)", ee.PID, pid, procs.Alive(pid))
	}
	// A Stop for a capture the dead process held is not relaunched for.
	if _, err := p.Stop(context.Background(), shared.Window{ID: "w-x", Dir: t.TempDir()}, shared.Discard); !errors.Is(err, shared.ErrPluginExited) {
		t.Errorf("Stop after the crash: %v, want ErrPluginExited", err)
	}
	if p.Launches() != 1 {
		t.Errorf("Stop relaunched the plugin (%d launches)", p.Launches())
	}

	w, res, err := window(t, p, "after", context.Background())
	if err != nil {
		t.Fatalf("the window after a crash: %v", err)
	}
	if p.Launches() != 2 || p.PID() == pid || p.PID() == 0 {
		t.Errorf("launches %d, pid %d (was %d): want a second process", p.Launches(), p.PID(), pid)
	}
	var out struct {
		Target shared.Target `json:"target"`
		PID    int           `json:"pid"`
	}
	raw, err := os.ReadFile(filepath.Join(w.Dir, res.Artifacts[0]))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatal(err)
	}
	if out.Target.ServerURL != target.ServerURL || out.Target.Session != "s1" || out.PID != p.PID() {
		t.Errorf("the relaunched process was not configured again: %+v", out)
	}
	if !strings.Contains(lb.String(), "backend plugin relaunched after its process ended") {
		t.Error("the relaunch is not logged")
	}
	// The plugin's own log lines reach the agent's log, tagged with its name.
	if !strings.Contains(lb.String(), `msg="testplugin starting a window" backend=torch`) {
		t.Errorf("the plugin's hclog records are not forwarded with backend=torch")
	}
}

// TestHangInStopFailsAtTheDeadlineAndKillsThePlugin: a Stop that never returns ends at
// the caller's deadline, the stuck process is killed, and the next window relaunches.
func TestHangInStopFailsAtTheDeadlineAndKillsThePlugin(t *testing.T) {
	p, _ := loadOne(t, "stuck", "")
	pid := p.PID()
	ctx, cancel := context.WithTimeout(context.Background(), 700*time.Millisecond)
	defer cancel()
	begin := time.Now()
	_, _, err := window(t, p, "hang-stop", ctx)
	took := time.Since(begin)
	var te *TimeoutError
	if !errors.As(err, &te) || !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, shared.ErrPluginExited) {
		t.Fatalf("a hung Stop: %T %v, want a TimeoutError", err, err)
	}
	if !strings.Contains(err.Error(), "backend plugin stuck (pid ") || !strings.Contains(err.Error(), "did not return from Stop within") {
		t.Errorf("error %q", err)
	}
	// The deadline, plus go-plugin's Kill (a shutdown RPC the stuck plugin still answers).
	if took > 5*time.Second {
		t.Errorf("the hung Stop took %s to fail", took)
	}
	if procs.Alive(pid) {
		t.Errorf("the stuck plugin (pid %d) is still alive", pid)
	}
	if _, _, err := window(t, p, "fine", context.Background()); err != nil || p.Launches() != 2 {
		t.Errorf("the window after a hang: %v (launches %d)", err, p.Launches())
	}
}

// TestRelaunchFailureSaysSo: a plugin that cannot start again fails the next window with
// both facts, and a later window tries again.
func TestRelaunchFailureSaysSo(t *testing.T) {
	p, _ := loadOne(t, "flaky", "")
	_, _, _ = window(t, p, "crash-stop", context.Background())
	p.o.Env = behave(nil, "flaky", "exit-at-start")
	err := p.Start(context.Background(), shared.Window{ID: "w2", Dir: t.TempDir()})
	if !errors.Is(err, shared.ErrPluginExited) || !strings.Contains(err.Error(), "exited (exit status 3) and could not be relaunched for Start: it exited before the go-plugin handshake (exit status 2)") {
		t.Errorf("Start with a plugin that cannot relaunch: %v", err)
	}
	p.o.Env = nil
	if err := p.Start(context.Background(), shared.Window{ID: "w3", Dir: t.TempDir()}); err != nil {
		t.Errorf("a later window relaunches it: %v", err)
	}
}

// TestOptionalCallsPassThrough: Configure errors and a Launcher's changes come back as
// the plugin said them.
func TestOptionalCallsPassThrough(t *testing.T) {
	p, _ := loadOne(t, "launchy", "launcher,configure-fails")
	l, err := p.PrepareLaunch(context.Background(), shared.Launch{Argv: []string{"python", "-m", "sglang.launch_server"}})
	if err != nil || len(l.Env) != 1 || l.Env[0] != "TESTPLUGIN_LAUNCH=launchy" || len(l.Changes) != 1 || len(l.Argv) != 3 {
		t.Errorf("PrepareLaunch: %+v, %v", l, err)
	}
	if err := p.Configure(context.Background(), shared.Target{}); err == nil || !strings.Contains(err.Error(), "told to refuse Configure") {
		t.Errorf("Configure: %v", err)
	}
	res, err := p.Finalize(context.Background(), shared.Window{ID: "w", Dir: t.TempDir()}, shared.Discard)
	if err != nil || !strings.Contains(string(res.Summary), `"finalized_by":"launchy"`) {
		t.Errorf("Finalize: %s, %v", res.Summary, err)
	}
	if _, err := p.Wait(context.Background(), shared.Window{ID: "w"}); !errors.Is(err, shared.ErrUnsupported) {
		t.Errorf("Wait of a plugin without one: %v, want ErrUnsupported", err)
	}
}

// The agent's shutdown ends its plugins: go-plugin's "plugin process exited" is then an
// expected exit, logged at DEBUG, not an INFO line at every shutdown; a plugin that dies
// by itself is still logged as it was (TestCrashInStopFailsTheCallAndTheNextWindowRelaunches).
func TestExpectedExitIsDebug(t *testing.T) {
	dir := t.TempDir()
	install(t, dir, "torch", 0o755)
	o, lb := testOptions(t, behave(nil, "torch", ""))
	h, err := Load(context.Background(), dir, o)
	if err != nil {
		t.Fatal(err)
	}
	h.Close()
	log := lb.String()
	if !strings.Contains(log, `level=DEBUG msg="plugin process exited"`) || strings.Contains(log, `level=INFO msg="plugin process exited"`) {
		t.Errorf("the exit at shutdown:\n%s", log)
	}
}
