package layerwise

// Attributing kernels to SGLang's layer ranges in an `nsys export --type sqlite` file.
//
// NVTX push/pop ranges are CPU-side: a start and an end on one thread (NVTX_EVENTS,
// globalTid). A kernel belongs to a range when the runtime or driver call that launched it
// (CUPTI_ACTIVITY_KIND_RUNTIME, joined to CUPTI_ACTIVITY_KIND_KERNEL on correlationId
// within the process) started inside the range, on the range's thread. Its GPU time
// (end - start) counts towards:
//
//   - total (inclusive): every module whose range was open at the launch, so a decoder
//     layer includes its attention and MLP;
//   - self (exclusive): only the innermost open module, so self times partition the
//     kernel time and their shares add up to at most 100%.
//
// Both streams are read ordered by (thread, time) — launches from the kernel/runtime join,
// ranges from NVTX_EVENTS — and merged with one stack of open ranges per thread, so memory
// holds the stack and one counter per module, never the rows (SQLite sorts on disk when it
// must). A rank is a process: pid = (globalTid >> 24) & 0xFFFFFF.

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/nsys-agent/nsys-agent/torchprof/nsysdb"
)

// Bounds on what one analysis keeps.
const (
	maxStack   = 128    // open ranges per thread; deeper ones are not attributed
	maxModules = 20_000 // distinct (process, module) pairs; more fold into otherModules
)

// Names of the table rows that are not modules.
const (
	otherModules   = "(other modules)"        // beyond maxModules
	outsideLayers  = "(outside layer ranges)" // kernels launched with no layer range open
	noLaunchRecord = "(no launch record)"     // kernels whose launching call is not in the export
)

// ErrNoKernels: the export holds no CUDA kernels (no --trace=cuda, or a CPU-only target).
var ErrNoKernels = errors.New("no CUDA kernels in the export")

// moduleAcc is one module's counts in one process.
type moduleAcc struct {
	pid     int
	marker  Marker
	calls   int64 // ranges of the module
	kernels int64 // kernels launched inside them (inclusive)
	total   int64 // GPU ns, inclusive
	self    int64 // GPU ns, exclusive
	seen    int64 // last kernel counted in total (a module open twice on the stack counts once)
}

// rankAcc is one process's counts.
type rankAcc struct {
	pid        int
	process    string
	kernels    int64 // all kernels of the process
	kernelNs   int64
	launched   int64 // kernels matched to their launching call
	inLayers   int64 // GPU ns of kernels launched inside a layer range
	ranges     int64 // layer ranges
	otherRange int64 // NVTX ranges that are not layer ranges
	badRanges  int64 // layer-looking ranges that could not be read
	deep       int64 // layer ranges deeper than maxStack
	outside    *moduleAcc
	modules    map[string]*moduleAcc
}

// Analysis accumulates layer tables over one or more exports of the same window (one per
// capture range): processes are matched by pid.
type Analysis struct {
	ranks    map[int]*rankAcc
	nModules int
	folded   int64 // ranges folded into otherModules
	kernelN  int64 // kernels seen, the id for moduleAcc.seen
	reports  []string
	badRows  int64
}

// NewAnalysis starts an empty analysis.
func NewAnalysis() *Analysis { return &Analysis{ranks: map[int]*rankAcc{}} }

func (a *Analysis) rank(pid int) *rankAcc {
	r := a.ranks[pid]
	if r == nil {
		r = &rankAcc{pid: pid, modules: map[string]*moduleAcc{}}
		r.outside = &moduleAcc{pid: pid, marker: Marker{Module: outsideLayers, Layer: -1}}
		a.ranks[pid] = r
	}
	return r
}

func (a *Analysis) module(r *rankAcc, m Marker) *moduleAcc {
	if acc := r.modules[m.Module]; acc != nil {
		return acc
	}
	if a.nModules >= maxModules {
		a.folded++
		m = Marker{Module: otherModules, Layer: -1, Kind: otherModules}
		if acc := r.modules[m.Module]; acc != nil {
			return acc
		}
	}
	a.nModules++
	acc := &moduleAcc{pid: r.pid, marker: m, seen: -1}
	r.modules[m.Module] = acc
	return acc
}

