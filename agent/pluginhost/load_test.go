package pluginhost

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nsys-agent/nsys-agent/nsys/procs"
	"github.com/nsys-agent/nsys-agent/plugins/shared"
)

// TestLoadKeepsAnsweringPluginsAndSaysWhyNotTheOthers launches real plugin processes, one
// per way of failing, and checks which are kept and what each skip says.
func TestLoadKeepsAnsweringPluginsAndSaysWhyNotTheOthers(t *testing.T) {
	dir := t.TempDir()
	var env []string
	for name, spec := range map[string]string{
		"alpha":     "",
		"beta":      "",
		"newer":     "api=2",
		"handshake": "handshake=2",
		"slow":      "slow-info",
		"dies":      "exit-at-start",
		"twin":      "name=alpha",
		"builtin":   "name=nsys",
	} {
		install(t, dir, name, 0o755)
		env = behave(env, name, spec)
	}
	if err := os.WriteFile(filepath.Join(dir, Prefix+"garbage"), []byte("not a program"), 0o755); err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(dir, Prefix+"script")
	if err := os.WriteFile(script, []byte("#!/bin/sh\necho hello from a script\nsleep 30\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	o, _ := testOptions(t, env)
	o.InfoTimeout, o.StartTimeout, o.Reserved = 500*time.Millisecond, 5*time.Second, []string{"nsys", "cuda-profiler"}
	begin := time.Now()
	h, err := Load(context.Background(), dir, o)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	t.Logf("Load took %s", time.Since(begin))

	var kept []string
	var pids []int
	for _, p := range h.Plugins() {
		kept = append(kept, p.Name())
		pids = append(pids, p.PID())
		if p.PID() <= 0 || !procs.Alive(p.PID()) {
			t.Errorf("%s: pid %d not running", p.Name(), p.PID())
		}
	}
	if strings.Join(kept, ",") != "alpha,beta" {
		t.Errorf("kept %v, want alpha,beta", kept)
	}
	why := map[string]string{}
	for _, s := range h.Skipped() {
		why[strings.TrimPrefix(filepath.Base(s.Path), Prefix)] = s.Reason
	}
	for _, tc := range []struct{ file, want string }{
		{"newer", "built for backend API version 2; this agent speaks 1"},
		{"handshake", "plugin protocol version 2; this agent speaks 1"},
		{"slow", "did not answer Info within 500ms"},
		{"dies", "exited before the go-plugin handshake (exit status 2); its last output:\ntestplugin: told to fail before serving"},
		{"twin", `answers as backend "alpha", the name of the plugin ` + filepath.Join(dir, Prefix+"alpha")},
		{"builtin", `answers as backend "nsys", the name of a built-in backend`},
		{"script", "not a go-plugin plugin"},
		{"garbage", "it did not start: fork/exec " + filepath.Join(dir, Prefix+"garbage") + ": exec format error"},
	} {
		if got := why[tc.file]; !strings.Contains(got, tc.want) {
			t.Errorf("%s: reason %q does not say %q", tc.file, got, tc.want)
		}
	}
	if len(why) != 8 {
		t.Errorf("%d skipped, want 8: %v", len(why), why)
	}
	// Nothing skipped is left running: only the two kept plugins run from dir.
	if left := pluginProcs(t, dir); len(left) != 2 {
		t.Errorf("plugin processes running from %s: %v, want only alpha's and beta's %v", dir, left, pids)
	}

	h.Close()
	for _, pid := range pids {
		if procs.Alive(pid) {
			t.Errorf("pid %d still alive after Close", pid)
		}
	}
	if left := pluginProcs(t, dir); len(left) != 0 {
		t.Errorf("plugin processes left after Close: %v", left)
	}
	if _, err := h.Plugins()[0].Info(context.Background()); err != nil {
		t.Errorf("Info is the fingerprint, answered after Close too: %v", err)
	}
	if err := h.Plugins()[0].Start(context.Background(), shared.Window{ID: "w", Dir: t.TempDir()}); !errors.Is(err, shared.ErrPluginExited) {
		t.Errorf("a call after Close: %v, want ErrPluginExited", err)
	}
	h.Close() // twice is fine
}

// pluginProcs lists the live processes whose executable lies in dir (a hard-linked
// plugin's /proc/PID/exe names the link it was started as).
func pluginProcs(t *testing.T, dir string) []int {
	t.Helper()
	pids, err := procs.Default.Find(func(argv []string) bool {
		return len(argv) > 0 && strings.HasPrefix(argv[0], dir+string(filepath.Separator))
	})
	if err != nil {
		t.Fatal(err)
	}
	var alive []int
	for _, pid := range pids {
		if procs.Alive(pid) {
			alive = append(alive, pid)
		}
	}
	return alive
}

func TestLoadEmptyAndMissingDir(t *testing.T) {
	h, err := Load(context.Background(), t.TempDir(), Options{})
	if err != nil || len(h.Plugins()) != 0 || len(h.Skipped()) != 0 {
		t.Errorf("empty dir: %v, %v", h, err)
	}
	h.Close()
	if _, err := Load(context.Background(), filepath.Join(t.TempDir(), "nope"), Options{}); err == nil {
		t.Error("a missing plugin dir is an error")
	}
	var nilHost *Host
	nilHost.Close()
	if nilHost.Plugins() != nil || nilHost.Skipped() != nil {
		t.Error("a nil host has nothing")
	}
}

// BenchmarkLaunch is one plugin's start: fork/exec, go-plugin handshake with AutoMTLS
// (a fresh certificate each side), Dispense and the Info fingerprint; then its Kill.
func BenchmarkLaunch(b *testing.B) {
	dir := b.TempDir()
	if err := os.Link(testPlugin, filepath.Join(dir, Prefix+"bench")); err != nil {
		b.Fatal(err)
	}
	o := Options{}
	o.defaults()
	var kill time.Duration
	for b.Loop() {
		pr, _, err := launch(context.Background(), filepath.Join(dir, Prefix+"bench"), "bench", o)
		if err != nil {
			b.Fatal(err)
		}
		begin := time.Now()
		pr.kill("benchmark")
		kill += time.Since(begin)
	}
	b.ReportMetric(float64(kill.Microseconds())/float64(b.N)/1000, "ms-kill/op")
}
