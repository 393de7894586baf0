package backends

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nsys-agent/nsys-agent/nsys"
	"github.com/nsys-agent/nsys-agent/plugins/shared"
	"github.com/nsys-agent/nsys-agent/torchprof/serverprof"
)

// CudaProfilerName is the cuda-profiler backend's name.
const CudaProfilerName = "cuda-profiler"

// DefaultRangeWait is how long the cuda-profiler backend waits for a capture range to
// show (the session in RangeCollection/RangeGeneration, or a new range report) before it
// says none fired.
const DefaultRangeWait = 2 * time.Minute

// RangeWaitEnv overrides DefaultRangeWait (a Go duration, e.g. "10s").
const RangeWaitEnv = "NSYS_AGENT_CUDA_RANGE_WAIT"

// RangeWaitFromEnv reads RangeWaitEnv; 0 when unset or not a positive duration.
func RangeWaitFromEnv() time.Duration {
	d, err := time.ParseDuration(os.Getenv(RangeWaitEnv))
	if err != nil || d <= 0 {
		return 0
	}
	return d
}

// CudaProfiler captures a window as one nsys capture range the server opens itself: the
// agent's session is launched `nsys profile --capture-range=cudaProfilerApi
// --capture-range-end=repeat` (--arm cuda-profiler), and a window asks the server's
// /start_profile for CUDA_PROFILER (cudaProfilerStart at a step boundary), ends with
// /stop_profile (cudaProfilerStop) or by itself after num_steps. nsys writes each range's
// report next to the session's first output (FIRST.1.nsys-rep, FIRST.2, ...); the backend
// moves the new one into the window folder.
type CudaProfiler struct {
	Ctl       *nsys.Controller
	Version   string
	ServerURL string             // the server's own HTTP address (--server-url, or the demo's)
	HTTP      serverprof.Options // timeouts, API key header
	// RangeWait bounds the wait for a range: with no range seen in progress and no new
	// report for this long, the window fails with "no capture range fired" (default
	// DefaultRangeWait). A range seen in progress resets it.
	RangeWait time.Duration
	// Poll is the interval between two looks at the session and the files (default 500 ms).
	Poll time.Duration
	// Settle is how long the new range reports must keep their sizes, with the session
	// out of RangeGeneration, before they are taken (default 3 s): nsys may still be
	// importing the range's .qdstrm into its .nsys-rep.
	Settle time.Duration
	// TargetLog is the target's output file. nsys 2025.3.1 with
	// --capture-range-end=repeat writes a range's report only when the server exits
	// (measured on the H200: FIRST.1..3.nsys-rep appeared at exit, none at the ranges'
	// ends); when a range ends it prints "Generating '/tmp/nsys-report-XXXX.qdstrm'" and
	// writes that raw stream. The backend imports a copy of it into the window ("" :
	// reports next to the first output only).
	TargetLog string
	// StreamDir is where nsys writes range streams (its TMPDIR; "" = os.TempDir(), which
	// is the agent's TMPDIR, the one every nsys command of the session runs with).
	StreamDir string

	// Hooks for tests; nil: the controller's.
	state       func(ctx context.Context) (nsys.State, error)
	importRep   func(ctx context.Context, qdstrm string) (string, error)
	firstOutput string

	mu     sync.Mutex
	client *serverprof.Client
	wins   map[string]*cudaWindow
}

// cudaWindow is what the backend keeps of one open window.
type cudaWindow struct {
	sw        *serverprof.Window
	before    map[string]fileStamp // range reports next to the first output at Start
	logOffset int64                // size of the target's output at Start
	sawRange  atomic.Bool
	started   time.Time
}

type fileStamp struct {
	size int64
	mod  time.Time
}

var (
	_ shared.Backend   = (*CudaProfiler)(nil)
	_ shared.Waiter    = (*CudaProfiler)(nil)
	_ shared.Finalizer = (*CudaProfiler)(nil)
)

func (b *CudaProfiler) Info(ctx context.Context) (shared.Info, error) {
	return shared.Info{Name: CudaProfilerName, Version: b.Version, APIVersion: shared.APIVersion,
		Capabilities: []shared.Capability{shared.CapSteps, shared.CapExport, shared.CapSummary, shared.CapNsysSession},
		Description:  "the server's /start_profile with CUDA_PROFILER opens an nsys capture range at a step boundary (--arm cuda-profiler); one report per window, bounded by steps or stop"}, nil
}