// AddSQLite attributes the kernels of one nsys SQLite export to its layer ranges.
func (a *Analysis) AddSQLite(ctx context.Context, path string) error {
	// A planted link must not be followed (nsysdb refuses FIFOs and the like).
	db, err := nsysdb.Open(path, false)
	if err != nil {
		return fmt.Errorf("layer table: %w", err)
	}
	defer db.Close()
	db.SetMaxOpenConns(2) // the two streams are read at once
	tables, err := nsysdb.Tables(ctx, db)
	if err != nil {
		return fmt.Errorf("layer table: %s is not an SQLite database: %w", path, err)
	}
	if !tables["CUPTI_ACTIVITY_KIND_KERNEL"] {
		return fmt.Errorf("layer table: %s has no CUDA kernels (CUPTI_ACTIVITY_KIND_KERNEL): was the server launched with --trace=cuda? %w", path, ErrNoKernels)
	}
	if err := a.kernelTotals(ctx, db); err != nil {
		return fmt.Errorf("layer table: %s: %w", path, err)
	}
	if tables["PROCESSES"] {
		if err := a.processNames(ctx, db); err != nil {
			return fmt.Errorf("layer table: %s: %w", path, err)
		}
	}
	if err := a.attribute(ctx, db, tables); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("layer table: %s: %w", path, err)
	}
	a.reports = append(a.reports, path)
	return nil
}

// kernelTotals counts every kernel of every process: the window's kernel time a share is
// taken of, whether or not its launch is known.
func (a *Analysis) kernelTotals(ctx context.Context, db *sql.DB) error {
	return nsysdb.Rows(ctx, db, `SELECT (globalPid >> 24) & 16777215, COUNT(*), SUM(MAX(end - start, 0)), SUM(end < start)
		FROM CUPTI_ACTIVITY_KIND_KERNEL GROUP BY 1`, func(r *sql.Rows) error {
		var pid int
		var n, ns, bad int64
		if err := r.Scan(&pid, &n, &ns, &bad); err != nil {
			return err
		}
		rk := a.rank(pid)
		rk.kernels += n - bad
		rk.kernelNs += ns
		a.badRows += bad
		return nil
	})
}

func (a *Analysis) processNames(ctx context.Context, db *sql.DB) error {
	return nsysdb.Rows(ctx, db, `SELECT pid, name FROM PROCESSES`, func(r *sql.Rows) error {
		var pid sql.NullInt64
		var name sql.NullString
		if err := r.Scan(&pid, &name); err != nil {
			return err
		}
		if rk := a.ranks[int(pid.Int64)]; rk != nil && pid.Valid && name.Valid && rk.process == "" {
			rk.process = truncateBytes(name.String, 256)
		}
		return nil
	})
}

// launch is one kernel with the call that launched it; span is a range.
type launch struct{ tid, at, dur int64 }

type span struct {
	tid, start, end int64
	text            string
}

// openRange is a layer range on a thread's stack.
type openRange struct {
	end int64
	acc *moduleAcc
}

