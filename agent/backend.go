package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sort"

	"github.com/nsys-agent/nsys-agent/nsys"
	"github.com/nsys-agent/nsys-agent/torchprof"
)

// Backend captures windows one way (nsys itself, the server's own profiler, ...). One
// failing backend fails its window with a clear error; it never takes the agent down.
type Backend interface {
	Name() string
	// Start begins the capture; it returns once capturing is confirmed.
	Start(ctx context.Context, w *WindowRun) error
	// Stop ends the capture and leaves the window's files in w.Dir. It may take long
	// (report generation, import) and reports progress through w.Progress. On error,
	// whatever was produced stays in w.Dir and is listed as partial artifacts.
	Stop(ctx context.Context, w *WindowRun) (warnings []string, err error)
}

// Finalizer is an optional Backend capability: work on a stopped window's files that
// does not touch the target (an export, an analysis). It runs after Stop, while the next
// window may already be capturing.
type Finalizer interface {
	Finalize(ctx context.Context, w *WindowRun) (warnings []string, err error)
}

// WindowRun is what a backend sees of a window.
type WindowRun struct {
	ID       string
	Dir      string // absolute; the backend writes only here
	Request  CreateWindowRequest
	Progress func(step string, fraction float64)
	Log      *slog.Logger
}

// Backends is the one registry of backends by name.
type Backends map[string]Backend

// Names lists the registered backends, sorted.
func (b Backends) Names() []string {
	names := make([]string, 0, len(b))
	for n := range b {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// NsysBackend captures a window with `nsys start/stop` on the agent's session; the
// SQLite export is its Finalize, so a long export never holds up the next window.
type NsysBackend struct {
	Ctl *nsys.Controller
}

func (b *NsysBackend) Name() string { return "nsys" }

func (b *NsysBackend) window(w *WindowRun) nsys.Window {
	name := "report"
	if w.Request.Name != "" {
		name = w.Request.Name
	}
	return nsys.Window{Dir: w.Dir, Name: name}
}

func (b *NsysBackend) Start(ctx context.Context, w *WindowRun) error {
	return b.Ctl.Start(ctx, b.window(w))
}

func (b *NsysBackend) Stop(ctx context.Context, w *WindowRun) ([]string, error) {
	w.Progress("nsys stop: writing the report", 0.1)
	res, err := b.Ctl.Stop(ctx, b.window(w))
	if err != nil {
		var te *nsys.TimeoutError
		if errors.As(err, &te) {
			return nil, fmt.Errorf("%w (the session was shut down; the server keeps running but can take no more nsys windows)", err)
		}
		return nil, err
	}
	warnings := res.Warnings
	if res.Imported {
		warnings = append(warnings, "nsys left only a .qdstrm; nsys-agent imported it with QdstrmImporter")
	}
	if res.Report == "" {
		return warnings, fmt.Errorf("nsys wrote only %s and it could not be imported", res.Qdstrm)
	}
	return warnings, nil
}

// Finalize exports the report to SQLite when the window asked for it, and answers "where
// did the GPU time go" from the export: summary.json (per rank GPU time, top kernels,
// imbalance; also in the manifest) and summary.html. A failed export or analysis is a
// warning: the report itself is fine.
func (b *NsysBackend) Finalize(ctx context.Context, w *WindowRun) ([]string, error) {
	if !w.Request.Export {
		return nil, nil
	}
	w.Progress("nsys export: writing SQLite", 0.6)
	sqlite, err := b.Ctl.Export(ctx, filepath.Join(w.Dir, b.window(w).Name+".nsys-rep"))
	if err != nil {
		return []string{"SQLite export failed: " + err.Error()}, nil
	}
	w.Progress("analyzing GPU time per rank", 0.85)
	if err := writeSummary(ctx, sqlite, w.Dir); err != nil && !errors.Is(err, torchprof.ErrNoKernels) {
		return []string{"analysis failed: " + err.Error()}, nil
	}
	return nil, nil
}

// SummaryFile is the per-rank analysis a window may carry; the manager copies it into
// the manifest's summary.
const SummaryFile = "summary.json"

func writeSummary(ctx context.Context, sqlite, dir string) error {
	sum, err := torchprof.AnalyzeNsysSQLite(ctx, sqlite)
	if err != nil {
		return err
	}
	data, err := json.MarshalIndent(sum, "", "  ")
	if err != nil {
		return err
	}
	if err := WriteFileAtomic(filepath.Join(dir, SummaryFile), append(data, '\n')); err != nil {
		return err
	}
	var page bytes.Buffer
	if err := sum.WriteHTML(&page); err != nil {
		return err
	}
	return WriteFileAtomic(filepath.Join(dir, "summary.html"), page.Bytes())
}
