// Package layerwise is the layerwise-nvtx backend: per-layer GPU time of an SGLang server.
//
// Its launch hook adds SGLang's --enable-layerwise-nvtx-marker and --disable-cuda-graph to
// the server command and arms the nsys session for cudaProfilerApi ranges. Its windows are
// captured by the built-in cuda-profiler backend (Info.CapturesWith): the server's
// /start_profile with CUDA_PROFILER opens a capture range, and the agent moves the range's
// report into the window folder. This backend's Finalize then exports the report to SQLite
// and turns SGLang's per-module NVTX ranges into a per-layer table: GPU time of the
// kernels launched inside each module's ranges, per rank (process), in the window's
// summary, as layers.csv, and as text for `nsys-agent show` (WriteTable).
//
// It never touches the session: Start and Stop are refused, the agent drives the capture.
package layerwise

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nsys-agent/nsys-agent/nsys"
	"github.com/nsys-agent/nsys-agent/plugins/shared"
)

// Name is the backend's name.
const Name = "layerwise-nvtx"

// TableFile is the full layer table in the window folder.
const TableFile = "layers.csv"

// Window options.
const (
	OptionTop  = "top"
	OptionSort = "sort"
	// DefaultTop is how many modules per rank the summary keeps by default.
	DefaultTop = 10
	maxTop     = 1000
)

// Backend is the layerwise-nvtx backend. The zero value works once configured; New sets
// its version.
type Backend struct {
	version string
	// ExportTimeout bounds one `nsys export` (default 10 min: a large report takes minutes).
	ExportTimeout time.Duration

	mu   sync.Mutex
	nsys string // from Configure: the binary the session runs with
}

var (
	_ shared.Backend    = (*Backend)(nil)
	_ shared.Configurer = (*Backend)(nil)
	_ shared.Finalizer  = (*Backend)(nil)
	_ shared.Launcher   = (*Backend)(nil)
)

// New returns the backend, reporting version in its Info.
func New(version string) *Backend { return &Backend{version: version} }

func (b *Backend) Info(context.Context) (shared.Info, error) {
	return shared.Info{
		Name: Name, Version: b.version, APIVersion: shared.APIVersion,
		// Steps and export are the capturing cuda-profiler backend's; the state machine
		// reads them from this Info.
		Capabilities: []shared.Capability{shared.CapSteps, shared.CapExport, shared.CapSummary},
		Description:  "per-layer GPU time of an SGLang server: its layerwise NVTX ranges (--enable-layerwise-nvtx-marker, --disable-cuda-graph, added at launch) over a cuda-profiler window's report",
		Options: []shared.Option{
			{Name: OptionTop, Usage: fmt.Sprintf("modules per rank in the window's summary (default %d, at most %d; %s has them all)", DefaultTop, maxTop, TableFile)},
			{Name: OptionSort, Usage: "order of the table: self (GPU time of the kernels a module launched itself; default) or total (including its submodules)"},
		},
		CapturesWith: armCudaProfiler,
	}, nil
}

// errPostOnly is what Start and Stop answer: the agent captures these windows itself.
var errPostOnly = shared.Wrap(shared.ErrUnsupported, errors.New("layerwise-nvtx does not capture: its windows are captured by the cuda-profiler backend (Info.CapturesWith), and only its Finalize runs over their reports"))

func (b *Backend) Start(context.Context, shared.Window) error { return errPostOnly }

func (b *Backend) Stop(context.Context, shared.Window, shared.Progress) (shared.Result, error) {
	return shared.Result{}, errPostOnly
}

// Configure keeps the nsys binary of the session: exports use the same one.
func (b *Backend) Configure(_ context.Context, t shared.Target) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.nsys = t.Nsys
	return nil
}

func (b *Backend) nsysPath() (string, error) {
	b.mu.Lock()
	p := b.nsys
	b.mu.Unlock()
	if p != "" {
		return p, nil
	}
	return nsys.Locate("")
}

