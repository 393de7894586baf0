package layerwise

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/nsys-agent/nsys-agent/plugins/shared"
	"github.com/nsys-agent/nsys-agent/plugins/shared/sharedtest"
)

// TestOverTheWire runs the backend through the gRPC wire the agent uses (in process): its
// Info, launch hook, refusals and Finalize over the extended H100 export survive encoding
// and the error mapper.
func TestOverTheWire(t *testing.T) {
	b := sharedtest.Connect(t, New("x"))
	ctx := context.Background()
	info, err := b.Info(ctx)
	if err != nil || info.Name != Name || info.CapturesWith != "cuda-profiler" || !info.Implements(shared.InterfaceLauncher) || !info.Implements(shared.InterfaceFinalizer) {
		t.Fatalf("Info over the wire = %+v, %v", info, err)
	}
	l, err := b.(shared.Launcher).PrepareLaunch(ctx, shared.Launch{Argv: []string{"python3", "-m", "sglang.launch_server", "--model-path", "m"}})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(l.Argv, "--enable-layerwise-nvtx-marker") || !slices.Contains(l.Argv, "--disable-cuda-graph") || l.Arm != "cuda-profiler" || len(l.Changes) < 2 {
		t.Errorf("launch over the wire: %+v", l)
	}
	if _, err := b.(shared.Launcher).PrepareLaunch(ctx, shared.Launch{Argv: []string{"vllm", "serve", "m"}}); !errors.Is(err, shared.ErrUnsupported) {
		t.Errorf("a non-SGLang command over the wire: %v, want ErrUnsupported", err)
	}
	if err := b.Start(ctx, shared.Window{ID: "1"}); !errors.Is(err, shared.ErrUnsupported) {
		t.Errorf("Start over the wire: %v, want ErrUnsupported", err)
	}

	dir := t.TempDir()
	if err := os.Rename(extendedExport(t, dir), filepath.Join(dir, "w.sqlite")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "w.nsys-rep"), []byte("report"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := b.(shared.Configurer).Configure(ctx, shared.Target{Nsys: "/nonexistent/nsys"}); err != nil {
		t.Fatal(err)
	}
	var p recorder
	res, err := b.(shared.Finalizer).Finalize(ctx, shared.Window{ID: "1", Dir: dir, Name: "w", Options: map[string]string{"top": "3"}}, &p)
	if err != nil {
		t.Fatal(err)
	}
	var s Summary
	if err := json.Unmarshal(res.Summary, &s); err != nil || s.Kind != SummaryKind || s.Top != 3 || len(s.Ranks) != 3 {
		t.Fatalf("summary over the wire: %s (%v)", res.Summary, err)
	}
	if !slices.Equal(res.Artifacts, []string{TableFile}) || !slices.ContainsFunc(res.Warnings, func(w string) bool { return strings.Contains(w, "pid 700") }) {
		t.Errorf("result over the wire: %+v", res)
	}
	if len(p.steps) == 0 {
		t.Error("no progress came over the wire")
	}
}