// attribute merges the launches and the ranges, both ordered by (thread, time).
func (a *Analysis) attribute(ctx context.Context, db *sql.DB, tables map[string]bool) error {
	launches, err := a.launches(ctx, db, tables)
	if err != nil {
		return err
	}
	defer launches.Close()
	ranges, err := a.ranges(ctx, db, tables)
	if err != nil {
		return err
	}
	defer ranges.Close()

	var l launch
	var s span
	haveL, haveS := false, false
	nextL := func() error {
		haveL = launches.Next()
		if haveL {
			return launches.Scan(&l.tid, &l.at, &l.dur)
		}
		return launches.Err()
	}
	nextS := func() error {
		haveS = ranges.Next()
		if haveS {
			var text sql.NullString
			if err := ranges.Scan(&s.tid, &s.start, &s.end, &text); err != nil {
				return err
			}
			s.text = text.String
		}
		return ranges.Err()
	}
	if err := nextL(); err != nil {
		return err
	}
	if err := nextS(); err != nil {
		return err
	}
	tid, started := int64(0), false
	var stack []openRange
	thread := func(t int64) {
		if !started || t != tid {
			tid, started, stack = t, true, stack[:0]
		}
	}
	for n := 0; haveL || haveS; n++ {
		if n&0xffff == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		// A range starting at the very moment of a launch contains it: ranges first on ties.
		if haveS && (!haveL || s.tid < l.tid || s.tid == l.tid && s.start <= l.at) {
			thread(s.tid)
			stack = a.push(stack, s)
			if err := nextS(); err != nil {
				return err
			}
			continue
		}
		thread(l.tid)
		stack = a.charge(stack, l)
		if err := nextL(); err != nil {
			return err
		}
	}
	return nil
}

// push opens a range on its thread's stack, after closing those that ended before it.
func (a *Analysis) push(stack []openRange, s span) []openRange {
	for len(stack) > 0 && stack[len(stack)-1].end <= s.start {
		stack = stack[:len(stack)-1]
	}
	rk := a.rank(nsysdb.PID(s.tid))
	m, err := ParseMarker(s.text)
	switch {
	case errors.Is(err, ErrNotMarker):
		rk.otherRange++
		return stack
	case err != nil:
		rk.badRanges++
		return stack
	}
	acc := a.module(rk, m)
	acc.calls++
	rk.ranges++
	if len(stack) >= maxStack {
		rk.deep++
		return stack
	}
	return append(stack, openRange{end: s.end, acc: acc})
}

// charge counts one kernel towards the ranges open at its launch.
func (a *Analysis) charge(stack []openRange, l launch) []openRange {
	for len(stack) > 0 && stack[len(stack)-1].end <= l.at {
		stack = stack[:len(stack)-1]
	}
	rk := a.rank(nsysdb.PID(l.tid))
	rk.launched++
	a.kernelN++
	var inner *moduleAcc
	for _, o := range stack {
		// Ranges of one thread nest, but a hostile export need not: a range below the
		// top that has ended is not open.
		if o.end <= l.at {
			continue
		}
		inner = o.acc
		if o.acc.seen != a.kernelN {
			o.acc.seen = a.kernelN
			o.acc.kernels++
			o.acc.total += l.dur
		}
	}
	if inner == nil {
		rk.outside.kernels++
		rk.outside.total += l.dur
		rk.outside.self += l.dur
		return stack
	}
	inner.self += l.dur
	rk.inLayers += l.dur
	return stack
}

// launches streams every kernel joined to its launching call, by thread and launch time.
// Graph launches (several kernels, one call) charge each kernel at the call.
func (a *Analysis) launches(ctx context.Context, db *sql.DB, tables map[string]bool) (*sql.Rows, error) {
	if !tables["CUPTI_ACTIVITY_KIND_RUNTIME"] {
		// No launch records: every kernel stays unattributed (reported per rank).
		return db.QueryContext(ctx, `SELECT 0, 0, 0 WHERE 0`)
	}
	return db.QueryContext(ctx, `SELECT r.globalTid, r.start, k.end - k.start
		FROM CUPTI_ACTIVITY_KIND_KERNEL k
		JOIN CUPTI_ACTIVITY_KIND_RUNTIME r
		  ON r.correlationId = k.correlationId AND (r.globalTid >> 24) = (k.globalPid >> 24)
		WHERE k.end >= k.start AND r.globalTid IS NOT NULL
		ORDER BY r.globalTid, r.start`)
}

