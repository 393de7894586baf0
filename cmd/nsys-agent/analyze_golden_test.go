package main

import (
	"flag"
	"os"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/ from the current output")

// TestAnalyzeGolden pins `analyze -o json` over the real H100 captures, byte for byte:
// the JSON is a contract (scripts and manifests read it), so any change to it shows up
// here. After an intended change: go test ./cmd/nsys-agent -run TestAnalyzeGolden -update,
// and read the diff.
func TestAnalyzeGolden(t *testing.T) {
	for _, tc := range []struct {
		name, golden string
		args         []string
	}{
		{"nsys sqlite", "testdata/analyze-nsys-h100.golden.json", []string{"analyze", "-o", "json", nsysFixture}},
		{"kineto 2 ranks", "testdata/analyze-kineto-h100-2rank.golden.json", []string{"analyze", "-o", "json", kinetoFixture}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := runCLI(t, tc.args...).must(t, exitOK).stdout
			checkGolden(t, tc.golden, got)
		})
	}
}

// checkGolden compares got with the golden file, or rewrites the file under -update.
func checkGolden(t *testing.T, path, got string) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if want := string(b); got != want {
		g, w := strings.Split(got, "\n"), strings.Split(want, "\n")
		for i := range max(len(g), len(w)) {
			gl, wl := line(g, i), line(w, i)
			if gl != wl {
				t.Fatalf("output differs from %s at line %d:\n got %s\nwant %s\n(if the change is intended, rerun with -update and review the diff)", path, i+1, gl, wl)
			}
		}
	}
}

func line(lines []string, i int) string {
	if i < len(lines) {
		return lines[i]
	}
	return "<end of output>"
}