// Unavailable says why this agent cannot take cuda-profiler windows ("" = it can).
func (b *CudaProfiler) Unavailable() string {
	switch {
	case b.Ctl == nil:
		return "needs a running agent launched with --arm cuda-profiler and --server-url"
	case b.Ctl.Mode != nsys.ModeCudaProfiler:
		return fmt.Sprintf("the session is armed with --arm %s, not for cudaProfilerApi ranges: run the agent with --arm cuda-profiler", b.Ctl.Mode)
	case b.ServerURL == "":
		return "the agent knows no server URL: run it with --server-url (the server's own HTTP address, e.g. http://127.0.0.1:30000)"
	case b.first() == "":
		return "the session has no first output to find range reports next to"
	}
	return ""
}

func (b *CudaProfiler) first() string {
	if b.firstOutput != "" {
		return b.firstOutput
	}
	if b.Ctl != nil {
		return b.Ctl.FirstOutput
	}
	return ""
}

func (b *CudaProfiler) rangeWait() time.Duration {
	if b.RangeWait > 0 {
		return b.RangeWait
	}
	return DefaultRangeWait
}

func (b *CudaProfiler) poll() time.Duration {
	if b.Poll > 0 {
		return b.Poll
	}
	return 500 * time.Millisecond
}

func (b *CudaProfiler) settle() time.Duration {
	if b.Settle > 0 {
		return b.Settle
	}
	return 3 * time.Second
}

// sessionState is the session's state; fresh: list now rather than trust the watcher's
// row of up to 2.5 s ago (before taking files nsys may still be writing).
func (b *CudaProfiler) sessionState(ctx context.Context, fresh bool) (nsys.State, error) {
	if b.state != nil {
		return b.state(ctx)
	}
	// The agent's watcher lists sessions every 2 s: a fresh row saves an nsys run per poll.
	if st, at, ok := b.Ctl.WatchedState(); !fresh && ok && st != nsys.StateShutdown && time.Since(at) < 2500*time.Millisecond {
		return st, nil
	}
	return b.Ctl.State(ctx)
}

func (b *CudaProfiler) importQdstrm(ctx context.Context, qdstrm string) (string, error) {
	if b.importRep != nil {
		return b.importRep(ctx, qdstrm)
	}
	return b.Ctl.Import(ctx, qdstrm)
}

// serverClient detects the server's flavor once (SGLang's /get_server_info first) and
// keeps the client.
func (b *CudaProfiler) serverClient(ctx context.Context) (*serverprof.Client, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.client != nil {
		return b.client, nil
	}
	flavor, err := serverprof.Detect(ctx, b.ServerURL, b.HTTP)
	if errors.Is(err, serverprof.ErrUnsupported) {
		// Not told apart by its GETs: speak SGLang, whose request shape the others share.
		flavor, err = serverprof.SGLang, nil
	}
	if err != nil {
		return nil, err
	}
	c, err := serverprof.New(b.ServerURL, flavor, b.HTTP)
	if err != nil {
		return nil, err
	}
	b.client = c
	return c, nil
}

// serverDir is the sub-folder of the window the server is pointed at (output_dir): the
// window folder itself already holds the manifest, and serverprof makes a new dir per
// window. A CUDA_PROFILER-only window writes nothing there; it is removed when empty.
const serverDir = "server"

func (b *CudaProfiler) Start(ctx context.Context, w shared.Window) error {
	if why := b.Unavailable(); why != "" {
		return shared.Wrap(shared.ErrUnsupported, errors.New(why))
	}
	c, err := b.serverClient(ctx)
	if err != nil {
		return mapServerError(err)
	}
	before, err := b.rangeFiles()
	if err != nil {
		return err
	}
	req := serverprof.Request{ID: serverDir, BaseDir: w.Dir, NumSteps: w.Steps,
		Activities: []serverprof.Activity{serverprof.CUDAProfiler}}
	if c.Flavor() == serverprof.VLLM {
		// vLLM takes no body: "profiler": "cuda" in its --profiler-config makes the start
		// a cudaProfilerStart; steps are refused by the client (ErrUnsupported).
		req.BaseDir, req.Activities = "", nil
	}
	sw, err := c.Start(ctx, req)
	if err != nil {
		return mapServerError(err)
	}
	b.mu.Lock()
	if b.wins == nil {
		b.wins = map[string]*cudaWindow{}
	}
	b.wins[w.ID] = &cudaWindow{sw: sw, before: before, started: time.Now(), logOffset: b.logSize()}
	b.mu.Unlock()
	return nil
}

