package verdict

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/nsys-agent/nsys-agent/internal/diskspace"
)

// CheckExport checks one nsys SQLite export: GPU work at all, expected ranks against
// the processes with kernels, each process's launches against its GPU records, CUDA
// graphs traced node by node, NVTX when expected, and the report's size per captured
// second. An export that cannot be read is a Broken finding, not an error; the error
// is only ctx's.
func CheckExport(ctx context.Context, path string, e Expect) (Verdict, error) {
	var v Verdict
	st, err := readExport(ctx, path)
	var ue *UnreadableError
	switch {
	case errors.As(err, &ue):
		v.Add(Finding{ID: IDReportUnreadable, Level: Broken, File: filepath.Base(path),
			Message: fmt.Sprintf("the SQLite export %s cannot be read: %v", filepath.Base(path), ue.Err),
			Fix:     "export the report again (nsys export --type=sqlite --force-overwrite=true REPORT.nsys-rep); if that fails too, the report itself is damaged: take the window again"})
		return v.done(), nil
	case err != nil:
		return Verdict{}, err
	}
	checkExportStats(&v, st, e, filepath.Base(path))
	return v.done(), nil
}

// A process counts as having launched "part" of its kernels when more than this share
// of its launches have no GPU record. Kernels still running when the window closes are
// dropped by nsys ("Number of incomplete CUPTI events dropped: 3" in the H100 fixture's
// diagnostics, 3 of 2688); a quarter is far beyond that.
const partlyRecordedShare = 0.25

// minLaunchesForShare keeps the share check off windows too short for a share to mean
// anything.
const minLaunchesForShare = 100

func checkExportStats(v *Verdict, st *exportStats, e Expect, file string) {
	pids := slices.Sorted(maps.Keys(st.procs))
	var kernels, graphRows, calls, launches, graphLaunches int64
	var seen, launching []int // processes with GPU work; processes that launched any
	for _, pid := range pids {
		p := st.procs[pid]
		kernels += p.kernels
		graphRows += p.graphRows
		calls += p.calls
		launches += p.kernelLaunches + p.graphLaunches
		graphLaunches += p.graphLaunches
		if p.kernels+p.graphRows > 0 {
			seen = append(seen, pid)
		}
		if p.kernelLaunches+p.graphLaunches > 0 {
			launching = append(launching, pid)
		}
	}
	graphLevel := st.graphMode == "Graph" || graphRows > 0

	if kernels+graphRows == 0 && launches == 0 && calls == 0 && e.NoGPU {
		v.skip("kernels: the target does no GPU work (none of its processes loaded CUDA)")
	} else if kernels+graphRows == 0 {
		f := Finding{ID: IDNoKernels, Level: Broken, File: file}
		switch {
		case launches > 0:
			f.Message = fmt.Sprintf("no GPU kernel was recorded in this window, though %s made %s", pidList(launching), launchCount(launches, graphLaunches))
			f.Fix = lostKernelsFix
		case calls > 0:
			f.Message = fmt.Sprintf("no GPU kernel was recorded in this window: the target made %d CUDA calls and launched no kernel", calls)
			f.Fix = "the server computed nothing while the window was open: capture while it serves requests"
		default:
			f.Message = "no GPU kernel and no CUDA call was recorded in this window"
			f.Fix = "either the target did no GPU work, or CUDA was not traced: the launch needs --trace=cuda, and rank workers forked without exec need --trace-fork-before-exec=true (nsys-agent run sets both)"
		}
		v.Add(f)
		v.skip("ranks and launches: nothing to compare, the window has no GPU work")
	} else {
		flagged := checkLaunches(v, st, pids, graphLevel, file)
		checkRanks(v, st, e, seen, flagged, file)
	}
	checkGraphs(v, st, pids, file)
	checkNVTX(v, st, e, seen, file)
	checkSize(v, st, e, file)
}

const lostKernelsFix = "the GPU side of these launches was not collected: take the window again; if a rank keeps losing its kernels, check that it is alive (a crashed rank leaves launches without kernels), and try arming the server with --cuda-flush-interval=100 so nsys saves each process's CUDA buffers periodically"

