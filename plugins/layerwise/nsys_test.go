package layerwise

import (
	"context"
	"database/sql"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nsys-agent/nsys-agent/nsys"
	"github.com/nsys-agent/nsys-agent/nsys/nsystest"
	"github.com/nsys-agent/nsys-agent/plugins/shared"
)

// nvtxProgram pushes SGLang's layer ranges from C, as PytHooks does from Python (one
// push before a module's forward, one pop after), with the texts Python's repr writes.
const nvtxProgram = `#include <nvtx3/nvToolsExt.h>
#include <unistd.h>
int main(void) {
	for (int i = 0; i < 4; i++) {
		nvtxRangePushA("{'Module': 'model', 'Inputs': [[7], [7]]}");
		nvtxRangePushA("{'Module': 'model.model.layers.0', 'Inputs': [[7], [7, 64]]}");
		nvtxRangePushA("{'Module': 'model.model.layers.0.self_attn.o_proj', 'TrainableParams': {'weight': [64, 64]}, 'Inputs': [[7, 64]], 'StaticParams': {'in_features': 64, 'out_features': 64}}");
		usleep(2000);
		nvtxRangePop();
		nvtxRangePop();
		nvtxRangePushA("{'Module': 'model.it\\'s \\u00e9', 'Inputs': [(1,)]}");
		nvtxRangePop();
		nvtxRangePop();
	}
	nvtxRangePushA("rank0/step1");
	nvtxRangePop();
	return 0;
}
`

// TestFinalizeRealNsys makes a real report with the installed nsys (2022.4 in CI) of a
// CPU program pushing SGLang-shaped NVTX ranges, and runs Finalize over it: the report is
// exported through the nsys package with the configured binary, and the export's NVTX
// ranges (nsys's own schema and storage of the texts) are read as layer ranges. The
// program has no kernels, so the export has no kernel table: Finalize says so, and the
// test then adds an empty one to check the ranges were read.
func TestFinalizeRealNsys(t *testing.T) {
	if testing.Short() {
		t.Skip("runs nsys profile and nsys export")
	}
	nsysPath := nsystest.Require(t)
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		nsystest.Missing(t, "no gcc to build the NVTX program")
	}
	real, err := filepath.EvalSymlinks(nsysPath)
	if err != nil {
		t.Fatal(err)
	}
	include := filepath.Join(filepath.Dir(real), "nvtx", "include")
	if _, err := os.Stat(filepath.Join(include, "nvtx3", "nvToolsExt.h")); err != nil {
		nsystest.Missing(t, "no NVTX headers beside nsys (%v)", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	build := t.TempDir()
	src := filepath.Join(build, "layers.c")
	if err := os.WriteFile(src, []byte(nvtxProgram), 0o600); err != nil {
		t.Fatal(err)
	}
	prog := filepath.Join(build, "layers")
	if out, err := exec.CommandContext(ctx, gcc, "-I", include, src, "-o", prog, "-ldl").CombinedOutput(); err != nil {
		t.Fatalf("gcc: %v\n%s", err, out)
	}

	win := t.TempDir()
	// nsys 2022.4 sometimes fails to start its daemon while another nsys starts or ends
	// ("Local Endpoint is not available", seen with other suites' nsys running): making
	// the report is the test's setup, so it is tried again.
	for try := 1; ; try++ {
		cmd := exec.CommandContext(ctx, nsysPath, "profile", "--trace=nvtx", "--sample=none", "--cpuctxsw=none",
			"--force-overwrite=true", "-o", filepath.Join(win, "report"), prog)
		out, err := cmd.CombinedOutput()
		if err == nil {
			break
		}
		if try == 3 || !strings.Contains(string(out), "Endpoint is not available") {
			t.Fatalf("nsys profile (try %d): %v\n%s", try, err, out)
		}
		t.Logf("nsys profile (try %d): %v; trying again", try, err)
		time.Sleep(2 * time.Second)
	}
	rep := filepath.Join(win, "report.nsys-rep")
	if _, err := os.Stat(rep); err != nil {
		// Debian's nsys does not find its importer: import the stream as the agent does.
		imp := nsys.LocateImporter(nsysPath)
		if imp == "" {
			t.Fatalf("nsys left no report and no QdstrmImporter was found")
		}
		if out, err := exec.CommandContext(ctx, imp, "-i", filepath.Join(win, "report.qdstrm")).CombinedOutput(); err != nil {
			t.Fatalf("QdstrmImporter: %v\n%s", err, out)
		}
	}
	_ = os.Remove(filepath.Join(win, "report.qdstrm"))

	b := New("x")
	if err := b.Configure(ctx, shared.Target{Nsys: nsysPath}); err != nil {
		t.Fatal(err)
	}
	res, err := b.Finalize(ctx, shared.Window{ID: "1", Dir: win}, shared.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(res.Artifacts, "report.sqlite") {
		t.Fatalf("artifacts %q lack the export; warnings %q", res.Artifacts, res.Warnings)
	}
	if len(res.Summary) != 0 || !slices.ContainsFunc(res.Warnings, func(s string) bool { return strings.Contains(s, "no CUDA kernels") }) {
		t.Errorf("a kernel-less export: summary %s, warnings %q", res.Summary, res.Warnings)
	}

	// With an (empty) kernel table, the program's process is a rank of layer ranges.
	export := filepath.Join(win, "report.sqlite")
	db, err := sql.Open("sqlite", "file:"+export)
	if err != nil {
		t.Fatal(err)
	}
	_, err = db.Exec(`CREATE TABLE CUPTI_ACTIVITY_KIND_KERNEL (start INTEGER NOT NULL, end INTEGER NOT NULL, correlationId INTEGER, globalPid INTEGER)`)
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	a := analyze(t, export)
	s := a.Summary(maxTop, SortTotal)
	if len(s.Ranks) != 1 {
		t.Fatalf("ranks %+v, want the program's process", s.Ranks)
	}
	r := s.Ranks[0]
	var modules []string
	for _, m := range r.Modules {
		modules = append(modules, m.Module)
		if m.Calls != 4 {
			t.Errorf("module %q: %d calls, want 4", m.Module, m.Calls)
		}
	}
	slices.Sort(modules)
	want := []string{"model", "model.it's é", "model.model.layers.0", "model.model.layers.0.self_attn.o_proj"}
	if r.LayerRanges != 16 || !slices.Equal(modules, want) {
		t.Errorf("%d layer ranges of modules %q; want 16 of %q", r.LayerRanges, modules, want)
	}
	if rk := a.ranks[r.PID]; rk.otherRange != 1 {
		t.Errorf("%d other ranges, want the one step range", rk.otherRange)
	}
}
