package agent

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nsys-agent/nsys-agent/agent/backends"
	"github.com/nsys-agent/nsys-agent/agent/pluginhost"
	"github.com/nsys-agent/nsys-agent/agent/windows"
	"github.com/nsys-agent/nsys-agent/internal/hostclock"
	"github.com/nsys-agent/nsys-agent/nsys/procs"
	"github.com/nsys-agent/nsys-agent/plugins/shared"
)

// loadTestPlugins builds the scripted test plugin, installs it under each name with the
// given behaviour (NSYS_AGENT_TESTPLUGIN_<NAME>) and loads the folder as Run does.
func loadTestPlugins(t *testing.T, specs map[string]string) *pluginhost.Host {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(t.TempDir(), "testplugin")
	if out, err := exec.Command("go", "build", "-o", bin, "./pluginhost/internal/testplugin").CombinedOutput(); err != nil {
		t.Fatalf("building the test plugin: %v\n%s", err, out)
	}
	var env []string
	for name, spec := range specs {
		if err := os.Link(bin, filepath.Join(dir, pluginhost.Prefix+name)); err != nil {
			t.Fatal(err)
		}
		env = append(env, "NSYS_AGENT_TESTPLUGIN_"+strings.ToUpper(name)+"="+spec)
	}
	h, err := LoadPlugins(context.Background(), dir, pluginhost.Options{Env: env})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return h
}

func TestPluginEntriesComposeAndConfigure(t *testing.T) {
	h := loadTestPlugins(t, map[string]string{
		"post":    "captures-with=nsys",
		"orphan":  "captures-with=perf",
		"plain":   "configure-fails",
		"launchy": "launcher",
		"nsys":    "", // a plugin file named like a built-in: skipped at load
	})
	builtin, err := backends.Builtin(context.Background(), nil, "test", errors.New("nsys not found"))
	if err != nil {
		t.Fatal(err)
	}
	_, pluginErr := configureAll(context.Background(), builtin, h.Plugins(), shared.Target{Session: "s"})
	if pluginErr["plain"] == nil || len(pluginErr) != 1 {
		t.Errorf("Configure errors: %v, want plain's only", pluginErr)
	}
	entries, err := PluginEntries(context.Background(), builtin, h.Plugins(), pluginErr)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]windows.Entry{}
	var order []string
	for _, e := range entries {
		got[e.Info.Name] = e
		order = append(order, e.Info.Name)
	}
	if strings.Join(order, ",") != "nsys,cuda-profiler,launchy,orphan,plain,post" {
		t.Errorf("registry order %v: built-ins first, then plugins by file name", order)
	}
	for name, want := range map[string]string{
		"post":    "it captures with nsys, which cannot be used: nsys not found",
		"orphan":  `it captures with "perf", which is not a built-in backend of this agent`,
		"plain":   "its Configure failed: testplugin: told to refuse Configure",
		"launchy": "",
	} {
		if u := got[name].Unavailable; (want == "") != (u == "") || !strings.Contains(u, want) {
			t.Errorf("%s: unavailable %q, want %q", name, u, want)
		}
	}
	if _, ok := got["post"].Backend.(composed); !ok || !got["post"].Info.Has(shared.CapNsysSession) {
		t.Errorf("post is not composed with nsys: %T %+v", got["post"].Backend, got["post"].Info)
	}
	if s := h.Skipped(); len(s) != 1 || !strings.Contains(s[0].Reason, "the name of a built-in backend") {
		t.Errorf("skipped %+v", s)
	}

	list := BackendStatuses(mustRegistry(t, defaultFirst(entries, "launchy")), Origins{Builtin: map[string]bool{"nsys": true, "cuda-profiler": true}, Plugins: h})
	if list[0].Name != "launchy" || !list[0].Default || list[0].PID == 0 || !strings.HasSuffix(list[0].Source, "/nsys-agent-backend-launchy") {
		t.Errorf("first status %+v: want launchy, default, running, with its file", list[0])
	}
	last := list[len(list)-1]
	if !last.Skipped || last.Name != "nsys" || !strings.HasSuffix(last.Source, "/nsys-agent-backend-nsys") {
		t.Errorf("last status %+v: want the skipped file", last)
	}
}

