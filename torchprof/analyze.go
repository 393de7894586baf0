package torchprof

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"runtime"
	"slices"
	"strings"
	"sync"

	"github.com/nsys-agent/nsys-agent/internal/regularfile"
	"github.com/nsys-agent/nsys-agent/torchprof/nsysdb"
)

// AnalyzeKineto reads per-rank Kineto traces (streaming, ranks in parallel) and says
// where each rank's GPU time went. Kernels are events of category "kernel"; busy time
// also counts gpu_memcpy and gpu_memset. Ranks keep the order of files. Memory does not
// grow with the number of kernels (see intervalSorter); large ranks use about 6 bytes a
// kernel of temporary disk in $TMPDIR. Ranks of several hosts are labelled with their
// host (Labels) and placed on the coordinator's clock where their host's offset is known.
func AnalyzeKineto(ctx context.Context, files []RankFile) (*Summary, error) {
	if len(files) == 0 {
		return nil, fmt.Errorf("analyze: no trace files")
	}
	labels := Labels(files)
	ranks := make([]*rankData, len(files))
	defer func() {
		for _, d := range ranks {
			if d != nil {
				d.ivs.close()
			}
		}
	}()
	errs := make([]error, len(files))
	parallel(len(files), func(i int) { ranks[i], errs[i] = analyzeKinetoFile(ctx, files[i], labels[i]) })
	inputs := make([]string, len(files))
	for i, rf := range files {
		if errs[i] != nil {
			return nil, errs[i]
		}
		inputs[i] = rf.Path
	}
	s, err := summarize("kineto", inputs, ranks, func(start, end int64) error {
		errs := make([]error, len(ranks))
		parallel(len(ranks), func(i int) { errs[i] = mergeUnions(ctx, &ranks[i].ivs, ranks[i:i+1]) })
		for i, err := range errs {
			if err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				return fmt.Errorf("analyze: %s: %w", files[i].Path, err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for i, d := range ranks {
		s.Warnings = append(s.Warnings, d.problems.warnings(files[i].Path, "skipped")...)
	}
	if multiHost(files) {
		for i, rf := range files {
			s.Ranks[i].Host = rf.Host
		}
		s.UnalignedHosts = UnalignedHosts(files)
	}
	return s, nil
}

// mergeUnions feeds the sorted intervals of s, shifted onto the common clock, to the
// busy and comm unions of their ranks (interval.rank indexes ranks), and frees s.
func mergeUnions(ctx context.Context, s *intervalSorter, ranks []*rankData) error {
	defer s.close()
	return s.each(ctx, func(iv interval) {
		d := ranks[iv.rank]
		iv.start += d.shift
		iv.end += d.shift
		d.busy.add(iv.start, iv.end)
		if iv.comm {
			d.comm.add(iv.start, iv.end)
		}
	})
}

// parallel runs f(0), ..., f(n-1), at most GOMAXPROCS (at least 2) at once.
func parallel(n int, f func(i int)) {
	sem := make(chan struct{}, max(runtime.GOMAXPROCS(0), 2))
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			f(i)
		}()
	}
	wg.Wait()
}

type kinetoHandler struct {
	ctx  context.Context
	d    *rankData
	base int64
	n    int
}

func analyzeKinetoFile(ctx context.Context, rf RankFile, label string) (*rankData, error) {
	r, closeFn, err := openTrace(rf.Path, nil)
	if err != nil {
		return nil, fmt.Errorf("analyze: %w", err)
	}
	defer closeFn()
	h := &kinetoHandler{ctx: ctx, d: newRankData(strings.Trim(label, "[]"), rf.Path)}
	err = scanTrace(r, nil, h)
	if err == nil {
		err = h.d.ivs.finish()
	}
	if err != nil {
		h.d.ivs.close()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("analyze: %s: %w", rf.Path, err)
	}
	// Timestamps are relative to baseTimeNanoseconds, wherever the key was, and to the
	// host's clock (clock.go).
	shift := rf.axisNs(h.base)
	h.d.shift = shift
	if h.d.active() {
		h.d.first += shift
		h.d.last += shift
	}
	for _, st := range [][]Step{h.d.steps, h.d.stepsCPU} {
		for i := range st {
			st[i].StartNs += shift
			st[i].EndNs += shift
		}
	}
	return h.d, nil
}

func (h *kinetoHandler) topLevel(key string, raw []byte) error {
	if key == "baseTimeNanoseconds" {
		if n, ok := pyInt(raw); ok {
			h.base = n
		}
	}
	return nil
}

func (h *kinetoHandler) event(ev []byte, f *eventFields) error {
	if h.n++; h.n&0xffff == 0 && h.ctx.Err() != nil {
		return h.ctx.Err()
	}
	if p := checkEvent(ev, f); p != probNone {
		h.d.problems.add(p, f.offset)
		return nil
	}
	if string(f.ph.of(ev)) != `"X"` || !f.cat.ok() {
		return nil
	}
	cat := f.cat.of(ev)
	var kind byte
	switch string(cat) {
	case `"kernel"`:
		kind = 'k'
	case `"gpu_memcpy"`, `"gpu_memset"`:
		kind = 'm'
	case `"gpu_user_annotation"`:
		kind = 'g'
	case `"user_annotation"`:
		kind = 'u'
	default:
		return nil
	}
	if !f.ts.ok() || !f.dur.ok() {
		h.d.problems.add(probNoTsDur, f.offset)
		return nil
	}
	ts, ok := tsNanos(f.ts.of(ev))
	if !ok {
		h.d.problems.add(probTsRange, f.offset)
		return nil
	}
	dur, ok := tsNanos(f.dur.of(ev))
	if !ok || dur < 0 || ts > math.MaxInt64-dur {
		h.d.problems.add(probDurRange, f.offset)
		return nil
	}
	name := f.name.of(ev)
	if len(name) >= 2 && name[0] == '"' {
		name = name[1 : len(name)-1]
	}
	switch kind {
	case 'k':
		if strings.IndexByte(string(name), '\\') >= 0 {
			name = []byte(unquote(f.name.of(ev)))
		}
		k, folded := h.d.kernel(name, 1, dur)
		if folded {
			h.d.problems.add(probManyNames, f.offset)
		}
		h.d.activity(ts, ts+dur)
		return h.d.ivs.add(interval{ts, ts + dur, k.comm, 0})
	case 'm':
		h.d.activity(ts, ts+dur)
		return h.d.ivs.add(interval{ts, ts + dur, false, 0})
	case 'g':
		addStep(&h.d.steps, &h.d.nSteps, Step{unquote(f.name.of(ev)), ts, ts + dur})
	case 'u':
		addStep(&h.d.stepsCPU, &h.d.nStepsCPU, Step{unquote(f.name.of(ev)), ts, ts + dur})
	}
	return nil
}

// ErrNoKernels: the capture holds no GPU kernels (a CPU-only target, or no --trace=cuda).
var ErrNoKernels = errors.New("no GPU kernels in the capture")

// AnalyzeNsysSQLite reads an `nsys export --type sqlite` file and treats each process
// that ran kernels as a rank (pid = (globalPid >> 24) & 0xFFFFFF). It reads only the
// kernel, memcpy/memset, NVTX, string and process tables, whose layout has been stable
// across nsys versions, and never the export metadata tables, which have not.
func AnalyzeNsysSQLite(ctx context.Context, path string) (*Summary, error) {
	db, err := nsysdb.Open(path, true)
	if nr := (*regularfile.NotRegularError)(nil); errors.As(err, &nr) {
		err = notRegular(path, nr.Mode) // says what it is: a FIFO, a directory, ...
	}
	if err != nil {
		return nil, fmt.Errorf("analyze: %w", err)
	}
	defer db.Close()
	tables, err := nsysdb.Tables(ctx, db)
	if err != nil {
		return nil, fmt.Errorf("analyze: %s: not an SQLite database: %w", path, err)
	}
	if !tables["CUPTI_ACTIVITY_KIND_KERNEL"] {
		return nil, fmt.Errorf("analyze: %s has no CUDA kernels (CUPTI_ACTIVITY_KIND_KERNEL): was the capture made with --trace=cuda? %w", path, ErrNoKernels)
	}

	// One interval sorter for the whole export, whatever the number of processes;
	// interval.rank is the process's index in byIdx.
	var ivs intervalSorter
	defer ivs.close()
	byPid := map[int]*rankData{}
	var byIdx []*rankData
	idx := map[int]int32{}
	var order []int
	rank := func(pid int) *rankData {
		d := byPid[pid]
		if d == nil {
			d = newRankData(fmt.Sprintf("pid %d", pid), "")
			d.pid = pid
			byPid[pid] = d
			idx[pid] = int32(len(byIdx))
			byIdx = append(byIdx, d)
			order = append(order, pid)
		}
		return d
	}
	// Kernel names, resolved once per (demangledName, shortName) pair, so that the pass
	// over the kernels reads integers only.
	type nameIDs struct{ demangled, short int64 }
	names := map[nameIDs]string{}
	err = nsysdb.Rows(ctx, db, `SELECT k.dn, k.sn, COALESCE(d.value, s.value, '?')
		FROM (SELECT DISTINCT IFNULL(demangledName, -1) AS dn, IFNULL(shortName, -1) AS sn FROM CUPTI_ACTIVITY_KIND_KERNEL) k
		LEFT JOIN StringIds d ON d.id = k.dn
		LEFT JOIN StringIds s ON s.id = k.sn`, func(r *sql.Rows) error {
		var ids nameIDs
		var n string
		if err := r.Scan(&ids.demangled, &ids.short, &n); err != nil {
			return err
		}
		if len(names) < maxKernelNames {
			names[ids] = n // a rank keeps no more anyway
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("analyze: %s: %w", path, err)
	}
	// Every kernel, in table order, into its process's counts and interval sorter (as for
	// Kineto: SQLite's own ORDER BY start measured 2-3 times slower).
	type kernelKey struct {
		pid int
		ids nameIDs
	}
	type kernelOf struct {
		d      *rankData
		idx    int32
		k      *kernelAcc
		folded bool // into otherKernels or otherCommKernels
	}
	kernels := map[kernelKey]kernelOf{}
	badRows := map[string]int64{} // per table, rows that end before they start
	err = nsysdb.Rows(ctx, db, `SELECT (globalPid >> 24) & 16777215, start, end, IFNULL(demangledName, -1), IFNULL(shortName, -1)
		FROM CUPTI_ACTIVITY_KIND_KERNEL`, func(r *sql.Rows) error {
		var key kernelKey
		var start, end int64
		if err := r.Scan(&key.pid, &start, &end, &key.ids.demangled, &key.ids.short); err != nil {
			return err
		}
		if end < start {
			badRows["CUPTI_ACTIVITY_KIND_KERNEL"]++
			return nil
		}
		a, ok := kernels[key]
		if !ok {
			d := rank(key.pid)
			name, known := names[key.ids]
			if !known {
				name = otherKernels // beyond the names kept above
			}
			k, folded := d.kernel([]byte(name), 0, 0)
			a = kernelOf{d, idx[key.pid], k, folded || !known}
			if len(kernels) < maxKernelNames {
				kernels[key] = a
			}
		}
		if a.folded {
			a.d.problems.add(probManyNames, 0)
		}
		a.k.count++
		a.k.total += end - start
		a.d.activity(start, end)
		return ivs.add(interval{start, end, a.k.comm, a.idx})
	})
	if err != nil {
		return nil, fmt.Errorf("analyze: %s: %w", path, err)
	}
	// Memory copies and sets count towards busy time of processes that ran kernels.
	for _, t := range []string{"CUPTI_ACTIVITY_KIND_MEMCPY", "CUPTI_ACTIVITY_KIND_MEMSET"} {
		if !tables[t] {
			continue
		}
		err := nsysdb.Rows(ctx, db, `SELECT (globalPid >> 24) & 16777215, start, end FROM `+t, func(r *sql.Rows) error {
			var pid int
			var start, end int64
			if err := r.Scan(&pid, &start, &end); err != nil {
				return err
			}
			if d := byPid[pid]; d != nil {
				if end < start {
					badRows[t]++
					return nil
				}
				d.activity(start, end)
				return ivs.add(interval{start, end, false, idx[pid]})
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("analyze: %s: %w", path, err)
		}
	}
	if err := ivs.finish(); err != nil {
		return nil, fmt.Errorf("analyze: %s: %w", path, err)
	}
	if tables["NVTX_EVENTS"] {
		text := "n.text"
		if tables["StringIds"] {
			text = "COALESCE(n.text, (SELECT value FROM StringIds WHERE id = n.textId), '')"
		}
		err := nsysdb.Rows(ctx, db, `SELECT (n.globalTid >> 24) & 16777215, n.start, n.end, `+text+`
			FROM NVTX_EVENTS n WHERE n.end IS NOT NULL AND n.end > n.start ORDER BY n.start`, func(r *sql.Rows) error {
			var pid int
			var start, end int64
			var t string
			if err := r.Scan(&pid, &start, &end, &t); err != nil {
				return err
			}
			if d := byPid[pid]; d != nil {
				addStep(&d.steps, &d.nSteps, Step{t, start, end})
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("analyze: %s: %w", path, err)
		}
	}
	if tables["PROCESSES"] {
		nsysdb.Rows(ctx, db, `SELECT pid, name FROM PROCESSES`, func(r *sql.Rows) error {
			var pid int
			var n sql.NullString
			if r.Scan(&pid, &n) == nil {
				if d := byPid[pid]; d != nil && n.Valid {
					d.input = n.String
				}
			}
			return nil
		})
	}
	slices.Sort(order)
	ranks := make([]*rankData, len(order))
	for i, pid := range order {
		ranks[i] = byPid[pid]
	}
	s, err := summarize("nsys-sqlite", []string{path}, ranks, func(start, end int64) error {
		if err := mergeUnions(ctx, &ivs, byIdx); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("analyze: %s: %w", path, err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, t := range []string{"CUPTI_ACTIVITY_KIND_KERNEL", "CUPTI_ACTIVITY_KIND_MEMCPY", "CUPTI_ACTIVITY_KIND_MEMSET"} {
		if n := badRows[t]; n > 0 {
			s.Warnings = append(s.Warnings, Warning{Input: path, Problem: "end before start in " + t, Action: "skipped", Events: n})
		}
	}
	for _, d := range ranks {
		s.Warnings = append(s.Warnings, d.problems.warnings(path+" ("+d.label+")", "skipped")...)
	}
	return s, nil
}
