package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const nsysFixture = "../../torchprof/testdata/nsys-h100/window1.sqlite"

func TestAnalyzeCommand(t *testing.T) {
	dir := t.TempDir()
	html := filepath.Join(dir, "report.html")
	for _, tc := range []struct {
		name    string
		args    []string
		slowest string
		ranks   int
	}{
		{"kineto window", []string{"analyze", kinetoFixture, "-o", "json", "--html", html}, "TP01", 2},
		{"kineto files", []string{"analyze", "-o", "json", filepath.Join(kinetoFixture, "1763900000.123456-TP-0.trace.json.gz"),
			filepath.Join(kinetoFixture, "1763900000.123456-TP-1.trace.json.gz")}, "TP01", 2},
		{"nsys export", []string{"analyze", "-o", "json", nsysFixture}, "pid 628", 2},
		{"nsys window", []string{"analyze", "-o", "json", filepath.Dir(nsysFixture)}, "pid 628", 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := runCLI(t, tc.args...)
			code, stdout, stderr := r.code, r.stdout, r.stderr
			if code != exitOK {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			var s struct {
				SlowestRank string            `json:"slowest_rank"`
				Ranks       []json.RawMessage `json:"ranks"`
			}
			if err := json.Unmarshal([]byte(stdout), &s); err != nil {
				t.Fatalf("not JSON: %v", err)
			}
			if s.SlowestRank != tc.slowest || len(s.Ranks) != tc.ranks {
				t.Errorf("slowest %q, %d ranks; want %q, %d", s.SlowestRank, len(s.Ranks), tc.slowest, tc.ranks)
			}
		})
	}
	if b, err := os.ReadFile(html); err != nil || !strings.Contains(string(b), "Slowest rank: TP01") {
		t.Errorf("--html report: %v", err)
	}

	r := runCLI(t, "analyze", nsysFixture)
	code, stdout, _ := r.code, r.stdout, r.stderr
	if code != exitOK || !strings.Contains(stdout, "slowest rank: pid 628") || !strings.Contains(stdout, "1524") {
		t.Errorf("text output: exit %d\n%s", code, stdout)
	}
}

func TestAnalyzeCommandErrors(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"analyze"}, exitUsage, "give a window directory"},
		{[]string{"analyze", "-o", "yaml", kinetoFixture}, exitUsage, "want table or json"},
		{[]string{"analyze", dir}, exitFailed, "no *.trace.json.gz, *.sqlite or *.nsys-rep"},
		{[]string{"analyze", nsysFixture, filepath.Join(kinetoFixture, "1763900000.123456-TP-0.trace.json.gz")}, exitUsage, "one nsys report or .sqlite export alone"},
	} {
		r := runCLI(t, tc.args...)
		code, _, stderr := r.code, r.stdout, r.stderr
		if code != tc.code || !strings.Contains(stderr, tc.msg) {
			t.Errorf("%v: exit %d, stderr %q; want exit %d and %q", tc.args, code, stderr, tc.code, tc.msg)
		}
	}
}
