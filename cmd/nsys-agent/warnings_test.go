package main

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestMalformedFieldsReachOutput: analyze's JSON and HTML report, and merge's JSON
// statistics, carry the warnings about malformed events (here a kernel whose ts is a
// string), which used to vanish silently.
func TestMalformedFieldsReachOutput(t *testing.T) {
	dir := t.TempDir()
	trace := filepath.Join(dir, "w-TP-0.trace.json.gz")
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	const bad = `{"ph": "X", "cat": "kernel", "name": "gemm", "pid": 0, "tid": 7, "ts": "110", "dur": 10}`
	text := `{"traceEvents": [{"ph": "X", "cat": "kernel", "name": "gemm", "pid": 0, "tid": 7, "ts": 100, "dur": 10},
		` + bad + `]}`
	zw.Write([]byte(text))
	zw.Close()
	if err := os.WriteFile(trace, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	type warning struct {
		Input, Problem, Action string
		Events                 int64
		FirstOffset            int64 `json:"first_offset"`
	}
	offset := int64(strings.Index(text, bad))
	want := warning{trace, "ts is not a number", "skipped", 1, offset}

	html := filepath.Join(dir, "report.html")
	r := runCLI(t, "analyze", "-o", "json", "--html", html, dir).must(t, exitOK)
	var s struct {
		Ranks []struct {
			Kernels int64 `json:"kernels"`
		} `json:"ranks"`
		Warnings []warning `json:"warnings"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &s); err != nil {
		t.Fatal(err)
	}
	if len(s.Warnings) != 1 || s.Warnings[0] != want || s.Ranks[0].Kernels != 1 {
		t.Errorf("analyze: warnings %+v, %+v; want [%+v] and the 1 good kernel", s.Warnings, s.Ranks, want)
	}
	page, err := os.ReadFile(html)
	if err != nil || !strings.Contains(string(page), fmt.Sprintf("1 event: ts is not a number (the first at uncompressed offset %d); skipped", offset)) {
		t.Errorf("the HTML report lacks the warning (%v)", err)
	}

	r = runCLI(t, "merge", "--json", "-o", filepath.Join(dir, "merged.trace.json.gz"), trace).must(t, exitOK)
	var st struct {
		Events   int64     `json:"events"`
		Warnings []warning `json:"warnings"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil {
		t.Fatal(err)
	}
	want.Action = "kept unchanged"
	if st.Events != 2 || len(st.Warnings) != 1 || st.Warnings[0] != want {
		t.Errorf("merge: %d events, warnings %+v; want both events and [%+v]", st.Events, st.Warnings, want)
	}
}
