package pluginhost

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nsys-agent/nsys-agent/agent/windows"
)

// managerWith runs the window state machine over the plugins in a fresh plugin dir.
func managerWith(t *testing.T, finalizeTimeout time.Duration, names ...string) (*windows.Manager, *Host) {
	t.Helper()
	dir := t.TempDir()
	for _, n := range names {
		install(t, dir, n, 0o755)
	}
	o, lb := testOptions(t, nil)
	h, err := Load(context.Background(), dir, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	var entries []windows.Entry
	for _, p := range h.Plugins() {
		e, err := windows.EntryOf(context.Background(), p, "")
		if err != nil {
			t.Fatal(err)
		}
		entries = append(entries, e)
	}
	reg, err := windows.NewRegistry(entries...)
	if err != nil {
		t.Fatal(err)
	}
	store, err := windows.NewStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	m, err := windows.New(windows.Options{Store: store, Backends: reg, FinalizeTimeout: finalizeTimeout, Log: o.Log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := m.Close(ctx); err != nil {
			t.Errorf("closing the manager: %v\n%s", err, lb)
		}
	})
	return m, h
}

func runWindow(t *testing.T, m *windows.Manager, backend, name string, within time.Duration) *windows.Manifest {
	t.Helper()
	w, err := m.CreateWindow(context.Background(), windows.CreateRequest{Backend: backend, Name: name}, windows.Local(windows.TriggerAPI))
	if err != nil {
		t.Fatalf("opening a %s window: %v", backend, err)
	}
	if _, err := m.StopWindow(context.Background(), w.ID, windows.Local(windows.TriggerAPI)); err != nil {
		t.Fatalf("stopping %s: %v", w.ID, err)
	}
	deadline := time.Now().Add(within)
	for {
		got, err := m.Window(context.Background(), w.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.State.Terminal() {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("window %s still %s after %s", w.ID, got.State, within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestPluginCrashFailsItsWindowOnly: the window whose plugin died fails with the
// plugin's name, pid and exit status; the next window, on another plugin backend, and
// then one on the crashed backend again, are ready.
func TestPluginCrashFailsItsWindowOnly(t *testing.T) {
	m, h := managerWith(t, 30*time.Second, "crashy", "steady")
	pid := h.Plugins()[0].PID()
	w := runWindow(t, m, "crashy", "crash-stop", 10*time.Second)
	if w.State != windows.StateFailed || !strings.Contains(w.Error, "backend plugin crashy (pid ") || !strings.Contains(w.Error, "exited: exit status 3") {
		t.Fatalf("window of the crashed plugin: %s %q", w.State, w.Error)
	}
	if w2 := runWindow(t, m, "steady", "next", 10*time.Second); w2.State != windows.StateReady || len(w2.Artifacts) == 0 {
		t.Errorf("the next window on another backend: %s %q %v", w2.State, w2.Error, w2.Artifacts)
	}
	w3 := runWindow(t, m, "crashy", "again", 10*time.Second)
	if w3.State != windows.StateReady || h.Plugins()[0].PID() == pid {
		t.Errorf("a window on the relaunched plugin: %s %q", w3.State, w3.Error)
	}
	if !strings.Contains(string(w3.Summary), `"finalized_by":"crashy"`) {
		t.Errorf("summary %s", w3.Summary)
	}
}

// TestPluginHangFailsItsWindowAtTheTimeout: a Stop that never returns fails the window
// when the window's stop-and-finalize budget ends, and the capture slot is free again.
func TestPluginHangFailsItsWindowAtTheTimeout(t *testing.T) {
	m, _ := managerWith(t, 1500*time.Millisecond, "hangs", "steady")
	begin := time.Now()
	w := runWindow(t, m, "hangs", "hang-stop", 10*time.Second)
	took := time.Since(begin)
	if w.State != windows.StateFailed || !strings.Contains(w.Error, "backend plugin hangs (pid ") || !strings.Contains(w.Error, "did not return from Stop within 1.5") {
		t.Fatalf("window of the hung plugin: %s %q", w.State, w.Error)
	}
	if took < 1500*time.Millisecond || took > 6*time.Second {
		t.Errorf("the hung window failed after %s; its budget was 1.5 s", took)
	}
	if w2 := runWindow(t, m, "steady", "next", 10*time.Second); w2.State != windows.StateReady {
		t.Errorf("the next window: %s %q", w2.State, w2.Error)
	}
}