func (b *CudaProfiler) window(id string) *cudaWindow {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.wins[id]
}

func (b *CudaProfiler) forget(w shared.Window) {
	b.mu.Lock()
	delete(b.wins, w.ID)
	b.mu.Unlock()
	_ = os.Remove(filepath.Join(w.Dir, serverDir)) // only when empty
}

// Stop asks the server to stop (cudaProfilerStop), then waits for the range's report.
func (b *CudaProfiler) Stop(ctx context.Context, w shared.Window, p shared.Progress) (shared.Result, error) {
	cw := b.window(w.ID)
	if cw == nil {
		return shared.Result{}, fmt.Errorf("window %s: the cuda-profiler backend has no record of its start (was the agent restarted?); look for range reports next to %s", w.ID, b.first())
	}
	defer b.forget(w)
	p.Send(shared.ProgressEvent{Step: "asking the server to stop profiling (cudaProfilerStop)", Fraction: 0.1})
	var warnings []string
	c, err := b.serverClient(ctx)
	if err != nil {
		return shared.Result{}, mapServerError(err)
	}
	// A range open now is the window's: then a missing report is a different failure
	// from "no range fired".
	if st, err := b.sessionState(ctx, true); err == nil && (st == nsys.StateRangeCollection || st == nsys.StateRangeGeneration) {
		cw.sawRange.Store(true)
	}
	res, err := c.Stop(ctx, cw.sw)
	switch {
	case errors.Is(err, serverprof.ErrNotRunning), errors.Is(err, serverprof.ErrTimeout):
		// The server ended the profile itself, or is still closing it: the range, if
		// one fired, is written by nsys all the same.
		warnings = append(warnings, err.Error())
	case errors.Is(err, serverprof.ErrServerDown):
		return shared.Result{}, mapServerError(err)
	case err != nil:
		return shared.Result{}, mapServerError(err)
	case res.AlreadyStopped:
		warnings = append(warnings, "the server had already ended the window by itself (num_steps)")
	}
	p.Send(shared.ProgressEvent{Step: "waiting for nsys to write the range's report", Fraction: 0.3})
	out, err := b.awaitRange(ctx, w, cw, p)
	out.Warnings = append(warnings, out.Warnings...)
	return out, err
}

// Wait follows a window bounded by steps: the server closes the range itself after
// num_steps, and Wait returns once nsys wrote the range's report (moved into the window
// folder), or fails when no range fired within RangeWait.
func (b *CudaProfiler) Wait(ctx context.Context, w shared.Window) (shared.Result, error) {
	cw := b.window(w.ID)
	if cw == nil {
		return shared.Result{}, fmt.Errorf("window %s: the cuda-profiler backend has no record of its start", w.ID)
	}
	res, err := b.awaitRange(ctx, w, cw, nil)
	if ctx.Err() != nil {
		// A stop came first: Stop takes over the window (and forgets it).
		return res, err
	}
	if err != nil {
		// The window failed: make sure the server is not left profiling (a bounded
		// window it already ended answers "already stopped").
		if c, cerr := b.serverClient(context.Background()); cerr == nil {
			sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			_, _ = c.Stop(sctx, cw.sw)
			cancel()
		}
	}
	b.forget(w)
	return res, err
}

// Finalize exports the range's report to SQLite when the window asked for it (--export)
// and answers "where did the GPU time go", exactly as the nsys backend does: the report is
// named the same way (the window's name, or "report").
func (b *CudaProfiler) Finalize(ctx context.Context, w shared.Window, p shared.Progress) (shared.Result, error) {
	if !w.Export {
		return shared.Result{}, nil
	}
	return (&Nsys{Ctl: b.Ctl, Version: b.Version}).Finalize(ctx, w, p)
}

