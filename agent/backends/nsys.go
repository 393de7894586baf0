// Package backends holds the backends built into the agent, each one file implementing
// the contract in plugins/shared, listed in one place (builtin.go). Each maps the errors
// of the tool it drives onto the contract's errors itself.
package backends

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/nsys-agent/nsys-agent/internal/atomicfile"
	"github.com/nsys-agent/nsys-agent/nsys"
	"github.com/nsys-agent/nsys-agent/plugins/shared"
	"github.com/nsys-agent/nsys-agent/torchprof"
)

// Nsys captures a window with `nsys start/stop` on the agent's session. The SQLite export
// and the per-rank analysis are its Finalize, so a long export never holds up the next
// window.
type Nsys struct {
	Ctl     *nsys.Controller
	Version string // the agent's version: a built-in backend ships with it

	lost atomic.Pointer[string] // why the session can take no more windows (a hung stop shut it down)
}

var (
	_ shared.Backend   = (*Nsys)(nil)
	_ shared.Finalizer = (*Nsys)(nil)
	_ shared.Salvager  = (*Nsys)(nil)
)

// NsysName is the nsys backend's name.
const NsysName = "nsys"

func (b *Nsys) Info(ctx context.Context) (shared.Info, error) {
	return shared.Info{Name: NsysName, Version: b.Version, APIVersion: shared.APIVersion,
		Capabilities: []shared.Capability{shared.CapExport, shared.CapSummary, shared.CapNsysSession},
		Description:  "nsys start/stop on the agent's session, at any moment; reports per window, optional SQLite export and GPU-time summary"}, nil
}

// Unavailable says why the session cannot take nsys windows ("" = it can). The state
// machine asks before every window, so a session lost to a hung stop refuses new windows
// at once, with the reason, instead of failing each one after a try.
func (b *Nsys) Unavailable() string {
	if why := b.lost.Load(); why != nil {
		return *why
	}
	if b.Ctl != nil && b.Ctl.Mode == nsys.ModeCudaProfiler {
		return "the session is armed with --arm cuda-profiler: the server opens its capture ranges itself (e.g. SGLang /start_profile with CUDA_PROFILER); run the agent with --arm launch or start-later for nsys windows"
	}
	return ""
}

func (b *Nsys) window(w shared.Window) nsys.Window {
	name := "report"
	if w.Name != "" {
		name = w.Name
	}
	return nsys.Window{Dir: w.Dir, Name: name}
}

// CaptureBytes is what the window's capture has streamed so far (the state machine's
// CaptureSizer, for --max-window-bytes): nsys writes it into $TMPDIR until the stop, not
// into the window folder.
func (b *Nsys) CaptureBytes(ctx context.Context, w shared.Window) (int64, error) {
	return nsys.CaptureBytes(b.Ctl.Session)
}

func (b *Nsys) Start(ctx context.Context, w shared.Window) error {
	return mapNsysError(b.Ctl.Start(ctx, b.window(w)))
}

func (b *Nsys) Stop(ctx context.Context, w shared.Window, p shared.Progress) (shared.Result, error) {
	stopDone := make(chan struct{})
	go stopProgress(p, b.Ctl.StopDeadline(), stopDone)
	res, err := b.Ctl.Stop(ctx, b.window(w))
	close(stopDone)
	if err != nil {
		var te *nsys.TimeoutError
		if errors.As(err, &te) {
			why := "a hung nsys stop made nsys-agent shut the session down: this server can take no more nsys windows (nsys cannot attach to a running process again); restart the agent, and with it the server, to capture again"
			b.lost.Store(&why)
			err = fmt.Errorf("%w (%s)", err, why)
		}
		return shared.Result{}, mapNsysError(err)
	}
	out := shared.Result{Warnings: res.Warnings}
	for _, f := range res.Files {
		out.Artifacts = append(out.Artifacts, filepath.Base(f))
	}
	if res.Imported {
		out.Warnings = append(out.Warnings, "nsys left only a .qdstrm; nsys-agent imported it with QdstrmImporter")
	}
	if res.Report == "" {
		return out, fmt.Errorf("nsys wrote only %s and it could not be imported", res.Qdstrm)
	}
	return out, nil
}

