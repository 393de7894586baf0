package layerwise

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/nsys-agent/nsys-agent/plugins/shared"
)

func TestInfo(t *testing.T) {
	info, err := New("1.2.3").Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if info.Name != Name || info.Version != "1.2.3" || info.APIVersion != shared.APIVersion || info.CapturesWith != "cuda-profiler" {
		t.Errorf("info %+v", info)
	}
	for _, c := range []shared.Capability{shared.CapSteps, shared.CapExport, shared.CapSummary} {
		if !info.Has(c) {
			t.Errorf("info lacks %s", c)
		}
	}
	if info.Has(shared.CapNsysSession) {
		t.Error("a post-processor claims the session itself; Compose adds it from the capturing backend")
	}
	var names []string
	for _, o := range info.Options {
		names = append(names, o.Name)
		if o.Usage == "" {
			t.Errorf("option %s has no usage", o.Name)
		}
	}
	if !slices.Equal(names, []string{OptionTop, OptionSort}) {
		t.Errorf("options %q", names)
	}
}

func TestStartStopRefused(t *testing.T) {
	b := New("x")
	w := shared.Window{ID: "w1", Dir: t.TempDir()}
	if err := b.Start(context.Background(), w); !errors.Is(err, shared.ErrUnsupported) || !strings.Contains(err.Error(), "cuda-profiler") {
		t.Errorf("Start: %v", err)
	}
	if _, err := b.Stop(context.Background(), w, shared.Discard); !errors.Is(err, shared.ErrUnsupported) {
		t.Errorf("Stop: %v", err)
	}
}

// recorder is a Progress that keeps the steps.
type recorder struct {
	mu    sync.Mutex
	steps []shared.ProgressEvent
}

func (r *recorder) Send(e shared.ProgressEvent) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.steps = append(r.steps, e)
}

// TestFinalize runs the backend's Finalize over a window folder as the cuda-profiler
// backend leaves it with --export: the window's report and its SQLite export (here the
// extended H100 export, named after the window).
func TestFinalize(t *testing.T) {
	tests := []struct {
		name      string
		options   map[string]string
		top       int
		order     string
		warnings  []string
		firstSelf bool // modules in the summary by self time
	}{
		{"defaults", nil, DefaultTop, SortSelf, nil, true},
		{"top 3 by total", map[string]string{"top": "3", "sort": "total"}, 3, SortTotal, nil, false},
		{"bad options fall back", map[string]string{"top": "-1", "sort": "name"}, DefaultTop, SortSelf,
			[]string{`top="-1"`, `sort="name"`}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			sqlite := extendedExport(t, dir)
			if err := os.Rename(sqlite, filepath.Join(dir, "w.sqlite")); err != nil {
				t.Fatal(err)
			}
			// The report beside it is not exported again (its bytes do not matter here).
			if err := os.WriteFile(filepath.Join(dir, "w.nsys-rep"), []byte("report"), 0o600); err != nil {
				t.Fatal(err)
			}
			b := New("x")
			if err := b.Configure(context.Background(), shared.Target{Nsys: "/nonexistent/nsys"}); err != nil {
				t.Fatal(err)
			}
			var p recorder
			res, err := b.Finalize(context.Background(), shared.Window{ID: "1", Dir: dir, Name: "w", Options: tc.options}, &p)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(res.Artifacts, []string{TableFile}) {
				t.Errorf("artifacts %q, want just %s", res.Artifacts, TableFile)
			}
			for _, w := range tc.warnings {
				if !slices.ContainsFunc(res.Warnings, func(s string) bool { return strings.Contains(s, w) }) {
					t.Errorf("warnings %q lack %q", res.Warnings, w)
				}
			}
			if !slices.ContainsFunc(res.Warnings, func(s string) bool { return strings.Contains(s, "pid 700") }) {
				t.Errorf("warnings %q lack the rank without kernels", res.Warnings)
			}
			var s Summary
			if err := json.Unmarshal(res.Summary, &s); err != nil {
				t.Fatal(err)
			}
			if s.Kind != SummaryKind || s.Top != tc.top || s.Sort != tc.order || s.Table != TableFile || !slices.Equal(s.Reports, []string{"w.sqlite"}) {
				t.Errorf("summary head %+v", s)
			}
			if len(s.Ranks) != 3 || len(s.Ranks[0].Modules) != min(tc.top, 10) {
				t.Fatalf("summary ranks %+v", s.Ranks)
			}
			first := s.Ranks[1].Modules[0] // pid 628
			if tc.firstSelf && first.Module != "model.model.layers.0.self_attn" || !tc.firstSelf && first.Module != "model" {
				t.Errorf("pid 628's first module %q in %s order", first.Module, tc.order)
			}
			csv, err := os.ReadFile(filepath.Join(dir, TableFile))
			if err != nil {
				t.Fatal(err)
			}
			if lines := strings.Count(string(csv), "\n"); lines != 24 {
				t.Errorf("%s has %d lines, want the header and 23 rows", TableFile, lines)
			}
			if fi, err := os.Stat(filepath.Join(dir, TableFile)); err != nil || fi.Mode().Perm() != 0o600 {
				t.Errorf("%s: %v %v, want mode 0600", TableFile, fi.Mode(), err)
			}
			if len(p.steps) == 0 || p.steps[len(p.steps)-1].Fraction >= 1 {
				t.Errorf("progress %+v", p.steps)
			}
			var out bytes.Buffer
			if ok, err := WriteTable(&out, res.Summary, 2); !ok || err != nil || !strings.Contains(out.String(), "more modules in "+TableFile) {
				t.Errorf("WriteTable: %v %v\n%s", ok, err, out.String())
			}
		})
	}
}

