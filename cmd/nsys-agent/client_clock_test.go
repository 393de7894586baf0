package main

import (
	"regexp"
	"testing"
	"time"

	"github.com/nsys-agent/nsys-agent/agent/windows"
)

// A capturing window on an agent whose clock is 30 s off this client's: CAPTURED is how
// long it has captured on the agent's clock (just started: under 10 s however slow the
// test machine), not this
// client's now minus the agent's start (30 s off either way).
func TestCapturedOnTheAgentsClock(t *testing.T) {
	for _, shift := range []time.Duration{30 * time.Second, -30 * time.Second} {
		g := newGroupAgent(t, shift)
		g.AddWindow(t, "w1", nil)
		g.Change(t, "w1", windows.Manifest{State: windows.StateCapturing})
		ms := regexp.MustCompile(`capturing +- +\S+ \S+ +(\d+(\.\d+)?ms|\d(\.\d+)?s) `)
		r := runCLI(t, "windows", "--agent", g.url).must(t, 0)
		if !ms.MatchString(r.stdout) || regexp.MustCompile(`\b(29|30)\.\d+s\b|\b-?30s\b`).MatchString(r.stdout) {
			t.Errorf("clock %+v: windows should say the capture started milliseconds ago:\n%s", shift, r.stdout)
		}
		r = runCLI(t, "show", "w1", "--agent", g.url).must(t, 0)
		if !regexp.MustCompile(`CAPTURED +(\d+(\.\d+)?ms|\d(\.\d+)?s)\n`).MatchString(r.stdout) {
			t.Errorf("clock %+v: show:\n%s", shift, r.stdout)
		}
		// JSON stays the manifest(s) as the agent sent them.
		r = runCLI(t, "windows", "--agent", g.url, "-o", "json").must(t, 0)
		if !regexp.MustCompile(`^\[\s*\{\s*"id": "w1"`).MatchString(r.stdout) {
			t.Errorf("windows -o json:\n%s", r.stdout)
		}
		r = runCLI(t, "show", "w1", "--agent", g.url, "-o", "json").must(t, 0)
		if !regexp.MustCompile(`^\{\s*"id": "w1"`).MatchString(r.stdout) {
			t.Errorf("show -o json:\n%s", r.stdout)
		}
	}
}
