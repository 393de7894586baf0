package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const kinetoFixture = "../../torchprof/testdata/kineto-h100-2rank"

func TestMergeCommand(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "merged.trace.json.gz")
	// Flags after the directory, as people type them.
	r := runCLI(t, "merge", kinetoFixture, "--out", out, "-o", "json")
	code, stdout, stderr := r.code, r.stdout, r.stderr
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var st struct {
		Events int64 `json:"events"`
		Ranks  []struct {
			Label string `json:"label"`
		} `json:"ranks"`
	}
	if err := json.Unmarshal([]byte(stdout), &st); err != nil {
		t.Fatalf("stdout is not JSON: %v\n%s", err, stdout)
	}
	if st.Events != 9115 || len(st.Ranks) != 2 || st.Ranks[1].Label != "[TP01]" {
		t.Errorf("stats %+v", st)
	}
	if fi, err := os.Stat(out); err != nil || fi.Size() == 0 {
		t.Errorf("no merged trace: %v", err)
	}

	r = runCLI(t, "merge", "--out", out, filepath.Join(kinetoFixture, "1763900000.123456-TP-1.trace.json.gz"))
	code, stdout, _ = r.code, r.stdout, r.stderr
	if code != exitOK || !strings.Contains(stdout, "merged 4599 events from 1 ranks") {
		t.Errorf("exit %d, stdout %q", code, stdout)
	}

	// The old spellings work for one release, with a note: -o FILE, --json.
	r = runCLI(t, "merge", kinetoFixture, "-o", out, "--json")
	if r.code != exitOK || !json.Valid([]byte(r.stdout)) || !strings.Contains(r.stderr, "merge -o FILE is deprecated") ||
		!strings.Contains(r.stderr, "--json is deprecated") {
		t.Errorf("old flags: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
}

func TestMergeCommandErrors(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"merge"}, exitUsage, "give the per-rank trace files"},
		{[]string{"merge", kinetoFixture}, exitUsage, "--out FILE is required"},
		{[]string{"merge", kinetoFixture, "--out", filepath.Join(dir, "x.gz"), "--level", "12"}, exitUsage, "want 1 to 9"},
		{[]string{"merge", kinetoFixture, "--out", filepath.Join(dir, "x.gz"), "-o", "yaml"}, exitUsage, "want table or json"},
		{[]string{"merge", kinetoFixture, "--bogus"}, exitUsage, "not defined"},
		{[]string{"merge", dir, "--out", filepath.Join(dir, "x.gz")}, exitFailed, "no SGLang or vLLM"},
		{[]string{"merge", filepath.Join(dir, "missing.trace.json.gz"), "--out", filepath.Join(dir, "x.gz")}, exitFailed, "no such file"},
	} {
		r := runCLI(t, tc.args...)
		code, _, stderr := r.code, r.stdout, r.stderr
		if code != tc.code || !strings.Contains(stderr, tc.msg) {
			t.Errorf("%v: exit %d, stderr %q; want exit %d and %q", tc.args, code, stderr, tc.code, tc.msg)
		}
	}
}

// TestMergePerfettoFlag: a one-host merge writes a bundle only when asked, with the
// ranks' SGLang labels and no machine.
func TestMergePerfettoFlag(t *testing.T) {
	dir := t.TempDir()
	out, bundle := filepath.Join(dir, "m.trace.json.gz"), filepath.Join(dir, "b.tar")
	runCLI(t, "merge", kinetoFixture, "--out", out).must(t, exitOK)
	if _, err := os.Stat(filepath.Join(dir, "m.perfetto.tar")); !os.IsNotExist(err) {
		t.Errorf("a one-host merge wrote a bundle unasked: %v", err)
	}
	r := runCLI(t, "merge", kinetoFixture, "--out", out, "--perfetto", bundle, "-o", "json").must(t, exitOK)
	var st mergeOut
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil {
		t.Fatal(err)
	}
	if st.Perfetto == nil || st.Perfetto.Output != bundle || st.Group != nil || !st.Aligned || st.Ranks[1].Label != "[TP01]" {
		t.Errorf("stats %+v", st)
	}
	members := tarMembers(t, bundle)
	if len(members) != 3 || strings.Contains(string(members["perfetto_manifest.json"]), "machine") {
		t.Errorf("bundle: %d members, manifest %s", len(members), members["perfetto_manifest.json"])
	}
}