// awaitRange waits for the new range report(s) next to the first output, then moves them
// into the window folder. It gives up when, for RangeWait, no range was seen in progress
// and no new report appeared or grew.
func (b *CudaProfiler) awaitRange(ctx context.Context, w shared.Window, cw *cudaWindow, p shared.Progress) (shared.Result, error) {
	wait := b.rangeWait()
	deadline := time.Now().Add(wait)
	var (
		last       map[string]fileStamp
		lastChange = time.Now()
		lastState  nsys.State
		stream     string // the raw stream nsys named for this window's range
		streamSize int64  = -1
		streamSeen        = time.Now()
	)
	tick := time.NewTicker(b.poll())
	defer tick.Stop()
	for {
		files, err := b.newRangeFiles(cw.before)
		if err != nil {
			return shared.Result{}, err
		}
		st, err := b.sessionState(ctx, len(files) > 0)
		if errors.Is(err, nsys.ErrSessionNotFound) {
			return shared.Result{}, shared.Wrap(shared.ErrTargetGone, err)
		}
		if err == nil {
			lastState = st
		}
		inRange := err == nil && (st == nsys.StateRangeCollection || st == nsys.StateRangeGeneration)
		now := time.Now()
		if inRange {
			cw.sawRange.Store(true)
			deadline = now.Add(wait)
		}
		if len(files) > 0 && !sameFiles(last, files) {
			lastChange = now
			deadline = now.Add(wait) // a report being written
		}
		settled := len(files) > 0 && len(nonEmpty(files)) == len(files) && now.Sub(lastChange) >= b.settle()
		if len(files) == 0 && cw.sawRange.Load() && !inRange {
			if stream == "" {
				stream = b.streamSince(cw.logOffset)
			}
			if stream == "" {
				// nsys's output reaches target.log block-buffered (seen: its "Generating"
				// lines only at the server's exit), so look for the stream itself.
				stream = b.newStream(cw.started)
			}
			if stream != "" {
				if fi, err := os.Stat(stream); err == nil && fi.Size() > 0 {
					if fi.Size() != streamSize {
						streamSize, streamSeen = fi.Size(), now
						deadline = now.Add(wait)
					} else if now.Sub(streamSeen) >= b.settle() {
						if p != nil {
							p.Send(shared.ProgressEvent{Step: "importing the range's raw stream", Fraction: 0.7})
						}
						return b.takeStream(ctx, w, stream)
					}
				}
			}
		}
		if settled && !inRange {
			if p != nil {
				p.Send(shared.ProgressEvent{Step: "moving the range report into the window folder", Fraction: 0.7})
			}
			return b.take(ctx, w, files)
		}
		last = files
		if now.After(deadline) && !inRange {
			if full := nonEmpty(files); len(full) > 0 {
				return b.take(ctx, w, full)
			}
			return shared.Result{}, b.noRange(cw, lastState, wait)
		}
		select {
		case <-ctx.Done():
			return shared.Result{}, fmt.Errorf("window %s: stopped waiting for the capture range's report: %w", w.ID, ctx.Err())
		case <-tick.C:
		}
	}
}

// logSize is the target's output size now (0 when unknown).
func (b *CudaProfiler) logSize() int64 {
	if b.TargetLog == "" {
		return 0
	}
	fi, err := os.Stat(b.TargetLog)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// streamRE is nsys's line for the raw stream of a range it ends.
var streamRE = regexp.MustCompile(`Generating '(/[^']+\.qdstrm)'`)

// streamSince returns the first raw stream nsys named in the target's output after
// offset ("" when none): the one of this window's range, since ranges do not overlap.
func (b *CudaProfiler) streamSince(offset int64) string {
	if b.TargetLog == "" {
		return ""
	}
	f, err := os.Open(b.TargetLog)
	if err != nil {
		return ""
	}
	defer f.Close()
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return ""
	}
	raw, err := io.ReadAll(io.LimitReader(f, 16<<20))
	if err != nil {
		return ""
	}
	if m := streamRE.FindSubmatch(raw); m != nil {
		return string(m[1])
	}
	return ""
}

