package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"regexp"
	"testing"

	"github.com/nsys-agent/nsys-agent/agent"
	"github.com/nsys-agent/nsys-agent/nsys/doctor"
)

// TestDoctorAgent: the agent check over real HTTP, for each state an agent can be in.
// The host checks run too (real nsys if installed); only the agent's line is asserted,
// and the exit code where the agent alone decides it.
func TestDoctorAgent(t *testing.T) {
	exitCode := 3
	exited := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(agent.Status{Agent: "0.1.0",
			Target:  agent.TargetStatus{State: "exited", ExitCode: &exitCode, LogTail: []string{"loading model", "CUDA error: out of memory"}},
			Session: agent.SessionStatus{Name: "s1", State: "Launched"}})
	}))
	defer exited.Close()
	running := newScriptedAgent(t).serve(t, "sixteen-byte-token-xx")
	closed := httptest.NewServer(http.NotFoundHandler())
	closedURL := closed.URL
	closed.Close()

	for _, tc := range []struct {
		name string
		args []string
		code int // -1: decided by the host, not asserted
		line string
	}{
		{"target exited", []string{"--agent", exited.URL}, exitFailed,
			`(?m)^FAIL +agent +agent 0\.1\.0 at ` + exited.URL + `: its target exited \(code 3\), so no window can start; last line: CUDA error: out of memory$`},
		{"running", []string{"--agent", running, "--token", "sixteen-byte-token-xx"}, -1,
			`(?m)^ok +agent +agent test at ` + running + `: target running \(pid 7\), nsys session nsys-agent-x \(state unknown\), no window capturing, 0 windows$`},
		{"token refused", []string{"--agent", running}, exitFailed, `(?m)^FAIL +agent +agent at ` + running + `: .*HTTP 401`},
		{"named but not running", []string{"--agent", closedURL}, exitFailed, `(?m)^FAIL +agent +agent at ` + closedURL + `: connection refused`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := runCLI(t, append([]string{"doctor", "--listen", "127.0.0.1:0", "--data-dir", t.TempDir()}, tc.args...)...)
			if tc.code >= 0 && r.code != tc.code {
				t.Errorf("exit code %d, want %d\n%s%s", r.code, tc.code, r.stdout, r.stderr)
			}
			if !regexp.MustCompile(tc.line).MatchString(r.stdout) {
				t.Errorf("stdout does not match %s:\n%s", tc.line, r.stdout)
			}
		})
	}
}

func TestExplainPort(t *testing.T) {
	busy := doctor.Result{Check: "port", Status: doctor.Fail, Finding: "127.0.0.1:7477 is in use by another program", Fix: "x"}
	up := &agent.Status{}
	for _, tc := range []struct {
		name   string
		listen string
		agents []agentCheck
		want   doctor.Status
	}{
		{"held by the agent that answered", "127.0.0.1:7477", []agentCheck{{URL: "http://127.0.0.1:7477", Status: up}}, doctor.OK},
		{"listen on all, agent on localhost", "0.0.0.0:7477", []agentCheck{{URL: "http://localhost:7477", Status: up}}, doctor.OK},
		{"agent on another port", "127.0.0.1:7477", []agentCheck{{URL: "http://127.0.0.1:7478", Status: up}}, doctor.Fail},
		{"agent on another host", "127.0.0.1:7477", []agentCheck{{URL: "http://gpu1:7477", Status: up}}, doctor.Fail},
		{"agent did not answer", "127.0.0.1:7477", []agentCheck{{URL: "http://127.0.0.1:7477"}}, doctor.Fail},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := explainPort([]doctor.Result{busy}, tc.listen, tc.agents)
			if got[0].Status != tc.want {
				t.Errorf("got %+v, want %s", got[0], tc.want)
			}
		})
	}
}