// checkLaunches compares each process's launches with its GPU records and returns the
// processes found with none recorded. Graph launches count only where graphs were
// traced node by node: traced whole, their kernels are absent by design (checkGraphs
// says so).
func checkLaunches(v *Verdict, st *exportStats, pids []int, graphLevel bool, file string) map[int]bool {
	flagged := map[int]bool{}
	for _, pid := range pids {
		p := st.procs[pid]
		n, rec := p.kernelLaunches, p.kernelRecorded
		graphs := int64(0)
		if !graphLevel {
			n += p.graphLaunches
			rec += p.graphRecorded
			graphs = p.graphLaunches
		}
		switch {
		case n == 0:
		case rec == 0:
			flagged[pid] = true
			v.Add(Finding{ID: IDLaunchesWithoutKernels, Level: Broken, PID: pid, File: file,
				Message: fmt.Sprintf("pid %d made %s and not one of their kernels was recorded on the GPU", pid, launchCount(n, graphs)),
				Fix:     lostKernelsFix})
		case n >= minLaunchesForShare && float64(n-rec) > partlyRecordedShare*float64(n):
			v.Add(Finding{ID: IDLaunchesPartlyRecorded, Level: Warning, PID: pid, File: file,
				Message: fmt.Sprintf("pid %d: %d of its %d launches have no kernel recorded on the GPU (%.0f%%)", pid, n-rec, n, 100*float64(n-rec)/float64(n)),
				Fix:     lostKernelsFix})
		}
	}
	return flagged
}

// checkRanks compares the expected ranks with the processes that did GPU work; a
// process already flagged for launches without kernels is not flagged again.
func checkRanks(v *Verdict, st *exportStats, e Expect, seen []int, flagged map[int]bool, file string) {
	if len(e.PIDs) == 0 && e.RankCount == 0 {
		v.skip("expected ranks: none given (the agent gives the target's CUDA processes; analyze takes --expect-ranks or --expect-pids)")
		return
	}
	explained := 0
	for _, pid := range e.PIDs {
		p := st.procs[pid]
		if p != nil && p.kernels+p.graphRows > 0 {
			continue
		}
		explained++
		if flagged[pid] {
			continue
		}
		f := Finding{ID: IDRankMissing, Level: Broken, PID: pid, File: file}
		if p != nil && p.calls > 0 {
			f.Message = fmt.Sprintf("pid %d, an expected rank, made %d CUDA calls in this window but launched no kernel", pid, p.calls)
			f.Fix = "this rank computed nothing while the others did: look at its log for errors or a hang (a rank stuck in a collective launches nothing)"
		} else {
			f.Message = fmt.Sprintf("pid %d, an expected rank, has no CUDA activity in this window: neither a kernel nor a CUDA call was recorded", pid)
			f.Fix = "the process was not traced or was gone: rank workers forked without exec need --trace-fork-before-exec=true at launch (nsys-agent run sets it); a worker that execs a new program must inherit nsys's environment"
		}
		v.Add(f)
	}
	for pid := range flagged {
		if !slices.Contains(e.PIDs, pid) {
			explained++
		}
	}
	if e.RankCount > 0 && len(seen)+explained < e.RankCount {
		v.Add(Finding{ID: IDRankMissing, Level: Broken, File: file,
			Message: fmt.Sprintf("only %d of %d expected ranks recorded GPU work in this window (%s)", len(seen), e.RankCount, pidListOr(seen, "none")),
			Fix:     "the missing ranks were not traced: rank workers forked without exec need --trace-fork-before-exec=true at launch (nsys-agent run sets it); ranks on another host need their own agent"})
	}
}

// checkGraphs flags CUDA graphs traced whole (--cuda-graph-trace=graph, nsys's default
// where the driver allows it): one CUPTI_ACTIVITY_KIND_GRAPH_TRACE row per graph launch
// and none of the kernels inside it.
func checkGraphs(v *Verdict, st *exportStats, pids []int, file string) {
	var rows, launches int64
	var who []int
	for _, pid := range pids {
		p := st.procs[pid]
		rows += p.graphRows
		if st.graphMode == "Graph" {
			launches += p.graphLaunches
		}
		if p.graphRows > 0 || (st.graphMode == "Graph" && p.graphLaunches > 0) {
			who = append(who, pid)
		}
	}
	n := max(rows, launches)
	if n == 0 {
		return
	}
	v.Add(Finding{ID: IDGraphNotNode, Level: Warning, File: file,
		Message: fmt.Sprintf("%d CUDA graph launches (%s) were traced as whole graphs: the kernels inside them are not in the report, so kernel counts and per-kernel times leave them out", n, pidList(who)),
		Fix:     "arm the server with --cuda-graph-trace=node (nsys-agent run does; nsys itself defaults to graph); node tracing costs more per graph launch"})
}

