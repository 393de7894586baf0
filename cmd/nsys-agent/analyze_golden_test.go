package main

import (
	"flag"
	"testing"

	"github.com/nsys-agent/nsys-agent/internal/golden"
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
			golden.Check(t, tc.golden, got, *update)
		})
	}
}