// Finalize turns the window's report(s) into the layer table. A report without a .sqlite
// beside it is exported first. A failed export or analysis is a warning, as for the
// other backends: the report itself is fine and stays the window's.
func (b *Backend) Finalize(ctx context.Context, w shared.Window, p shared.Progress) (shared.Result, error) {
	top, order, warnings := options(w.Options)
	res := shared.Result{Warnings: warnings}
	reports, err := findReports(w)
	if err != nil {
		return res, err
	}
	if len(reports) == 0 {
		res.Warnings = append(res.Warnings, "no report in the window folder to make a layer table of (the capture left none: see its warnings)")
		return res, nil
	}
	a := NewAnalysis()
	for i, r := range reports {
		frac := 0.5 + 0.4*float64(i)/float64(len(reports))
		sqlite := r.sqlite
		if sqlite == "" {
			p.Send(shared.ProgressEvent{Step: "nsys export: writing SQLite of " + filepath.Base(r.report), Fraction: frac})
			sqlite, err = b.export(ctx, r.report)
			if err != nil {
				if ctx.Err() != nil {
					return res, ctx.Err()
				}
				res.Warnings = append(res.Warnings, fmt.Sprintf("SQLite export of %s failed, so it has no layer table: %v", filepath.Base(r.report), err))
				continue
			}
			res.Artifacts = append(res.Artifacts, filepath.Base(sqlite))
		}
		p.Send(shared.ProgressEvent{Step: "attributing kernels to layers in " + filepath.Base(sqlite), Fraction: frac + 0.2/float64(len(reports))})
		if err := a.AddSQLite(ctx, sqlite); err != nil {
			if ctx.Err() != nil {
				return res, ctx.Err()
			}
			res.Warnings = append(res.Warnings, err.Error())
		}
	}
	if len(a.reports) == 0 {
		return res, nil
	}
	res.Warnings = append(res.Warnings, a.Warnings()...)
	p.Send(shared.ProgressEvent{Step: "writing " + TableFile, Fraction: 0.95})
	if err := a.WriteCSVFile(filepath.Join(w.Dir, TableFile), order); err != nil {
		res.Warnings = append(res.Warnings, err.Error())
	} else {
		res.Artifacts = append(res.Artifacts, TableFile)
	}
	s := a.Summary(top, order)
	s.Table = TableFile
	raw, err := marshalSummary(s)
	if err != nil {
		return res, err
	}
	res.Summary = raw
	return res, nil
}

func (b *Backend) export(ctx context.Context, report string) (string, error) {
	bin, err := b.nsysPath()
	if err != nil {
		return "", err
	}
	timeout := b.ExportTimeout
	if timeout <= 0 {
		timeout = 10 * time.Minute
	}
	return nsys.ExportSQLite(ctx, nsys.NewExecRunner(bin), report, timeout)
}

// options reads the window options top and sort; a bad value falls back to the default
// with a warning (the capture is done by then: it is not failed for a display choice).
func options(o map[string]string) (top int, order string, warnings []string) {
	top, order = DefaultTop, SortSelf
	if v, ok := o[OptionTop]; ok {
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil || n < 1 || n > maxTop {
			warnings = append(warnings, fmt.Sprintf("option top=%q is not a number from 1 to %d; the summary keeps %d modules per rank", v, maxTop, DefaultTop))
		} else {
			top = n
		}
	}
	if v, ok := o[OptionSort]; ok {
		switch strings.TrimSpace(v) {
		case SortSelf, SortTotal:
			order = strings.TrimSpace(v)
		default:
			warnings = append(warnings, fmt.Sprintf("option sort=%q is neither %s nor %s; the table is ordered by %s time", v, SortSelf, SortTotal, SortSelf))
		}
	}
	return top, order, warnings
}

// report is one capture range's report in the window folder, and its export if present.
type report struct {
	stem, report, sqlite string
}

// findReports lists the window's reports: the cuda-profiler backend names the first range
// NAME.nsys-rep (the window's name, or "report") and further ones NAME.2.nsys-rep, ...; an
// export made with --export is NAME.sqlite beside it. Only regular files directly in the
// folder count (a planted link is no report). The first range comes first.
func findReports(w shared.Window) ([]report, error) {
	ents, err := os.ReadDir(w.Dir)
	if err != nil {
		return nil, fmt.Errorf("listing the window folder %s: %w", w.Dir, err)
	}
	byStem := map[string]*report{}
	for _, e := range ents {
		if !e.Type().IsRegular() {
			continue
		}
		name := e.Name()
		var stem string
		switch {
		case strings.HasSuffix(name, ".nsys-rep"):
			stem = strings.TrimSuffix(name, ".nsys-rep")
		case strings.HasSuffix(name, ".sqlite"):
			stem = strings.TrimSuffix(name, ".sqlite")
		default:
			continue
		}
		if fi, err := e.Info(); err != nil || fi.Size() == 0 {
			continue
		}
		r := byStem[stem]
		if r == nil {
			r = &report{stem: stem}
			byStem[stem] = r
		}
		if strings.HasSuffix(name, ".sqlite") {
			r.sqlite = filepath.Join(w.Dir, name)
		} else {
			r.report = filepath.Join(w.Dir, name)
		}
	}
	first := w.Name
	if first == "" {
		first = "report"
	}
	out := make([]report, 0, len(byStem))
	for _, r := range byStem {
		out = append(out, *r)
	}
	sort.Slice(out, func(i, j int) bool {
		ri, rj := rangeNumber(out[i].stem, first), rangeNumber(out[j].stem, first)
		if ri != rj {
			return ri < rj
		}
		return out[i].stem < out[j].stem
	})
	return out, nil
}

// rangeNumber orders NAME (1), NAME.2, NAME.3, ...; other stems after them.
func rangeNumber(stem, first string) int {
	if stem == first {
		return 1
	}
	if n, err := strconv.Atoi(strings.TrimPrefix(stem, first+".")); err == nil && strings.HasPrefix(stem, first+".") {
		return n
	}
	return 1 << 30
}