// checkNVTX runs only when NVTX was asked for: none at all is Broken (the window misses
// what it was taken for), a process with kernels and no range a Warning.
func checkNVTX(v *Verdict, st *exportStats, e Expect, seen []int, file string) {
	if !e.NVTX {
		v.skip("NVTX: not expected")
		return
	}
	var total int64
	for _, p := range st.procs {
		total += p.nvtx
	}
	const fix = "NVTX must be traced from the launch (--trace=cuda,nvtx) and the target's environment needs NSYS_NVTX_PROFILER_REGISTER_ONLY=0 (nsys-agent run sets both); SGLang's layerwise markers also need --enable-layerwise-nvtx-marker and --disable-cuda-graph (graph replays emit no NVTX)"
	if total == 0 {
		v.Add(Finding{ID: IDNVTXMissing, Level: Broken, File: file,
			Message: "NVTX ranges were expected and the window has none", Fix: fix})
		return
	}
	for _, pid := range seen {
		if st.procs[pid].nvtx == 0 {
			v.Add(Finding{ID: IDNVTXMissing, Level: Warning, PID: pid, File: file,
				Message: fmt.Sprintf("pid %d ran kernels but recorded no NVTX range, while other processes did", pid), Fix: fix})
		}
	}
}

// checkSize warns when the report is larger per captured second than the budget.
func checkSize(v *Verdict, st *exportStats, e Expect, file string) {
	secs, from := e.CapturedSeconds, ""
	if secs <= 0 && st != nil && st.durationNs > 0 {
		secs, from = float64(st.durationNs)/1e9, " (the capture's own duration)"
	}
	switch {
	case e.SizeBudgetPerSecond <= 0:
		v.skip("report size: no budget given")
		return
	case e.ReportBytes <= 0:
		v.skip("report size: the report's size is not known (an export alone)")
		return
	case secs <= 0:
		v.skip("report size: the captured duration is not known")
		return
	}
	rate := float64(e.ReportBytes) / secs
	if rate <= float64(e.SizeBudgetPerSecond) {
		return
	}
	v.Add(Finding{ID: IDReportSize, Level: Warning, File: file,
		Message: fmt.Sprintf("the report is %s for %.1f s captured%s: %s per second, above the budget of %s per second",
			diskspace.Human(uint64(e.ReportBytes)), secs, from, diskspace.Human(uint64(rate)), diskspace.Human(uint64(e.SizeBudgetPerSecond))),
		Fix: "CPU sampling and context-switch tracing make reports large (a 4 s H100 window: 2 GB with them, 130 kB without): keep --sample=none --cpuctxsw=none (nsys-agent's default), trace fewer APIs, or take shorter windows"})
}

// launchCount says "N kernel launches", or "N launches (G of them CUDA graph launches)".
func launchCount(n, graphs int64) string {
	if graphs == 0 {
		return fmt.Sprintf("%d kernel launches", n)
	}
	return fmt.Sprintf("%d launches (%d of them CUDA graph launches)", n, graphs)
}

func pidList(pids []int) string {
	if len(pids) == 1 {
		return "pid " + strconv.Itoa(pids[0])
	}
	s := make([]string, len(pids))
	for i, p := range pids {
		s[i] = strconv.Itoa(p)
	}
	return "pids " + strings.Join(s, ", ")
}

func pidListOr(pids []int, none string) string {
	if len(pids) == 0 {
		return none
	}
	return pidList(pids)
}

// done makes an empty list of findings explicit (JSON [] rather than null).
func (v Verdict) done() Verdict {
	if v.Findings == nil {
		v.Findings = []Finding{}
	}
	return v
}
