package torchprof

import (
	"context"
	"encoding/json"
	"flag"
	"os"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/ from the current output")

// TestAnalyzeCompactGolden pins the compact summary that window manifests carry, over the
// real H100 nsys export, byte for byte (node_exporter's way with collector output).
// After an intended change: go test ./torchprof -run TestAnalyzeCompactGolden -update,
// and read the diff.
func TestAnalyzeCompactGolden(t *testing.T) {
	s, err := AnalyzeNsysSQLite(context.Background(), nsysFixture)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.MarshalIndent(s.Compact(), "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	const golden = "testdata/nsys-h100/summary-compact.golden.json"
	got := string(b) + "\n"
	if *update {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if got != string(want) {
		g, w := strings.Split(got, "\n"), strings.Split(string(want), "\n")
		for i := range max(len(g), len(w)) {
			if i >= len(g) || i >= len(w) || g[i] != w[i] {
				t.Fatalf("compact summary differs from %s at line %d:\n got %s\nwant %s\n(if the change is intended, rerun with -update and review the diff)",
					golden, i+1, at(g, i), at(w, i))
			}
		}
	}
}

func at(lines []string, i int) string {
	if i < len(lines) {
		return lines[i]
	}
	return "<end of output>"
}