// ranges streams the NVTX push/pop ranges that ended, by thread, start and longest first
// (a parent before a child starting at the same moment).
func (a *Analysis) ranges(ctx context.Context, db *sql.DB, tables map[string]bool) (*sql.Rows, error) {
	if !tables["NVTX_EVENTS"] {
		return db.QueryContext(ctx, `SELECT 0, 0, 0, '' WHERE 0`)
	}
	text := "n.text"
	if tables["StringIds"] {
		text = "COALESCE(n.text, (SELECT value FROM StringIds WHERE id = n.textId))"
	}
	// Push/pop ranges only: start/end ranges may end on another thread, and marks have no
	// end. The event type's id is looked up by name where the export has the enum table
	// (59 in nsys 2022.4 and 2025.3.1 alike).
	kind := ""
	if tables["ENUM_NSYS_EVENT_TYPE"] {
		var id int64
		err := db.QueryRowContext(ctx, `SELECT id FROM ENUM_NSYS_EVENT_TYPE WHERE name = 'NvtxPushPopRange'`).Scan(&id)
		if err == nil {
			kind = fmt.Sprintf(" AND n.eventType = %d", id)
		}
	}
	return db.QueryContext(ctx, `SELECT n.globalTid, n.start, n.end, `+text+`
		FROM NVTX_EVENTS n
		WHERE n.end IS NOT NULL AND n.end >= n.start AND n.globalTid IS NOT NULL`+kind+`
		ORDER BY n.globalTid, n.start, n.end DESC`)
}

// Warnings says what the analysis could not attribute and why, one line per cause.
func (a *Analysis) Warnings() []string {
	var out []string
	for _, rk := range a.sortedRanks() {
		label := rk.label()
		switch {
		case rk.kernels > 0 && rk.ranges == 0:
			out = append(out, fmt.Sprintf("%s ran %d kernels (%s on the GPU) but recorded no SGLang layer ranges: was the server started with %s? CUDA graph replays emit no ranges: %s", label, rk.kernels, ms(rk.kernelNs), FlagLayerwise, FlagNoCUDAGraph))
		case rk.kernels == 0 && rk.ranges > 0:
			out = append(out, fmt.Sprintf("%s recorded %d layer ranges but no kernels: its GPU work is in another process, or it ran none in the window", label, rk.ranges))
		case rk.ranges > 0 && rk.inLayers == 0 && rk.kernels > 0:
			out = append(out, fmt.Sprintf("%s recorded %d layer ranges, but none of its %d kernels was launched inside one: were they CUDA graph replays? start the server with %s", label, rk.ranges, rk.kernels, FlagNoCUDAGraph))
		}
		if miss := rk.kernels - rk.launched; miss > 0 {
			out = append(out, fmt.Sprintf("%s: %d kernels have no launching call in the export (CUPTI_ACTIVITY_KIND_RUNTIME) and belong to no layer; they count as %s", label, miss, noLaunchRecord))
		}
		if rk.badRanges > 0 {
			out = append(out, fmt.Sprintf("%s: %d NVTX ranges looked like SGLang layer ranges but could not be read; they were skipped", label, rk.badRanges))
		}
		if rk.deep > 0 {
			out = append(out, fmt.Sprintf("%s: %d layer ranges nested deeper than %d; their kernels count towards the enclosing modules", label, rk.deep, maxStack))
		}
	}
	if a.folded > 0 {
		out = append(out, fmt.Sprintf("more than %d distinct modules: %d ranges of the rest count as %s", maxModules, a.folded, otherModules))
	}
	if a.badRows > 0 {
		out = append(out, fmt.Sprintf("%d kernels end before they start in the export; they were skipped", a.badRows))
	}
	return out
}

func (a *Analysis) sortedRanks() []*rankAcc {
	out := make([]*rankAcc, 0, len(a.ranks))
	for _, rk := range a.ranks {
		// A process with neither kernels nor layer ranges (only other NVTX ranges) is no rank.
		if rk.kernels > 0 || rk.ranges > 0 {
			out = append(out, rk)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].pid < out[j].pid })
	return out
}

func (rk *rankAcc) label() string {
	if rk.process != "" {
		return fmt.Sprintf("pid %d (%s)", rk.pid, strings.TrimSpace(printable(rk.process)))
	}
	return fmt.Sprintf("pid %d", rk.pid)
}
