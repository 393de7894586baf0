package main

import (
	"encoding/json"
	"errors"
	"net"
	"strings"
	"testing"

	"github.com/nsys-agent/nsys-agent/agent"
	"github.com/nsys-agent/nsys-agent/agent/windows"
)

func TestParseCommand(t *testing.T) {
	cases := []struct {
		args    []string
		cmd     string
		want    string
		env     string
		wantErr string
	}{
		{args: []string{"python3", "-m", "sglang.launch_server"}, want: "python3|-m|sglang.launch_server"},
		{cmd: `vllm serve "my model" --port 8000`, want: "vllm|serve|my model|--port|8000"},
		{cmd: `sh -c 'echo a; echo b'`, want: "sh|-c|echo a; echo b"}, // quoted: one argument, no shell of ours
		{cmd: "python3 a.py; rm -rf /", wantErr: "shell operators"},
		{cmd: "python3 a.py && curl x", wantErr: "shell operators"},
		{cmd: "python3 a.py | tee log", wantErr: "shell operators"},
		{cmd: "python3 `whoami`.py", wantErr: "backticks"},
		{cmd: "python3 $(whoami).py", wantErr: "backticks"},
		{cmd: "   ", wantErr: "empty"},
		{args: []string{"x"}, cmd: "y", wantErr: "not both"},
		{want: ""}, // no command: the demo target

		// Leading NAME=value words are the server's environment, in both forms.
		{cmd: "CUDA_VISIBLE_DEVICES=0 python -m sglang.launch_server --port 30000",
			want: "python|-m|sglang.launch_server|--port|30000", env: "CUDA_VISIBLE_DEVICES=0"},
		{args: []string{"CUDA_VISIBLE_DEVICES=0,1", "NCCL_DEBUG=INFO", "python", "x.py", "A=1"},
			want: "python|x.py|A=1", env: "CUDA_VISIBLE_DEVICES=0,1|NCCL_DEBUG=INFO"},
		{cmd: `_X1="a b" EMPTY= vllm serve`, want: "vllm|serve", env: "_X1=a b|EMPTY="},
		{cmd: "1X=2 python", want: "1X=2|python"},         // not a name: the program
		{cmd: "--flag=1 python", want: "--flag=1|python"}, // nor is a flag
		{cmd: "=1 python", want: "=1|python"},
		{cmd: "A=1 B=2", wantErr: "only environment assignments"},
		{args: []string{"A=1"}, wantErr: "only environment assignments"},
	}
	for _, c := range cases {
		got, env, err := parseCommand(c.args, c.cmd)
		if c.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Errorf("%q %v: want error %q, got %v %q", c.cmd, c.args, c.wantErr, err, got)
			} else if !errors.As(err, new(usageError)) {
				t.Errorf("%q %v: %v is not a usage error", c.cmd, c.args, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q %v: %v", c.cmd, c.args, err)
			continue
		}
		if strings.Join(got, "|") != c.want || strings.Join(env, "|") != c.env {
			t.Errorf("%q %v: got %q env %q, want %q env %q", c.cmd, c.args, strings.Join(got, "|"), strings.Join(env, "|"), c.want, c.env)
		}
	}
}

// TestRunRefusesUnsafeSetups: every refusal happens before anything is launched, with
// exit code 2 and a message that says what to do.
func TestRunRefusesUnsafeSetups(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		args []string
		msg  string
	}{
		{[]string{"run", "--listen", "0.0.0.0:0", "--data-dir", dir, "--", "true"}, "refusing to serve without authentication"},
		{[]string{"run", "--listen", ":7477", "--data-dir", dir}, "set a token"},
		{[]string{"run", "--cmd", "python3 a.py; reboot", "--data-dir", dir}, "shell operators"},
		{[]string{"run", "--token", "a", "--token-file", "/dev/null", "--data-dir", dir}, "not both"},
		{[]string{"run", "--tls-cert", "c.pem", "--data-dir", dir}, "go together"},
		{[]string{"run", "--listen", "nonsense", "--data-dir", dir}, "HOST:PORT"},
		{[]string{"run", "--log-level", "loud", "--data-dir", dir}, "log-level"},
	}
	for _, c := range cases {
		r := runCLI(t, c.args...)
		if r.code != exitUsage || !strings.Contains(r.stderr, c.msg) {
			t.Errorf("%v: exit %d, stderr %q; want exit 2 and %q", c.args, r.code, r.stderr, c.msg)
		}
	}
}

func TestShowPrintsTheAnswer(t *testing.T) {
	var b strings.Builder
	printManifest(&b, &windows.Manifest{ID: "w1", State: windows.StateReady, Summary: json.RawMessage(
		`{"slowest_rank": "pid 628", "reason": "pid 628 computes 393.976 ms on the GPU, 124.824 ms more than pid 627 (1.46×)"}`)})
	if !strings.Contains(b.String(), "GPU TIME") || !strings.Contains(b.String(), "124.824 ms more than pid 627") {
		t.Fatalf("show output:\n%s", b.String())
	}
}

// TestRunRefusesABusyDataDirOrPort: a second agent on the same data dir, or on a port
// that is taken, stops before launching anything.
func TestRunRefusesABusyDataDirOrPort(t *testing.T) {
	dir := t.TempDir()
	unlock, err := agent.LockDataDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	r := runCLI(t, "run", "--data-dir", dir, "--listen", "127.0.0.1:0", "--", "true")
	unlock()
	if r.code != exitFailed || !strings.Contains(r.stderr, "another nsys-agent") || !strings.Contains(r.stderr, "--data-dir") {
		t.Errorf("busy data dir: exit %d, stderr %q", r.code, r.stderr)
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	r = runCLI(t, "run", "--data-dir", dir, "--listen", ln.Addr().String(), "--", "true")
	if r.code != exitFailed || !strings.Contains(r.stderr, "is another agent running") {
		t.Errorf("busy port: exit %d, stderr %q", r.code, r.stderr)
	}
	if strings.Contains(r.stderr, "launching target") {
		t.Errorf("the target was launched before the port was checked: %s", r.stderr)
	}
}
