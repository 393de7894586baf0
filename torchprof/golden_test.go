package torchprof

import (
	"context"
	"encoding/json"
	"flag"
	"testing"

	"github.com/nsys-agent/nsys-agent/internal/golden"
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
	const goldenPath = "testdata/nsys-h100/summary-compact.golden.json"
	got := string(b) + "\n"
	golden.Check(t, goldenPath, got, *update)
}
