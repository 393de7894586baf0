package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nsys-agent/nsys-agent/agent/windows"
)

// TestRmPinUnpin: windows named as everywhere else (name, latest, id); a pinned or
// capturing window is refused with what to do, the others are still removed, and the
// exit code says something failed.
func TestRmPinUnpin(t *testing.T) {
	s := newScriptedAgent(t)
	url := s.serve(t)
	s.AddWindow(t, "w0", map[string]string{"report.nsys-rep": "old"})
	s.AddWindow(t, "w1", map[string]string{"report.nsys-rep": "keep me"})
	runCLI(t, "start", "--agent", url, "--name", "open").must(t, 0) // w3, capturing

	r := runCLI(t, "pin", "w1", "--agent", url).must(t, 0)
	if !strings.Contains(r.stdout, "pinned w1 (ready, 7 B)") {
		t.Errorf("pin output:\n%s", r.stdout)
	}
	for _, tc := range []struct {
		name string
		args []string
		code int
		out  []string
	}{
		{"capturing", []string{"rm", "open"}, 1, []string{"window w3 is capturing", "stop it first", "HTTP 409"}},
		{"pinned", []string{"rm", "w1"}, 1, []string{"window w1 is pinned", "nsys-agent unpin w1", "HTTP 409 pinned"}},
		{"unknown", []string{"rm", "nope"}, 1, []string{`no window has the id or name "nope"`}},
		{"no window named", []string{"rm"}, 2, []string{"expected one or more WINDOWs"}},
		{"pin needs one", []string{"pin", "w0", "w1"}, 2, []string{"expected one WINDOW"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := runCLI(t, append(tc.args, "--agent", url)...).must(t, tc.code)
			for _, want := range tc.out {
				if !strings.Contains(r.stderr, want) {
					t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
				}
			}
		})
	}

	// One refused, one removed: the removal happens, the refusal is reported.
	r = runCLI(t, "rm", "w1", "w0", "--agent", url).must(t, 1)
	if !strings.Contains(r.stdout, "removed w0 (ready, 3 B)") || !strings.Contains(r.stderr, "pinned") {
		t.Errorf("rm w1 w0:\nstdout:\n%s\nstderr:\n%s", r.stdout, r.stderr)
	}
	if _, err := os.Stat(filepath.Join(s.Dir, "w0")); !os.IsNotExist(err) {
		t.Errorf("w0's files are still there: %v", err)
	}

	runCLI(t, "unpin", "w1", "--agent", url).must(t, 0)
	r = runCLI(t, "rm", "w1", "--agent", url, "-o", "json").must(t, 0)
	var gone []windows.Manifest
	if err := json.Unmarshal([]byte(r.stdout), &gone); err != nil || len(gone) != 1 || gone[0].ID != "w1" {
		t.Errorf("rm -o json: %v\n%s", err, r.stdout)
	}
	r = runCLI(t, "windows", "--agent", url, "-o", "json").must(t, 0)
	var left []windows.Manifest
	if err := json.Unmarshal([]byte(r.stdout), &left); err != nil || len(left) != 1 || left[0].ID != "w3" {
		t.Errorf("left: %v\n%s", err, r.stdout)
	}
}

func TestRetentionFlagsAreChecked(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"run", "--max-bytes", "lots"}, "--max-bytes:"},
		{[]string{"run", "--max-window-bytes", "-5"}, "--max-window-bytes:"},
		{[]string{"run", "--keep-windows", "-1"}, "--keep-windows: 0 (keep all) or more"},
		{[]string{"start", "--max-bytes", "big"}, "--max-bytes:"},
	} {
		r := runCLI(t, tc.args...).must(t, 2)
		if !strings.Contains(r.stderr, tc.want) {
			t.Errorf("%q: stderr lacks %q:\n%s", tc.args, tc.want, r.stderr)
		}
	}
}
