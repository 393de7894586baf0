package nsys_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nsys-agent/nsys-agent/internal/diskspace/diskspacetest"
	"github.com/nsys-agent/nsys-agent/nsys"
	"github.com/nsys-agent/nsys-agent/nsys/nsystest"
)

// TestImportOnFullDiskKeepsRawStream reproduces a window marked ready with a truncated
// report (4/4 in a review): with room for the .qdstrm but not for the report, the
// importer fails; Import must say so, keep the .qdstrm and leave no truncated report.
func TestImportOnFullDiskKeepsRawStream(t *testing.T) {
	runner, info := probeReal(t)
	if info.Importer == "" {
		nsystest.Missing(t, "no QdstrmImporter next to this nsys (Debian's nsight-systems ships one)")
	}
	// A real raw stream: a window whose stop is not allowed to import.
	ctl := launched(t, runner, info, nsys.ModeLaunch, "")
	dir := t.TempDir()
	ctx := context.Background()
	if err := ctl.Start(ctx, nsys.Window{Dir: dir, Name: "raw"}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	importer := info.Importer
	info.Importer = ""
	res, _ := ctl.Stop(ctx, nsys.Window{Dir: dir, Name: "raw"})
	info.Importer = importer
	if res == nil || res.Qdstrm == "" {
		nsystest.Missing(t, "this nsys wrote a report itself, and the test needs the raw stream nsys 2022.4 leaves when it cannot import: %+v", res)
	}
	raw, err := os.ReadFile(res.Qdstrm)
	if err != nil {
		t.Fatal(err)
	}

	// Room for the stream and a few kB: the report (about as large) cannot be written.
	disk := diskspacetest.Small(t, int64(len(raw))+64<<10)
	qd := filepath.Join(disk, "w.qdstrm")
	if err := os.WriteFile(qd, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	rep, err := ctl.Import(ctx, qd)
	if err == nil {
		t.Fatalf("import onto a full disk succeeded with %s", rep)
	}
	t.Logf("import error: %v", err)
	if st, serr := os.Stat(qd); serr != nil || st.Size() != int64(len(raw)) {
		t.Fatalf("the raw stream must be kept whole: %v", serr)
	}
	if _, serr := os.Stat(strings.TrimSuffix(qd, ".qdstrm") + ".nsys-rep"); serr == nil {
		t.Fatal("a truncated report was left where a reader would take it for the real one")
	}
	if !strings.Contains(err.Error(), "QdstrmImporter") || !strings.Contains(err.Error(), qd) || !strings.Contains(err.Error(), "the disk is full") {
		t.Errorf("the error should say how to import by hand: %v", err)
	}
}
