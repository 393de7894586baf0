package backends

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nsys-agent/nsys-agent/nsys"
	"github.com/nsys-agent/nsys-agent/plugins/shared"
)

// h100Export is the real 2-rank H100 export (torchprof/testdata/nsys-h100/README.md).
const h100Export = "../../torchprof/testdata/nsys-h100/window1.sqlite"

// TestSummaryFromExport: a window whose export holds kernels gets summary.json and
// summary.html beside its report, and the compact summary for its manifest.
func TestSummaryFromExport(t *testing.T) {
	dir := t.TempDir()
	src, err := os.ReadFile(h100Export)
	if err != nil {
		t.Fatal(err)
	}
	sqlite := filepath.Join(dir, "report.sqlite")
	if err := os.WriteFile(sqlite, src, 0o600); err != nil {
		t.Fatal(err)
	}
	raw, err := WriteSummary(context.Background(), sqlite, dir)
	if err != nil {
		t.Fatal(err)
	}
	// Figures from the fixture's README: pid 628 is the slower rank.
	if !strings.Contains(string(raw), `"slowest_rank":"pid 628"`) || !strings.Contains(string(raw), `"kernels":1524`) {
		t.Fatalf("compact summary: %.400s", raw)
	}
	if strings.Contains(string(raw), "timeline_busy") || strings.Contains(string(raw), `"steps"`) {
		t.Errorf("the manifest should carry the compact summary, not the timeline: %d bytes", len(raw))
	}
	for _, f := range []string{SummaryFile, SummaryPage} {
		if fi, err := os.Stat(filepath.Join(dir, f)); err != nil || fi.Size() == 0 {
			t.Errorf("%s: %v", f, err)
		}
	}
}

// TestNsysErrorsMapOntoContract: the one mapping from nsys's errors to the contract's.
func TestNsysErrorsMapOntoContract(t *testing.T) {
	cases := []struct {
		err  error
		kind error
	}{
		{&nsys.SessionNotFoundError{Name: "s"}, shared.ErrTargetGone},
		{&nsys.WrongStateError{Session: "s", Op: "start", State: nsys.StateCollection}, shared.ErrBusy},
		{fmt.Errorf("start: %w", &nsys.WrongStateError{Session: "s", State: nsys.StateGeneration}), shared.ErrBusy},
	}
	for _, c := range cases {
		got := mapNsysError(c.err)
		if !errors.Is(got, c.kind) || got.Error() != c.err.Error() {
			t.Errorf("%v: mapped to %v (kind lost or message changed)", c.err, got)
		}
	}
	other := errors.New("disk full")
	if got := mapNsysError(other); got != other {
		t.Errorf("an unrelated error must pass through: %v", got)
	}
	if mapNsysError(nil) != nil {
		t.Error("nil must stay nil")
	}
}

// TestCudaProfilerArmingMakesNsysUnavailable: a session armed for cudaProfilerApi ranges
// takes no nsys windows, and the registry says why.
func TestCudaProfilerArmingMakesNsysUnavailable(t *testing.T) {
	entries, err := Builtin(context.Background(), &nsys.Controller{Mode: nsys.ModeCudaProfiler}, "test", nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 2 || entries[0].Info.Name != NsysName || !strings.Contains(entries[0].Unavailable, "cuda-profiler") {
		t.Fatalf("entries: %+v", entries)
	}
	entries, _ = Builtin(context.Background(), &nsys.Controller{Mode: nsys.ModeLaunch}, "test", nil)
	if entries[0].Unavailable != "" {
		t.Errorf("launch mode should take nsys windows: %q", entries[0].Unavailable)
	}
	entries, _ = Builtin(context.Background(), nil, "test", errors.New("nsys not found on PATH"))
	if !strings.Contains(entries[0].Unavailable, "not found") {
		t.Errorf("a missing nsys should be the reason: %q", entries[0].Unavailable)
	}
}
