package agent_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nsys-agent/nsys-agent/agent"
	"github.com/nsys-agent/nsys-agent/agent/windows"
	"github.com/nsys-agent/nsys-agent/internal/hostclock"
	"github.com/nsys-agent/nsys-agent/nsys/nsystest"
)

// agentHelperEnv makes this test binary an agent (see TestMain): agent.Run with the
// helperConfig it holds, until SIGTERM. The clock-shift hook is read once per process,
// so a shifted agent has to be a process of its own, as it is on a real host.
const agentHelperEnv = "NSYS_AGENT_TEST_RUN_AGENT"

type helperConfig struct {
	DataDir, Nsys, ReadyFile string
	Command                  []string
}

// runAgentHelper is the helper process's main.
func runAgentHelper(raw string) int {
	var hc helperConfig
	if err := json.Unmarshal([]byte(raw), &hc); err != nil {
		fmt.Fprintln(os.Stderr, "helper config:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	err := agent.Run(ctx, agent.Config{Listen: "127.0.0.1:0", DataDir: hc.DataDir, Nsys: hc.Nsys, ReadyFile: hc.ReadyFile,
		Command: hc.Command, Version: "test", StopTimeout: time.Minute, Log: slog.New(slog.NewTextHandler(os.Stderr, nil))})
	if err != nil {
		fmt.Fprintln(os.Stderr, "agent.Run:", err)
		return 1
	}
	return 0
}

// TestShiftedAgentProcess runs a whole agent (agent.Run, real nsys, a real target) with
// the clock-shift hook set to 1 h, as the group tests run agents that disagree like
// different hosts: it warns at startup, GET /v1/clock answers the shifted clock, the
// target gets the hook in its environment, and a window scheduled on the agent's clock
// starts within seconds (not an hour) with every time recorded on that clock.
func TestShiftedAgentProcess(t *testing.T) {
	nsysPath := nsystest.Require(t)
	const shift = time.Hour
	dir := t.TempDir()
	seen := filepath.Join(dir, "target-saw")
	hc, _ := json.Marshal(helperConfig{DataDir: filepath.Join(dir, "data"), Nsys: nsysPath, ReadyFile: filepath.Join(dir, "ready"),
		Command: []string{"/bin/sh", "-c", `printf %s "$` + hostclock.ShiftEnv + `" > ` + seen + `; while :; do sleep 0.1; done`}})
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	logs := &nsystest.Buffer{}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), agentHelperEnv+"="+string(hc), hostclock.ShiftEnv+"=1h")
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stopped := false
	t.Cleanup(func() {
		if stopped {
			return
		}
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(2 * time.Minute):
			_ = cmd.Process.Kill()
			<-exited
		}
	})

	var url string
	wait(t, time.Minute, "the agent's ready file", logs, func() bool {
		b, err := os.ReadFile(filepath.Join(dir, "ready"))
		url = strings.TrimSpace(string(b))
		return err == nil && url != ""
	})
	if !strings.Contains(logs.String(), "test hook: this agent's clock is shifted by 1h0m0s") {
		t.Errorf("no startup warning of the shifted clock:\n%s", logs)
	}
	wait(t, 30*time.Second, "the target to write its environment", logs, func() bool {
		b, err := os.ReadFile(seen)
		return err == nil && string(b) == "1h"
	})

	var c windows.ClockReading
	before := time.Now()
	getJSON(t, "GET", url+"/v1/clock", "", &c)
	if wall := time.Unix(0, c.WallNs); wall.Before(before.Add(shift)) || wall.After(time.Now().Add(shift)) {
		t.Errorf("GET /v1/clock: wall %s, want the machine's clock plus %v (%s)", wall, shift, before.Add(shift))
	}

	// start_at 2 s ahead on the agent's clock: the window starts in seconds.
	startAt := time.Now().Add(shift + 2*time.Second).UTC()
	var w windows.Manifest
	getJSON(t, "POST", url+"/v1/windows", fmt.Sprintf(`{"start_at":%q,"group":"g-shifted"}`, startAt.Format(time.RFC3339Nano)), &w)
	if w.State != windows.StateRequested || w.Group != "g-shifted" {
		t.Fatalf("scheduled window: %+v", w)
	}
	wait(t, 30*time.Second, "the scheduled window to capture", logs, func() bool {
		getJSON(t, "GET", url+"/v1/windows/g-shifted", "", &w)
		return w.State != windows.StateRequested
	})
	if w.State != windows.StateCapturing || w.FiredAt == nil || w.StartedAt == nil || w.Clock == nil {
		t.Fatalf("scheduled window: %s (%s), fired_at %v, started_at %v, clock %v", w.State, w.Error, w.FiredAt, w.StartedAt, w.Clock)
	}
	if late := w.FiredAt.Sub(startAt); late < 0 || late > 5*time.Second {
		t.Errorf("fired_at %s is %v after start_at", w.FiredAt, late)
	}
	getJSON(t, "POST", url+"/v1/windows/g-shifted/stop", "", &w)
	wait(t, 90*time.Second, "the window to finish", logs, func() bool {
		getJSON(t, "GET", url+"/v1/windows/g-shifted", "", &w)
		return w.State.Terminal()
	})
	if w.State != windows.StateReady || w.FinishedAt == nil {
		t.Fatalf("window %s (%s)", w.State, w.Error)
	}
	// Every time of the manifest is on the agent's clock: an hour ahead of this one.
	now := time.Now().Add(shift)
	for name, at := range map[string]time.Time{"created_at": w.CreatedAt, "started_at": *w.StartedAt, "finished_at": *w.FinishedAt} {
		if d := now.Sub(at); d < 0 || d > 2*time.Minute {
			t.Errorf("%s %s is %v before the agent's now %s", name, at, d, now)
		}
	}

	_ = cmd.Process.Signal(syscall.SIGTERM)
	stopped = true
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("the agent exited with %v:\n%s", err, logs)
		}
	case <-time.After(2 * time.Minute):
		_ = cmd.Process.Kill()
		<-exited
		t.Fatalf("the agent did not end on SIGTERM:\n%s", logs)
	}
}

func wait(t *testing.T, within time.Duration, what string, logs *nsystest.Buffer, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s; agent log:\n%s", within, what, logs)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// getJSON sends a request to the agent (no token: it listens on loopback) and decodes
// its 2xx answer into v.
func getJSON(t *testing.T, method, url, body string, v any) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		t.Fatalf("%s %s: %d %s", method, url, resp.StatusCode, b)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s %s: %v: %s", method, url, err, b)
	}
}
