package agent

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nsys-agent/nsys-agent/internal/hostclock"
)

func TestIsLoopback(t *testing.T) {
	for listen, want := range map[string]bool{
		"127.0.0.1:7477": true, "localhost:7477": true, "[::1]:7477": true, "127.0.0.2:1": true,
		"0.0.0.0:7477": false, ":7477": false, "10.0.0.5:7477": false, "[::]:7477": false, "gpu1:7477": false,
	} {
		got, err := isLoopback(listen)
		if err != nil || got != want {
			t.Errorf("%s: got %v, %v; want %v", listen, got, err, want)
		}
	}
}

// TestTargetEnvDropsTheToken: reports embed the target's environment, so the agent's own
// token never reaches it; NVTX capture ranges get what they need.
func TestTargetEnvDropsTheToken(t *testing.T) {
	t.Setenv("NSYS_AGENT_TOKEN", "s3cret")
	t.Setenv(hostclock.ShiftEnv, "-2.5s")
	env := strings.Join(TargetEnv(), "\n")
	if strings.Contains(env, "s3cret") || strings.Contains(env, "NSYS_AGENT_TOKEN=") {
		t.Fatal("the agent's token would be in the target's environment")
	}
	// The clock-shift test hook reaches the target (the demo target writes its traces on
	// the shifted clock, as a server on a host with that clock would).
	if !strings.Contains(env, hostclock.ShiftEnv+"=-2.5s") {
		t.Errorf("%s missing from the target's environment", hostclock.ShiftEnv)
	}
	if !strings.Contains(env, "NSYS_NVTX_PROFILER_REGISTER_ONLY=0") {
		t.Error("NSYS_NVTX_PROFILER_REGISTER_ONLY=0 missing")
	}
}

// TestConfigRefusals: unsafe or incomplete configurations are ErrConfig, before anything
// is launched.
func TestConfigRefusals(t *testing.T) {
	for _, c := range []struct {
		cfg Config
		msg string
	}{
		{Config{Listen: "0.0.0.0:0", Command: []string{"true"}}, "refusing to serve without authentication"},
		{Config{Listen: "127.0.0.1:0"}, "no server command"},
		{Config{Listen: "127.0.0.1:0", TLSCert: "c.pem", Command: []string{"true"}}, "go together"},
		{Config{Listen: "10.0.0.1:0", TLSClientCA: "ca.pem", Command: []string{"true"}}, "go together"},
	} {
		err := c.cfg.check()
		if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%+v: %v, want ErrConfig with %q", c.cfg, err, c.msg)
		}
	}
	ok := Config{Listen: "0.0.0.0:0", Token: "t", Command: []string{"true"}}
	if err := ok.check(); err != nil {
		t.Errorf("a token allows a public listener: %v", err)
	}
}

// TestTokenWarnings: a short token or a token file others can read is accepted with a
// warning that says the fix (it was accepted silently).
func TestTokenWarnings(t *testing.T) {
	dir := t.TempDir()
	open := filepath.Join(dir, "open")
	closed := filepath.Join(dir, "closed")
	_ = os.WriteFile(open, []byte("x"), 0o644)
	_ = os.WriteFile(closed, []byte("x"), 0o600)
	c := Config{Token: "short", TokenFile: open}
	w := strings.Join(c.tokenWarnings(), "\n")
	if !strings.Contains(w, "5 bytes long") || !strings.Contains(w, "chmod 600 "+open) {
		t.Errorf("warnings: %s", w)
	}
	c = Config{Token: strings.Repeat("k", 32), TokenFile: closed}
	if w := c.tokenWarnings(); len(w) != 0 {
		t.Errorf("a long token in a private file: %v", w)
	}
}

// TestClockHookWarning: a shifted clock is always said at startup, with its shift; a
// value that is no duration is said to be ignored; no hook, no word.
func TestClockHookWarning(t *testing.T) {
	_, bad := hostclock.ParseShift("soon")
	for _, c := range []struct {
		value string
		shift time.Duration
		err   error
		want  []string
	}{
		{"", 0, nil, nil},
		{"-2.5s", -2500 * time.Millisecond, nil, []string{"test hook: this agent's clock is shifted by -2.5s", hostclock.ShiftEnv + "=-2.5s"}},
		{"0s", 0, nil, []string{"shifted by 0s"}},
		{"soon", 0, bad, []string{"test hook ignored", `"soon" is not a Go duration`, "not shifted"}},
	} {
		got := clockHookWarning(c.value, c.shift, c.err)
		if len(c.want) == 0 && got != "" {
			t.Errorf("%q: want no warning, got %q", c.value, got)
		}
		for _, w := range c.want {
			if !strings.Contains(got, w) {
				t.Errorf("%q: warning %q lacks %q", c.value, got, w)
			}
		}
	}
}
