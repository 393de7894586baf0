package verdict

import (
	"encoding/json"
	"flag"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/nsys-agent/nsys-agent/internal/golden"
	"github.com/nsys-agent/nsys-agent/torchprof/nsysdb/nsysdbtest"
	"go.uber.org/goleak"
)

// CheckKineto reads rank traces in parallel: no goroutine may outlive it.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

var update = flag.Bool("update", false, "rewrite testdata/*.golden.json from the current verdicts")

const (
	nsysFixture   = "../testdata/nsys-h100/window1.sqlite"
	kinetoFixture = "../testdata/kineto-h100-2rank"
	kinetoMerged  = "../testdata/kineto-h100-2rank/sglang-merged/merged-1763900000.123456.trace.json.gz"
	// The fixture's ranks (README: pid 627 rank 0, pid 628 rank 1, the slower).
	rank0, rank1 = 627, 628
)

// copyFile copies src into dir under name and returns the new path.
func copyFile(t testing.TB, src, dir, name string) string {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	dst := filepath.Join(dir, name)
	out, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	return dst
}

// exportCopy is a copy of the real H100 export, changed by stmts (SQL run on the copy),
// as window1.sqlite in a new folder, so findings name the same file as the fixture.
func exportCopy(t *testing.T, stmts ...string) string {
	t.Helper()
	return nsysdbtest.Copy(t, nsysFixture, t.TempDir(), "window1.sqlite", stmts...)
}

var goldenName = regexp.MustCompile(`[^A-Za-z0-9.]+`)

// checkGolden compares v (as JSON, with dir replaced by $DIR) with testdata/NAME.golden.json,
// or rewrites that file under -update.
func checkGolden(t *testing.T, name, dir string, v Verdict) {
	t.Helper()
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	got := string(b) + "\n"
	if dir != "" {
		got = strings.ReplaceAll(got, dir, "$DIR")
	}
	path := filepath.Join("testdata", goldenName.ReplaceAllString(name, "-")+".golden.json")
	golden.Check(t, path, got, *update)
}

// ids lists the findings as "level id pid rank" lines, for asserting what appears.
func ids(v Verdict) []string {
	var s []string
	for _, f := range v.Findings {
		line := f.Level.String() + " " + f.ID
		if f.PID != 0 {
			line += " pid " + strconv.Itoa(f.PID)
		}
		if f.Rank != "" {
			line += " " + f.Rank
		}
		s = append(s, line)
	}
	return s
}