// newStream finds the raw stream of this window's range in nsys's temporary folder: the
// one nsys-report-*.qdstrm written there since the window started. With several (another
// session's range ended too) it takes none: a capture is never attributed on a guess.
func (b *CudaProfiler) newStream(since time.Time) string {
	tmp := b.StreamDir
	if tmp == "" {
		tmp = os.TempDir()
	}
	paths, _ := filepath.Glob(filepath.Join(tmp, "nsys-report-*.qdstrm"))
	var fresh []string
	for _, p := range paths {
		if fi, err := os.Lstat(p); err == nil && fi.Mode().IsRegular() && fi.ModTime().After(since) {
			fresh = append(fresh, p)
		}
	}
	if len(fresh) == 1 {
		return fresh[0]
	}
	return ""
}

// takeStream imports a copy of the range's raw stream into the window folder. A copy: nsys
// still turns the original into FIRST.N.nsys-rep when the server exits.
func (b *CudaProfiler) takeStream(ctx context.Context, w shared.Window, stream string) (shared.Result, error) {
	name := w.Name
	if name == "" {
		name = "report"
	}
	dst := filepath.Join(w.Dir, name+".qdstrm")
	if err := nsys.CopyFile(stream, dst); err != nil {
		return shared.Result{}, fmt.Errorf("copying the range's raw stream %s into the window folder: %w", stream, err)
	}
	rep, err := b.importQdstrm(ctx, dst)
	if err != nil {
		return shared.Result{Artifacts: []string{filepath.Base(dst)}}, err
	}
	_ = os.Remove(dst) // the report holds it all; the original stays with nsys
	return shared.Result{Artifacts: []string{filepath.Base(rep)},
		Warnings: []string{"this nsys writes a range's report only when the server exits; the window's report was imported from the raw stream nsys wrote at the range's end (" + stream + ")"}}, nil
}

func (b *CudaProfiler) noRange(cw *cudaWindow, st nsys.State, wait time.Duration) error {
	if cw.sawRange.Load() {
		return fmt.Errorf("a capture range ran (the session went through RangeCollection) but nsys wrote no report next to %s within %s of its end; look there and in nsys's output (target.log)", b.first(), wait)
	}
	state := ""
	if st != "" {
		state = fmt.Sprintf(" (the session stayed in %s)", st)
	}
	return fmt.Errorf("no capture range fired: the server made no cudaProfilerStart/Stop call during the window%s and no new range report appeared next to %s within %s — did it take any steps (send it requests)? SGLang calls it only on the first GPU of each node, vLLM only with --profiler-config '{\"profiler\": \"cuda\"}', and a server without CUDA (the demo target) never does", state, b.first(), wait)
}

// rangeFiles lists the range reports next to the first output: FIRST.<n>.nsys-rep,
// .qdstrm (and FIRST.nsys-rep, for an nsys that names the first range so).
func (b *CudaProfiler) rangeFiles() (map[string]fileStamp, error) {
	first := b.first()
	dir, base := filepath.Dir(first), filepath.Base(first)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("listing range reports next to %s: %w", first, err)
	}
	out := map[string]fileStamp{}
	for _, e := range ents {
		name := e.Name()
		if !e.Type().IsRegular() || !strings.HasPrefix(name, base+".") || rangeExt(name) == "" {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			continue
		}
		out[filepath.Join(dir, name)] = fileStamp{size: fi.Size(), mod: fi.ModTime()}
	}
	return out, nil
}

// newRangeFiles lists the range reports that were not there (or not so) at Start.
func (b *CudaProfiler) newRangeFiles(before map[string]fileStamp) (map[string]fileStamp, error) {
	now, err := b.rangeFiles()
	if err != nil {
		return nil, err
	}
	for p, s := range now {
		if old, ok := before[p]; ok && old == s {
			delete(now, p)
		}
	}
	return now, nil
}

func rangeExt(name string) string {
	for _, ext := range []string{".nsys-rep", ".qdrep", ".qdstrm"} {
		if strings.HasSuffix(name, ext) {
			return ext
		}
	}
	return ""
}

func sameFiles(a, b map[string]fileStamp) bool {
	if len(a) != len(b) {
		return false
	}
	for p, s := range b {
		if old, ok := a[p]; !ok || old != s {
			return false
		}
	}
	return true
}

