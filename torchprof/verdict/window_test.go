package verdict

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nsys-agent/nsys-agent/nsys"
	"github.com/nsys-agent/nsys-agent/nsys/nsystest"
)

func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// exportWith is an Exporter that runs the real nsys.
func exportWith(nsysPath string) Exporter {
	return func(ctx context.Context, report string) (string, error) {
		return nsys.ExportSQLite(ctx, nsys.NewExecRunner(nsysPath), report, time.Minute)
	}
}

func TestCheckDirStreamOnly(t *testing.T) {
	const importer = "/usr/lib/nsight-systems/host-linux-x64/QdstrmImporter"
	for _, tc := range []struct {
		name, importer, wantCmd string
	}{
		{"importer known", importer, importer + " -i $DIR/window1.qdstrm"},
		{"importer unknown", "", "QdstrmImporter -i $DIR/window1.qdstrm"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			// What a failed import leaves: the raw stream, no report.
			writeFile(t, filepath.Join(dir, "window1.qdstrm"), []byte("QDSTRM raw stream bytes"))
			v, err := CheckDir(context.Background(), dir, Tools{Importer: tc.importer}, Expect{})
			if err != nil {
				t.Fatal(err)
			}
			if got := ids(v); !slices.Equal(got, []string{"broken report-missing"}) {
				t.Fatalf("findings %q, want broken report-missing", got)
			}
			if fix := strings.ReplaceAll(v.Findings[0].Fix, dir, "$DIR"); !strings.Contains(fix, tc.wantCmd) {
				t.Errorf("fix %q does not say how to import by hand (%q)", fix, tc.wantCmd)
			}
			checkGolden(t, "dir-stream-only-"+tc.name, dir, v)
		})
	}
}

// A report nsys cannot open, with the real nsys: its export fails ("Version tag is not
// found in the stream." from 2022.4) and the window is broken; the fix depends on
// whether the raw stream was kept.
func TestCheckReportUnreadable(t *testing.T) {
	nsysPath := nsystest.Require(t)
	for _, keepStream := range []bool{false, true} {
		dir := t.TempDir()
		writeFile(t, filepath.Join(dir, "window1.nsys-rep"), []byte("not a report: bytes of a report cut short by a full disk"))
		if keepStream {
			writeFile(t, filepath.Join(dir, "window1.qdstrm"), []byte("QDSTRM raw stream bytes"))
		}
		v, err := CheckDir(context.Background(), dir, Tools{Export: exportWith(nsysPath)}, Expect{})
		if err != nil {
			t.Fatal(err)
		}
		if got := ids(v); !slices.Equal(got, []string{"broken report-unreadable"}) {
			t.Fatalf("stream kept %v: findings %q, want broken report-unreadable", keepStream, got)
		}
		f := v.Findings[0]
		if !strings.Contains(f.Message, "nsys cannot open the report window1.nsys-rep") {
			t.Errorf("message %q", f.Message)
		}
		if imports := strings.Contains(f.Fix, "-i "+filepath.Join(dir, "window1.qdstrm")); imports != keepStream {
			t.Errorf("stream kept %v, fix %q", keepStream, f.Fix)
		}
	}
}