// Salvage keeps what a capture left when the target died: the front-end's raw stream,
// imported so it can be opened (before, a crashed target's .qdstrm was kept but never
// imported).
func (b *Nsys) Salvage(ctx context.Context, w shared.Window, p shared.Progress) (shared.Result, error) {
	p.Send(shared.ProgressEvent{Step: "the target died: keeping what the capture left", Fraction: 0.3})
	res, err := b.Ctl.Salvage(ctx, b.window(w))
	if err != nil {
		return shared.Result{}, err
	}
	out := shared.Result{Warnings: res.Warnings}
	for _, f := range res.Files {
		out.Artifacts = append(out.Artifacts, filepath.Base(f))
	}
	if res.Imported {
		out.Warnings = append(out.Warnings, "the raw capture the target left was imported: "+filepath.Base(res.Report)+" holds the window up to the crash")
	}
	return out, nil
}

// stopProgress reports a running `nsys stop` every 2 s with its elapsed time and deadline,
// so a stop that hangs shows it (before, the bar sat at "10%" for the whole timeout).
func stopProgress(p shared.Progress, limit time.Duration, done <-chan struct{}) {
	begin := time.Now()
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	for {
		elapsed := time.Since(begin)
		frac := 0.1 + 0.4*min(elapsed.Seconds()/limit.Seconds(), 1)
		p.Send(shared.ProgressEvent{Step: fmt.Sprintf("nsys stop: writing the report (%s of at most %s)", elapsed.Round(time.Second), limit), Fraction: frac})
		select {
		case <-done:
			return
		case <-tick.C:
		}
	}
}

// Finalize exports the report to SQLite when the window asked for it, and answers "where
// did the GPU time go" from the export: summary.json (per rank GPU time, top kernels,
// imbalance), summary.html, and the compact summary in the result. A failed export or
// analysis is a warning: the report itself is fine.
func (b *Nsys) Finalize(ctx context.Context, w shared.Window, p shared.Progress) (shared.Result, error) {
	if !w.Export {
		return shared.Result{}, nil
	}
	p.Send(shared.ProgressEvent{Step: "nsys export: writing SQLite", Fraction: 0.6})
	sqlite, err := b.Ctl.Export(ctx, filepath.Join(w.Dir, b.window(w).Name+".nsys-rep"))
	if err != nil {
		return shared.Result{Warnings: []string{"SQLite export failed: " + err.Error()}}, nil
	}
	res := shared.Result{Artifacts: []string{filepath.Base(sqlite)}}
	p.Send(shared.ProgressEvent{Step: "analyzing GPU time per rank", Fraction: 0.85})
	summary, err := WriteSummary(ctx, sqlite, w.Dir)
	switch {
	case errors.Is(err, torchprof.ErrNoKernels):
		res.Warnings = append(res.Warnings, "the window recorded no GPU kernels: nothing to summarize")
	case err != nil:
		res.Warnings = append(res.Warnings, "analysis failed: "+err.Error())
	default:
		res.Summary = summary
		res.Artifacts = append(res.Artifacts, SummaryFile, SummaryPage)
	}
	return res, nil
}

// SummaryFile and SummaryPage are the per-rank analysis a window may carry.
const (
	SummaryFile = "summary.json"
	SummaryPage = "summary.html"
)

// WriteSummary analyzes an nsys SQLite export into dir (summary.json, summary.html) and
// returns the compact summary for the manifest.
func WriteSummary(ctx context.Context, sqlite, dir string) (json.RawMessage, error) {
	sum, err := torchprof.AnalyzeNsysSQLite(ctx, sqlite)
	if err != nil {
		return nil, err
	}
	data, err := json.MarshalIndent(sum, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := atomicfile.Write(filepath.Join(dir, SummaryFile), append(data, '\n'), 0o600); err != nil {
		return nil, err
	}
	page, err := atomicfile.New(filepath.Join(dir, SummaryPage), 0o600)
	if err != nil {
		return nil, err
	}
	if err := sum.WriteHTML(page); err != nil {
		page.Abort()
		return nil, err
	}
	if err := page.Commit(); err != nil {
		return nil, err
	}
	return json.Marshal(sum.Compact())
}

// mapNsysError is the one place nsys errors become the contract's: a session in the
// wrong state is busy (retry later), a session that is gone means the target is gone.
func mapNsysError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, nsys.ErrSessionNotFound):
		return shared.Wrap(shared.ErrTargetGone, err)
	case errors.Is(err, nsys.ErrWrongState):
		return shared.Wrap(shared.ErrBusy, err)
	}
	return err
}
