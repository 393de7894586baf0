package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/nsys-agent/nsys-agent/nsys"
	"github.com/nsys-agent/nsys-agent/nsys/nsystest"
	"github.com/nsys-agent/nsys-agent/nsys/procs"
)

// buildTestPlugin builds the plugin host's scripted plugin
// (agent/pluginhost/internal/testplugin) for one test.
func buildTestPlugin(t *testing.T) string {
	return buildPlugin(t, "testplugin", "../../agent/pluginhost/internal/testplugin")
}

// buildPlugin builds the plugin main at pkg into a temporary file named name.
func buildPlugin(t *testing.T, name, pkg string) string {
	t.Helper()
	return buildInto(t, filepath.Join(t.TempDir(), name), pkg)
}

// buildInto builds the main package pkg (relative to cmd/nsys-agent, "." for the agent)
// into the file path: the one `go build` of the package's Go tests.
func buildInto(t *testing.T, path, pkg string) string {
	t.Helper()
	if out, err := exec.Command("go", "build", "-o", path, pkg).CombinedOutput(); err != nil {
		t.Fatalf("building %s: %v\n%s", pkg, err, out)
	}
	return path
}

// TestPluginScripts runs testdata/plugins: the agent with backend plugins (real
// processes of the scripted test plugin, $TESTPLUGIN), against the real nsys.
func TestPluginScripts(t *testing.T) {
	nsysPath := nsystest.Require(t)
	plugin := buildTestPlugin(t)
	// The real plugins, as `make build` puts them beside nsys-agent.
	torch := buildPlugin(t, "nsys-agent-backend-torch", "../nsys-agent-backend-torch")
	layerwise := buildPlugin(t, "nsys-agent-backend-layerwise-nvtx", "../nsys-agent-backend-layerwise-nvtx")
	testscript.Run(t, testscript.Params{
		Dir: "testdata/plugins",
		Setup: func(env *testscript.Env) error {
			env.Setenv("TESTPLUGIN", plugin)
			env.Setenv("TORCHPLUGIN", torch)
			env.Setenv("LAYERWISEPLUGIN", layerwise)
			env.Setenv("NSYS", nsysPath)
			env.Setenv(nsys.EnvNsys, nsysPath)
			env.Setenv("SESSION", fmt.Sprintf("tp%d", time.Now().UnixNano()%1_000_000_000))
			env.Setenv("TMPDIR", os.TempDir())
			env.Defer(func() { cleanupSessions(env.Getenv("SESSION")) })
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"wait-ready":   cmdWaitReady,
			"wait-session": cmdWaitSession,
			"plugin-procs": cmdPluginProcs,
			"sleep":        cmdSleep,
		},
	})
}

// plugin-procs DIR N [TIMEOUT]: within TIMEOUT (default 5 s), exactly N live processes
// run a plugin from DIR (read from /proc through nsys/procs).
func cmdPluginProcs(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 2 {
		ts.Fatalf("usage: plugin-procs DIR N [TIMEOUT]")
	}
	dir := ts.MkAbs(args[0]) + string(filepath.Separator)
	var want int
	_, err := fmt.Sscan(args[1], &want)
	ts.Check(err)
	timeout := optDuration(ts, args, 2, 5*time.Second)
	deadline := time.Now().Add(timeout)
	for {
		pids, err := procs.Default.Find(func(argv []string) bool {
			return len(argv) > 0 && strings.HasPrefix(argv[0], dir)
		})
		ts.Check(err)
		var alive []int
		for _, pid := range pids {
			if procs.Alive(pid) {
				alive = append(alive, pid)
			}
		}
		if len(alive) == want {
			return
		}
		if time.Now().After(deadline) {
			ts.Fatalf("%d plugin processes run from %s (%v), want %d", len(alive), dir, alive, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