func TestCheckReport(t *testing.T) {
	full := Expect{PIDs: []int{rank0, rank1}, RankCount: 2, NVTX: true}
	t.Run("export beside it, newer", func(t *testing.T) {
		dir := t.TempDir()
		rep := filepath.Join(dir, "window1.nsys-rep")
		writeFile(t, rep, []byte("stands in for the report; never opened: the export beside it is newer"))
		old := time.Now().Add(-time.Hour)
		if err := os.Chtimes(rep, old, old); err != nil {
			t.Fatal(err)
		}
		copyFile(t, exportCopy(t, dropRank1Kernels...), dir, "window1.sqlite")
		refuse := func(ctx context.Context, report string) (string, error) {
			return "", errors.New("the export beside the report should have been used")
		}
		v, err := CheckDir(context.Background(), dir, Tools{Export: refuse}, full)
		if err != nil {
			t.Fatal(err)
		}
		if got := ids(v); !slices.Equal(got, []string{"broken launches-without-kernels pid 628"}) {
			t.Errorf("findings %q", got)
		}
	})
	t.Run("exported on demand", func(t *testing.T) {
		dir := t.TempDir()
		rep := filepath.Join(dir, "window1.nsys-rep")
		writeFile(t, rep, make([]byte, 3<<20)) // 3 MiB of report for 2.07 s captured
		var exported []string
		export := func(ctx context.Context, report string) (string, error) {
			exported = append(exported, report)
			return exportCopy(t, collapseGraphs...), nil
		}
		e := full
		e.SizeBudgetPerSecond = 1 << 20
		v, err := CheckReport(context.Background(), rep, Tools{Export: export}, e)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(exported, []string{rep}) {
			t.Errorf("exported %q, want the report once", exported)
		}
		// The report's size is its own (stat), over the capture's own duration.
		if got := ids(v); !slices.Equal(got, []string{"warning graph-not-node", "warning report-size"}) {
			t.Errorf("findings %q", got)
		}
	})
	t.Run("no exporter", func(t *testing.T) {
		dir := t.TempDir()
		rep := filepath.Join(dir, "window1.nsys-rep")
		writeFile(t, rep, []byte("a report"))
		v, err := CheckReport(context.Background(), rep, Tools{}, full)
		if err != nil {
			t.Fatal(err)
		}
		if v.Level != OK || len(v.Findings) != 0 || !slices.ContainsFunc(v.Skipped, func(s string) bool { return strings.Contains(s, "was not exported") }) {
			t.Errorf("without an exporter the contents go unchecked, and it says so: %+v", v)
		}
	})
	t.Run("empty report", func(t *testing.T) {
		dir := t.TempDir()
		rep := filepath.Join(dir, "window1.nsys-rep")
		writeFile(t, rep, nil)
		v, err := CheckReport(context.Background(), rep, Tools{}, full)
		if err != nil {
			t.Fatal(err)
		}
		if got := ids(v); !slices.Equal(got, []string{"broken report-unreadable"}) {
			t.Errorf("findings %q", got)
		}
	})
}

func TestCheckDir(t *testing.T) {
	t.Run("empty", func(t *testing.T) {
		v, err := CheckDir(context.Background(), t.TempDir(), Tools{}, Expect{})
		if err != nil {
			t.Fatal(err)
		}
		if got := ids(v); !slices.Equal(got, []string{"broken report-missing"}) {
			t.Errorf("findings %q", got)
		}
	})
	t.Run("nsys fixture folder", func(t *testing.T) {
		v, err := CheckDir(context.Background(), filepath.Dir(nsysFixture), Tools{}, Expect{RankCount: 2, NVTX: true})
		if err != nil {
			t.Fatal(err)
		}
		if v.Level != OK || len(v.Findings) != 0 {
			t.Errorf("the untouched capture: %+v", v)
		}
	})
	t.Run("links and FIFOs are not followed", func(t *testing.T) {
		dir := t.TempDir()
		abs, err := filepath.Abs(nsysFixture)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(abs, filepath.Join(dir, "window1.sqlite")); err != nil {
			t.Fatal(err)
		}
		v, err := CheckDir(context.Background(), dir, Tools{}, Expect{})
		if err != nil {
			t.Fatal(err)
		}
		if got := ids(v); !slices.Equal(got, []string{"broken report-missing"}) {
			t.Errorf("a folder holding only a link: findings %q, want report-missing", got)
		}
	})
	t.Run("a report's stream is not a finding", func(t *testing.T) {
		dir := t.TempDir()
		copyFile(t, nsysFixture, dir, "window1.sqlite")
		writeFile(t, filepath.Join(dir, "window1.qdstrm"), []byte("QDSTRM"))
		writeFile(t, filepath.Join(dir, "window1.nsys-rep"), []byte("report"))
		v, err := CheckDir(context.Background(), dir, Tools{}, Expect{RankCount: 2})
		if err != nil {
			t.Fatal(err)
		}
		if len(v.Findings) != 0 {
			t.Errorf("findings %q", ids(v))
		}
	})
	t.Run("missing folder", func(t *testing.T) {
		if _, err := CheckDir(context.Background(), filepath.Join(t.TempDir(), "nope"), Tools{}, Expect{}); err == nil {
			t.Error("a folder that does not exist is an error, not a verdict")
		}
	})
}
