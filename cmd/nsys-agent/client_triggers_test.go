package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nsys-agent/nsys-agent/agent/triggers"
	"github.com/nsys-agent/nsys-agent/agent/windows"
)

// TestTriggersCommand: `nsys-agent triggers` over the real API and the fake service's
// real trigger set: none, then one that fired and was then refused (a window capturing).
func TestTriggersCommand(t *testing.T) {
	s := newScriptedAgent(t)
	url := s.serve(t)
	r := runCLI(t, "triggers", "--agent", url).must(t, 0)
	if !strings.Contains(r.stdout, "no triggers; arm one with `nsys-agent run --trigger-log REGEX`") {
		t.Errorf("no triggers: %q", r.stdout)
	}
	if _, err := s.AddTrigger(context.Background(), triggers.Spec{Name: "slow", Log: `throughput: (?P<value>[0-9.]+)`, Below: ptrf(100), Max: 2}, windows.Local(windows.TriggerAPI)); err != nil {
		t.Fatal(err)
	}
	s.Line("throughput: 42")
	waitTriggers(t, s, func(st triggers.Status) bool { return st.Fired == 1 })
	s.Line("throughput: 41")
	waitTriggers(t, s, func(st triggers.Status) bool { return st.Skipped[triggers.ReasonCooldown] == 1 })

	r = runCLI(t, "triggers", "--agent", url).must(t, 0)
	for _, want := range []string{"TRIGGER", "NOT FIRED", "slow", `value < 100`, "5s, cooldown 1m0s", "1/2", "w1", "41", "cooling down for", "cooldown ×1"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("table lacks %q:\n%s", want, r.stdout)
		}
	}
	r = runCLI(t, "triggers", "--agent", url, "-o", "json").must(t, 0)
	var got []triggers.Status
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil || len(got) != 1 || got[0].Fires[0].Window != "w1" || *got[0].Fires[0].Value != 42 {
		t.Errorf("json %s (%v)", r.stdout, err)
	}
	r = runCLI(t, "windows", "--agent", url, "-o", "json").must(t, 0)
	if !strings.Contains(r.stdout, `"trigger": "trigger:slow"`) || !strings.Contains(r.stdout, `"trigger_value": "42"`) {
		t.Errorf("the window does not say the trigger opened it:\n%s", r.stdout)
	}
}

func ptrf(v float64) *float64 { return &v }

func waitTriggers(t *testing.T, s *served, ok func(triggers.Status) bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		l := s.Triggers(context.Background())
		if len(l) > 0 && ok(l[0]) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("trigger never reached the state: %+v", l)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestTriggerFlags: `run --trigger-*` settings that cannot work are usage errors (exit
// 2) before anything launches; nsys is never asked.
func TestTriggerFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--trigger-below", "100"}, "no trigger to apply it to"},
		{[]string{"--trigger-cooldown", "1s"}, "no trigger to apply it to"},
		{[]string{"--trigger-metric", "m<1", "--trigger-above", "3"}, "a --trigger-metric says its threshold itself"},
		{[]string{"--trigger-log", "no group", "--trigger-below", "3"}, "capture the number"},
		{[]string{"--trigger-log", "x", "--trigger-max", "0"}, "--trigger-max: at least 1"},
		{[]string{"--trigger-metric", "sglang:gen_throughput<=1"}, "only < and >"},
		{[]string{"--trigger-log", "x", "--trigger-duration", "0s"}, "duration"},
	} {
		r := runCLI(t, append([]string{"run", "--nsys", "/nonexistent/nsys", "--data-dir", t.TempDir()}, tc.args...)...)
		if r.code != exitUsage || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("run %v: exit %d, stderr %q; want 2 saying %q", tc.args, r.code, r.stderr, tc.want)
		}
	}
}
