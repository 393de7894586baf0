package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"testing"
)

func TestVersion(t *testing.T) {
	r := runCLI(t, "version").must(t, 0)
	if !strings.HasPrefix(r.stdout, "nsys-agent "+version+" (go") {
		t.Errorf("version: %q", r.stdout)
	}
	r = runCLI(t, "version", "-o", "json").must(t, 0)
	var v versionInfo
	if err := json.Unmarshal([]byte(r.stdout), &v); err != nil || v.Version != version || v.Go == "" {
		t.Errorf("version -o json: %v %+v", err, v)
	}
	r = runCLI(t, "--version").must(t, 0)
	if !strings.Contains(r.stdout, version) {
		t.Errorf("--version: %q", r.stdout)
	}
	runCLI(t, "version", "extra").must(t, 2)
}

// TestCompletion: each shell gets a script (bash's is checked by bash itself when
// present); the words it asks for come from the app's own completion.
func TestCompletion(t *testing.T) {
	for shell, want := range map[string]string{
		"bash": "complete -o bashdefault -o default -F _nsys_agent_complete nsys-agent",
		"zsh":  "compdef _nsys_agent nsys-agent",
		"fish": "complete -c nsys-agent",
	} {
		r := runCLI(t, "completion", shell).must(t, 0)
		if !strings.Contains(r.stdout, want) {
			t.Errorf("completion %s lacks %q:\n%s", shell, want, r.stdout)
		}
		if sh, err := exec.LookPath(shell); err == nil {
			cmd := exec.Command(sh, "-n")
			cmd.Stdin = strings.NewReader(r.stdout)
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Errorf("%s -n: %v\n%s", shell, err, out)
			}
		}
	}
	runCLI(t, "completion").must(t, 2)
	runCLI(t, "completion", "powershell").must(t, 2)

	// urfave/cli reads the words to complete from os.Args, not from Run's arguments.
	complete := func(args ...string) result {
		saved := os.Args
		defer func() { os.Args = saved }()
		os.Args = append([]string{"nsys-agent"}, args...)
		return runCLI(t, args...).must(t, 0)
	}
	r := complete("--generate-bash-completion")
	for _, cmd := range []string{"start", "stop", "pull", "version", "completion"} {
		if !strings.Contains(r.stdout, cmd+"\n") {
			t.Errorf("commands offered lack %s:\n%s", cmd, r.stdout)
		}
	}
	if strings.Contains(r.stdout, "demo-worker") {
		t.Errorf("a hidden command is offered:\n%s", r.stdout)
	}
	r = complete("pull", "--d", "--generate-bash-completion")
	if !strings.Contains(r.stdout, "--dir") {
		t.Errorf("pull --d offers:\n%s", r.stdout)
	}
}