func TestFinalizeNoReport(t *testing.T) {
	dir := t.TempDir()
	// A link to a real export is no report of the window's.
	if err := os.Symlink(mustAbs(t, h100Export), filepath.Join(dir, "report.sqlite")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "report.nsys-rep"), nil, 0o600); err != nil { // empty: nsys wrote nothing
		t.Fatal(err)
	}
	res, err := New("x").Finalize(context.Background(), shared.Window{ID: "1", Dir: dir}, shared.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Summary) != 0 || len(res.Artifacts) != 0 || len(res.Warnings) != 1 || !strings.Contains(res.Warnings[0], "no report") {
		t.Errorf("result %+v", res)
	}
	if _, err := New("x").Finalize(context.Background(), shared.Window{ID: "1", Dir: filepath.Join(dir, "gone")}, shared.Discard); err == nil {
		t.Error("a missing window folder is no error")
	}
}

// TestFinalizeExportFails: a report nsys cannot export is a warning; the window keeps it.
func TestFinalizeExportFails(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "report.nsys-rep"), []byte("not a report"), 0o600); err != nil {
		t.Fatal(err)
	}
	b := New("x")
	_ = b.Configure(context.Background(), shared.Target{Nsys: "/nonexistent/nsys"})
	res, err := b.Finalize(context.Background(), shared.Window{ID: "1", Dir: dir}, shared.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Summary) != 0 || len(res.Warnings) != 1 || !strings.Contains(res.Warnings[0], "SQLite export of report.nsys-rep failed") {
		t.Errorf("result %+v", res)
	}
}

func TestFindReports(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"w.nsys-rep", "w.sqlite", "w.3.nsys-rep", "w.2.nsys-rep", "other.nsys-rep", "layers.csv", "w.qdstrm", "manifest.json"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "dir.nsys-rep"), 0o700); err != nil {
		t.Fatal(err)
	}
	got, err := findReports(shared.Window{Dir: dir, Name: "w"})
	if err != nil {
		t.Fatal(err)
	}
	var stems []string
	for _, r := range got {
		stems = append(stems, r.stem)
	}
	if !slices.Equal(stems, []string{"w", "w.2", "w.3", "other"}) {
		t.Errorf("reports %q, want the ranges in order, then the rest", stems)
	}
	if got[0].sqlite == "" || got[0].report == "" || got[1].sqlite != "" {
		t.Errorf("report w: %+v, w.2: %+v", got[0], got[1])
	}
}

func mustAbs(t *testing.T, p string) string {
	t.Helper()
	abs, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	return abs
}