// nonEmpty drops the files nsys has not written anything into.
func nonEmpty(files map[string]fileStamp) map[string]fileStamp {
	out := map[string]fileStamp{}
	for p, s := range files {
		if s.size > 0 {
			out[p] = s
		}
	}
	return out
}

// take moves the new range reports into the window folder: the first range as NAME.*
// (the window's name, or "report"), further ones as NAME.2.*, ...; a lone .qdstrm is
// imported.
func (b *CudaProfiler) take(ctx context.Context, w shared.Window, files map[string]fileStamp) (shared.Result, error) {
	name := w.Name
	if name == "" {
		name = "report"
	}
	stems := map[string][]string{}
	for p := range files {
		stem := strings.TrimSuffix(p, rangeExt(p))
		stems[stem] = append(stems[stem], p)
	}
	order := make([]string, 0, len(stems))
	for s := range stems {
		order = append(order, s)
	}
	sort.Slice(order, func(i, j int) bool { return rangeIndex(order[i]) < rangeIndex(order[j]) })
	var res shared.Result
	if len(order) > 1 {
		res.Warnings = append(res.Warnings, fmt.Sprintf("%d capture ranges fired during the window; each has its own report", len(order)))
	}
	var failed []string
	for i, stem := range order {
		dst := name
		if i > 0 {
			dst = name + "." + strconv.Itoa(i+1)
		}
		var rep, qdstrm string
		for _, src := range stems[stem] {
			to := filepath.Join(w.Dir, dst+rangeExt(src))
			if err := moveReport(src, to); err != nil {
				_ = os.Chmod(src, 0o600)
				return res, fmt.Errorf("moving range report %s into the window folder: %w; it stays there (mode 0600)", src, err)
			}
			_ = os.Chmod(to, 0o600) // reports embed the server's environment
			if rangeExt(src) == ".qdstrm" {
				qdstrm = to
			} else {
				rep = to
			}
		}
		switch {
		case rep != "" && qdstrm != "":
			_ = os.Remove(qdstrm) // nsys imported it itself
			res.Artifacts = append(res.Artifacts, filepath.Base(rep))
		case rep != "":
			res.Artifacts = append(res.Artifacts, filepath.Base(rep))
		default:
			imported, err := b.importQdstrm(ctx, qdstrm)
			if err != nil {
				res.Artifacts = append(res.Artifacts, filepath.Base(qdstrm))
				res.Warnings = append(res.Warnings, err.Error())
				failed = append(failed, filepath.Base(qdstrm))
				continue
			}
			_ = os.Remove(qdstrm)
			res.Artifacts = append(res.Artifacts, filepath.Base(imported))
			res.Warnings = append(res.Warnings, "nsys left only a .qdstrm for the range; nsys-agent imported it with QdstrmImporter")
		}
	}
	if len(failed) == len(order) {
		return res, fmt.Errorf("nsys wrote only %s for the range and it could not be imported", strings.Join(failed, ", "))
	}
	return res, nil
}

// rangeIndex is n of FIRST.n (0 when there is none), for ordering ranges.
func rangeIndex(stem string) int {
	ext := filepath.Ext(stem)
	n, err := strconv.Atoi(strings.TrimPrefix(ext, "."))
	if err != nil {
		return 0
	}
	return n
}

// moveReport moves a range report into the window folder; dst must not exist yet.
func moveReport(src, dst string) error {
	if _, err := os.Lstat(dst); err == nil {
		return fmt.Errorf("%s already exists", dst)
	}
	return nsys.MoveFile(src, dst)
}

// mapServerError is the one place serverprof's errors become the contract's: a request
// the server cannot serve is unsupported, a server that does not answer is gone, a
// profile already running is busy.
func mapServerError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, serverprof.ErrUnsupported), errors.Is(err, serverprof.ErrNotFound):
		return shared.Wrap(shared.ErrUnsupported, err)
	case errors.Is(err, serverprof.ErrServerDown):
		return shared.Wrap(shared.ErrTargetGone, err)
	case errors.Is(err, serverprof.ErrAlreadyRunning):
		return shared.Wrap(shared.ErrBusy, err)
	}
	return err
}
