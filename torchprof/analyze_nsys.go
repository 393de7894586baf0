package torchprof

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"

	"github.com/nsys-agent/nsys-agent/internal/regularfile"
	"github.com/nsys-agent/nsys-agent/torchprof/nsysdb"
)

// NsysInput is one nsys SQLite export for AnalyzeNsysHosts: one host's window of a group.
type NsysInput struct {
	Path string
	// Host names the host the export came from ("" for a single export); with several
	// hosts, ranks are labelled HOST:pid N.
	Host string
	// HostOffsetNs is the host's clock minus the coordinator's, as the group record
	// measured it; HostOffsetKnown says it was measured.
	HostOffsetNs    int64
	HostOffsetKnown bool
}

// AnalyzeNsysSQLite reads an `nsys export --type sqlite` file and treats each process
// that ran kernels as a rank (pid = (globalPid >> 24) & 0xFFFFFF). It reads only the
// kernel, memcpy/memset, NVTX, string and process tables, whose layout has been stable
// across nsys versions, and never the export metadata tables, which have not.
func AnalyzeNsysSQLite(ctx context.Context, path string) (*Summary, error) {
	return AnalyzeNsysHosts(ctx, []NsysInput{{Path: path}})
}

// AnalyzeNsysHosts analyzes the exports of several hosts' windows as one capture: every
// host's ranks, labelled with their host, compared across hosts. Each host's times are
// put on the coordinator's clock: an export's times count from its collection's start,
// whose wall-clock time is TARGET_INFO_SESSION_START_TIME.utcEpochNs (the same table and
// column in 2022.4.2 and 2025.3.1 exports; read only here, and only when there are
// several hosts), minus the host's clock offset. A host whose offset or start time is
// unknown stays on its own clock and is listed in UnalignedHosts; per-rank totals do not
// depend on it. One export alone is analyzed exactly as before: no labels, no shift.
func AnalyzeNsysHosts(ctx context.Context, inputs []NsysInput) (*Summary, error) {
	if len(inputs) == 0 {
		return nil, fmt.Errorf("analyze: no nsys export")
	}
	multi := len(inputs) > 1
	// One interval sorter for every export, whatever the number of processes;
	// interval.rank is the process's index in all.
	var ivs intervalSorter
	defer ivs.close()
	var all []*rankData
	loaded := make([]nsysExport, len(inputs))
	paths := make([]string, len(inputs))
	for i, in := range inputs {
		e, err := loadNsysExport(ctx, in.Path, &ivs, &all, multi)
		if err != nil {
			if in.Host != "" && multi {
				return nil, fmt.Errorf("host %s: %w", in.Host, err)
			}
			return nil, err
		}
		loaded[i], paths[i] = e, in.Path
	}
	if err := ivs.finish(); err != nil {
		return nil, fmt.Errorf("analyze: %w", err)
	}
	var ranks []*rankData
	var unaligned []string
	if multi {
		shifts := nsysHostShifts(inputs, loaded)
		for i, e := range loaded {
			in := inputs[i]
			if !in.HostOffsetKnown || !e.startKnown {
				unaligned = append(unaligned, in.Host)
			}
			for _, d := range e.ranks {
				d.label = in.Host + ":" + d.label
				d.shift = shifts[i]
				if d.active() {
					d.first += d.shift
					d.last += d.shift
				}
				for j := range d.steps {
					d.steps[j].StartNs += d.shift
					d.steps[j].EndNs += d.shift
				}
			}
		}
	}
	for _, e := range loaded {
		ranks = append(ranks, e.ranks...)
	}
	s, err := summarize("nsys-sqlite", paths, ranks, func(start, end int64) error {
		if err := mergeUnions(ctx, &ivs, all); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("analyze: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	at := 0
	for i, e := range loaded {
		s.Warnings = append(s.Warnings, e.warnings...)
		for _, d := range e.ranks {
			if multi {
				s.Ranks[at].Host = inputs[i].Host
			}
			s.Warnings = append(s.Warnings, d.problems.warnings(inputs[i].Path+" ("+d.label+")", "skipped")...)
			at++
		}
	}
	s.UnalignedHosts = unaligned
	return s, nil
}

// nsysHostShifts puts each host's export on the coordinator's clock: collection start
// (wall clock) minus the host's offset, relative to the earliest host so that times stay
// small. A host whose offset is unknown keeps its own wall clock; one whose start time is
// unknown starts at the earliest host's start.
func nsysHostShifts(inputs []NsysInput, loaded []nsysExport) []int64 {
	at := make([]int64, len(inputs))
	base, any := int64(0), false
	for i, e := range loaded {
		if !e.startKnown {
			continue
		}
		at[i] = e.startNs
		if inputs[i].HostOffsetKnown {
			at[i] -= inputs[i].HostOffsetNs
		}
		if !any || at[i] < base {
			base, any = at[i], true
		}
	}
	shifts := make([]int64, len(inputs))
	for i, e := range loaded {
		if e.startKnown {
			shifts[i] = at[i] - base
		}
	}
	return shifts
}

// nsysExport is what loadNsysExport read of one export.
type nsysExport struct {
	ranks      []*rankData // processes that ran kernels, by pid
	warnings   []Warning   // rows skipped per table
	startNs    int64       // the collection's start, wall clock (utcEpochNs)
	startKnown bool
}

// loadNsysExport reads one export's processes that ran kernels into new ranks appended to
// all, and their kernel and memory intervals into ivs (interval.rank indexes all).
// withStart also reads the collection's wall-clock start.
func loadNsysExport(ctx context.Context, path string, ivs *intervalSorter, all *[]*rankData, withStart bool) (nsysExport, error) {
	var e nsysExport
	db, err := nsysdb.Open(path, true)
	if nr := (*regularfile.NotRegularError)(nil); errors.As(err, &nr) {
		err = notRegular(path, nr.Mode) // says what it is: a FIFO, a directory, ...
	}
	if err != nil {
		return e, fmt.Errorf("analyze: %w", err)
	}
	defer db.Close()
	tables, err := nsysdb.Tables(ctx, db)
	if err != nil {
		return e, fmt.Errorf("analyze: %s: not an SQLite database: %w", path, err)
	}
	if !tables["CUPTI_ACTIVITY_KIND_KERNEL"] {
		return e, fmt.Errorf("analyze: %s has no CUDA kernels (CUPTI_ACTIVITY_KIND_KERNEL): was the capture made with --trace=cuda? %w", path, ErrNoKernels)
	}
	byPid := map[int]*rankData{}
	idx := map[int]int32{}
	var order []int
	rank := func(pid int) *rankData {
		d := byPid[pid]
		if d == nil {
			d = newRankData(fmt.Sprintf("pid %d", pid), "")
			d.pid = pid
			byPid[pid] = d
			idx[pid] = int32(len(*all))
			*all = append(*all, d)
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
		return e, fmt.Errorf("analyze: %s: %w", path, err)
	}
	// Every kernel, in table order, into its process's counts and the interval sorter (as
	// for Kineto: SQLite's own ORDER BY start measured 2-3 times slower).
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
		return e, fmt.Errorf("analyze: %s: %w", path, err)
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
			return e, fmt.Errorf("analyze: %s: %w", path, err)
		}
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
			return e, fmt.Errorf("analyze: %s: %w", path, err)
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
	if withStart && tables["TARGET_INFO_SESSION_START_TIME"] {
		nsysdb.Rows(ctx, db, `SELECT utcEpochNs FROM TARGET_INFO_SESSION_START_TIME LIMIT 1`, func(r *sql.Rows) error {
			var ns sql.NullInt64
			if r.Scan(&ns) == nil && ns.Valid && ns.Int64 > 0 {
				e.startNs, e.startKnown = ns.Int64, true
			}
			return nil
		})
	}
	slices.Sort(order)
	for _, pid := range order {
		e.ranks = append(e.ranks, byPid[pid])
	}
	for _, t := range []string{"CUPTI_ACTIVITY_KIND_KERNEL", "CUPTI_ACTIVITY_KIND_MEMCPY", "CUPTI_ACTIVITY_KIND_MEMSET"} {
		if n := badRows[t]; n > 0 {
			e.warnings = append(e.warnings, Warning{Input: path, Problem: "end before start in " + t, Action: "skipped", Events: n})
		}
	}
	return e, nil
}