func mustRegistry(t *testing.T, entries []windows.Entry) *windows.Registry {
	t.Helper()
	r, err := windows.NewRegistry(entries...)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestBackendChoiceAndLaunchHook(t *testing.T) {
	h := loadTestPlugins(t, map[string]string{"launchy": "launcher", "refuses": "launcher,launch-fails", "quiet": ""})
	p, err := knownBackend("launchy", h)
	if err != nil || p == nil {
		t.Fatalf("knownBackend(launchy): %v %v", p, err)
	}
	if p, err := knownBackend("nsys", h); err != nil || p != nil {
		t.Errorf("a built-in is known and no plugin: %v %v", p, err)
	}
	if _, err := knownBackend("perf", h); !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "this agent has: nsys, cuda-profiler, launchy, quiet, refuses") {
		t.Errorf("unknown backend: %v", err)
	}
	if _, err := knownBackend("torch", nil); err == nil || !strings.Contains(err.Error(), "no plugin dir") {
		t.Errorf("without a plugin dir: %v", err)
	}

	cfg := Config{Command: []string{"python", "-m", "sglang.launch_server"}, Env: []string{"A=1"}}
	changes, err := prepareLaunch(context.Background(), &cfg, p)
	if err != nil || len(changes) != 1 || strings.Join(cfg.Env, " ") != "A=1 TESTPLUGIN_LAUNCH=launchy" || len(cfg.Command) != 3 {
		t.Errorf("launch hook: %v %v %+v", changes, err, cfg)
	}
	refuses, _ := knownBackend("refuses", h)
	if _, err := prepareLaunch(context.Background(), &cfg, refuses); err == nil || !strings.Contains(err.Error(), "backend refuses refused the launch: testplugin: this server cannot be launched") {
		t.Errorf("a refused launch: %v", err)
	}
	quiet, _ := knownBackend("quiet", h)
	if changes, err := prepareLaunch(context.Background(), &cfg, quiet); err != nil || changes != nil {
		t.Errorf("a launch left as it was has no changes: %v %v", changes, err)
	}
}

// TestPluginsDoNotGetTheToken: a plugin's environment is the agent's without its secrets
// (go-plugin would append the agent's whole environment; SkipHostEnv stops it), the
// clock-shift test hook included.
func TestPluginsDoNotGetTheToken(t *testing.T) {
	t.Setenv("NSYS_AGENT_TOKEN", "sekret-token-value")
	t.Setenv("NSYS_AGENT_TEST_MARKER", "kept")
	t.Setenv(hostclock.ShiftEnv, "1h") // a plugin on a shifted agent shares its clock
	dir := t.TempDir()
	bin := filepath.Join(dir, pluginhost.Prefix+"envcheck")
	if out, err := exec.Command("go", "build", "-o", bin, "./pluginhost/internal/testplugin").CombinedOutput(); err != nil {
		t.Fatalf("building the test plugin: %v\n%s", err, out)
	}
	h, err := LoadPlugins(context.Background(), dir, pluginhost.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if len(h.Plugins()) != 1 {
		t.Fatalf("not loaded: %+v", h.Skipped())
	}
	env, err := procs.Default.Environ(h.Plugins()[0].PID())
	if err != nil {
		t.Fatal(err)
	}
	joined := strings.Join(env, "\n")
	if strings.Contains(joined, "sekret-token-value") || !strings.Contains(joined, "NSYS_AGENT_TEST_MARKER=kept") || !strings.Contains(joined, hostclock.ShiftEnv+"=1h") {
		t.Errorf("plugin environment:\n%s", joined)
	}
}
