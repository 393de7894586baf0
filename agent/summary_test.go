package agent

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestWindowSummaryFromExport: a window whose export holds kernels gets summary.json and
// summary.html beside its report, and the manifest carries the summary. Uses the real
// 2-rank H100 export from ../shared/fixtures.
func TestWindowSummaryFromExport(t *testing.T) {
	store, err := NewStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	m, err := NewManager(ManagerOptions{Store: store, Backends: Backends{"nsys": &NsysBackend{}}, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(context.Background())
	id := NewID(time.Now())
	w := &Manifest{ID: id, Backend: "nsys", State: StateFinalizing, CreatedAt: time.Now(), Artifacts: []Artifact{}}
	m.windows[id] = w
	dir, _ := store.WindowDir(id)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	src, err := os.ReadFile("../../shared/fixtures/nsys-h100/window1.sqlite")
	if err != nil {
		t.Fatal(err)
	}
	sqlite := filepath.Join(dir, "report.sqlite")
	if err := os.WriteFile(sqlite, src, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := writeSummary(context.Background(), sqlite, dir); err != nil {
		t.Fatal(err)
	}
	m.finish(id, StateReady, "", nil)
	got, _ := m.Window(context.Background(), id)
	raw, _ := json.Marshal(got.Summary)
	// Figures from the fixture's README: pid 628 is the slower rank.
	if !strings.Contains(string(raw), `"slowest_rank":"pid 628"`) || !strings.Contains(string(raw), `"kernels":1524`) {
		t.Fatalf("manifest summary: %.400s", raw)
	}
	if strings.Contains(string(raw), "timeline_busy") || strings.Contains(string(raw), `"steps"`) {
		t.Errorf("the manifest should carry the compact summary, not the timeline: %d bytes", len(raw))
	}
	kinds := map[string]bool{}
	for _, a := range got.Artifacts {
		kinds[a.Kind] = true
	}
	if !kinds["summary"] || !kinds["html"] || !kinds["sqlite"] {
		t.Fatalf("artifacts: %+v", got.Artifacts)
	}
}
