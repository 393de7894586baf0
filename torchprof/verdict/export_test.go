package verdict

import (
	"context"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
)

// The copies of the real H100 export below are made in the test, by SQL on a copy, to
// mimic what a real capture writes when it goes wrong.
var (
	// Rank 1's kernels gone: what "only rank 0 has kernels" looks like.
	dropRank1Kernels = []string{`DELETE FROM CUPTI_ACTIVITY_KIND_KERNEL WHERE ((globalPid >> 24) & 16777215) = 628`}
	dropAllKernels   = []string{`DELETE FROM CUPTI_ACTIVITY_KIND_KERNEL`}
	// What --cuda-graph-trace=graph writes instead (measured on nsys 2025.3.1, H200, see
	// docs/nsys-facts.md): no kernel row for a graph's nodes, one
	// CUPTI_ACTIVITY_KIND_GRAPH_TRACE row per graph launch with the launch's
	// correlationId, and the capture's mode "Graph".
	collapseGraphs = []string{
		`CREATE TABLE CUPTI_ACTIVITY_KIND_GRAPH_TRACE (start INTEGER NOT NULL, end INTEGER NOT NULL,
			deviceId INTEGER NOT NULL, contextId INTEGER NOT NULL, greenContextId INTEGER, streamId INTEGER NOT NULL,
			correlationId INTEGER, globalPid INTEGER, graphId INTEGER NOT NULL, graphExecId INTEGER NOT NULL)`,
		`INSERT INTO CUPTI_ACTIVITY_KIND_GRAPH_TRACE
			SELECT min(start), max(end), deviceId, contextId, greenContextId, streamId, correlationId, globalPid, 1, max(graphNodeId) >> 32
			FROM CUPTI_ACTIVITY_KIND_KERNEL WHERE graphNodeId IS NOT NULL GROUP BY globalPid, correlationId`,
		`DELETE FROM CUPTI_ACTIVITY_KIND_KERNEL WHERE graphNodeId IS NOT NULL`,
		`UPDATE META_DATA_CAPTURE SET value = 'Graph' WHERE name LIKE '%CUDA_GRAPH_TRACE_OPTIONS:MODE'`,
	}
	// A CPU-only target: no kernel and no CUDA call (the demo target's windows).
	dropAllCUDA   = []string{`DELETE FROM CUPTI_ACTIVITY_KIND_KERNEL`, `DELETE FROM CUPTI_ACTIVITY_KIND_RUNTIME`}
	dropNVTX      = []string{`DELETE FROM NVTX_EVENTS`}
	dropRank1NVTX = []string{`DELETE FROM NVTX_EVENTS WHERE ((globalTid >> 24) & 16777215) = 628`}
	// Rank 1's eager kernels (its cuLaunchKernel calls; graph kernels have a graphNodeId).
	dropRank1Eager = []string{`DELETE FROM CUPTI_ACTIVITY_KIND_KERNEL WHERE graphNodeId IS NULL`}
	// A stream capture open around each of rank 1's eager launches: CUDA records them
	// into a graph and runs nothing (seen on the H200: captured launches have no kernel).
	captureRank1Eager = append(slices.Clone(dropRank1Eager),
		`INSERT INTO StringIds VALUES (100001, 'cudaStreamBeginCapture_v10000'), (100002, 'cudaStreamEndCapture_v10000')`,
		`INSERT INTO CUPTI_ACTIVITY_KIND_RUNTIME (start, end, eventClass, globalTid, correlationId, nameId, returnValue)
			SELECT r.start - 1, r.start - 1, r.eventClass, r.globalTid, NULL, 100001, 0 FROM CUPTI_ACTIVITY_KIND_RUNTIME r
			WHERE r.nameId = (SELECT id FROM StringIds WHERE value = 'cuLaunchKernel')`,
		`INSERT INTO CUPTI_ACTIVITY_KIND_RUNTIME (start, end, eventClass, globalTid, correlationId, nameId, returnValue)
			SELECT r.end + 1, r.end + 1, r.eventClass, r.globalTid, NULL, 100002, 0 FROM CUPTI_ACTIVITY_KIND_RUNTIME r
			WHERE r.nameId = (SELECT id FROM StringIds WHERE value = 'cuLaunchKernel')`,
	)
	// A capture that was already open when the window began: its End comes first, after
	// every launch of rank 1's thread.
	captureOpenAtStart = append(slices.Clone(dropRank1Eager),
		`INSERT INTO StringIds VALUES (100002, 'cudaStreamEndCapture_v10000')`,
		`INSERT INTO CUPTI_ACTIVITY_KIND_RUNTIME (start, end, eventClass, globalTid, correlationId, nameId, returnValue)
			SELECT max(r.end) + 1, max(r.end) + 1, 1, r.globalTid, NULL, 100002, 0 FROM CUPTI_ACTIVITY_KIND_RUNTIME r
			WHERE ((r.globalTid >> 24) & 16777215) = 628 GROUP BY r.globalTid`,
	)
)

func fixtureSize(t *testing.T) int64 {
	fi, err := os.Stat(nsysFixture)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

func TestCheckExport(t *testing.T) {
	// The export's size stands in for the report's (no report of this capture is
	// committed: reports embed the machine's environment).
	size := fixtureSize(t)
	full := Expect{PIDs: []int{rank0, rank1}, RankCount: 2, NVTX: true, ReportBytes: size, SizeBudgetPerSecond: DefaultSizeBudgetPerSecond}
	for _, tc := range []struct {
		name   string
		stmts  []string
		expect Expect
		want   []string // ids(v)
		level  Level
	}{
		{"untouched", nil, full, nil, OK},
		{"untouched, nothing expected", nil, Expect{}, nil, OK},
		{"rank 1 kernels removed", dropRank1Kernels, full, []string{"broken launches-without-kernels pid 628"}, Broken},
		{"rank 1 kernels removed, nothing expected", dropRank1Kernels, Expect{}, []string{"broken launches-without-kernels pid 628"}, Broken},
		{"all kernels removed", dropAllKernels, full, []string{"broken no-kernels"}, Broken},
		{"all kernels removed, target without GPU", dropAllKernels, Expect{NoGPU: true}, []string{"broken no-kernels"}, Broken},
		{"no CUDA at all, target without GPU", dropAllCUDA, Expect{NoGPU: true}, nil, OK},
		{"no CUDA at all", dropAllCUDA, Expect{}, []string{"broken no-kernels"}, Broken},
		{"graphs traced whole", collapseGraphs, full, []string{"warning graph-not-node"}, Warning},
		{"NVTX removed, expected", dropNVTX, full, []string{"broken nvtx-missing"}, Broken},
		{"NVTX removed, not expected", dropNVTX, Expect{PIDs: full.PIDs, RankCount: 2}, nil, OK},
		{"rank 1 NVTX removed", dropRank1NVTX, full, []string{"warning nvtx-missing pid 628"}, Warning},
		{"size budget exceeded", nil, Expect{ReportBytes: size, SizeBudgetPerSecond: 100 << 10}, []string{"warning report-size"}, Warning},
		{"size budget exceeded, duration given", nil, Expect{ReportBytes: size, CapturedSeconds: 4, SizeBudgetPerSecond: 100 << 10}, []string{"warning report-size"}, Warning},
		{"size within budget, duration given", nil, Expect{ReportBytes: size, CapturedSeconds: 10, SizeBudgetPerSecond: 100 << 10}, nil, OK},
		{"expected pid absent", nil, Expect{PIDs: []int{rank0, rank1, 999}}, []string{"broken rank-missing pid 999"}, Broken},
		{"more ranks expected", nil, Expect{RankCount: 3}, []string{"broken rank-missing"}, Broken},
		{"half of rank 1 launches unrecorded", dropRank1Eager, full, []string{"warning launches-partly-recorded pid 628"}, Warning},
		{"rank 1 launches inside a stream capture", captureRank1Eager, full, nil, OK},
		{"capture open when the window began", captureOpenAtStart, full, nil, OK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := exportCopy(t, tc.stmts...)
			v, err := CheckExport(context.Background(), p, tc.expect)
			if err != nil {
				t.Fatal(err)
			}
			if got := ids(v); !slices.Equal(got, tc.want) {
				t.Errorf("findings %q, want %q", got, tc.want)
			}
			if v.Level != tc.level {
				t.Errorf("level %s, want %s", v.Level, tc.level)
			}
			for _, f := range v.Findings {
				if f.Message == "" || f.Fix == "" || f.File != "window1.sqlite" {
					t.Errorf("finding without message, fix or file: %+v", f)
				}
			}
			checkGolden(t, "export-"+strings.ReplaceAll(tc.name, " ", "-"), "", v)
		})
	}
}

// The counts behind the findings, read from the real export (fixture README: pid 627
// 1164 kernels, pid 628 1524; each step one graph launch of 3 kernels, rank 1 also one
// eager launch; 769 NVTX ranges).
func TestReadExportCounts(t *testing.T) {
	st, err := readExport(context.Background(), nsysFixture)
	if err != nil {
		t.Fatal(err)
	}
	want := map[int]procStats{
		rank0: {pid: rank0, kernels: 1164, calls: 1164, nvtx: 388, graphLaunches: 388, graphRecorded: 388},
		rank1: {pid: rank1, kernels: 1524, calls: 1905, nvtx: 381, kernelLaunches: 381, kernelRecorded: 381, graphLaunches: 381, graphRecorded: 381},
	}
	if len(st.procs) != len(want) {
		t.Fatalf("%d processes, want %d", len(st.procs), len(want))
	}
	for pid, w := range want {
		if got := *st.procs[pid]; got != w {
			t.Errorf("pid %d: %+v, want %+v", pid, got, w)
		}
	}
	if st.durationNs != 2073271589 || st.graphMode != "Node" {
		t.Errorf("duration %d ns, graph mode %q; want 2073271589, Node", st.durationNs, st.graphMode)
	}

	st, err = readExport(context.Background(), exportCopy(t, captureRank1Eager...))
	if err != nil {
		t.Fatal(err)
	}
	if p := st.procs[rank1]; p.captured != 381 || p.kernelLaunches != 0 || p.graphLaunches != 381 || p.graphRecorded != 381 {
		t.Errorf("captured launches: %+v; want 381 captured, the 381 graph launches recorded", *p)
	}
}

func TestCheckExportUnreadable(t *testing.T) {
	dir := t.TempDir()
	garbage := dir + "/garbage.sqlite"
	if err := os.WriteFile(garbage, []byte("this is not a database, it is a sentence long enough to be read"), 0o644); err != nil {
		t.Fatal(err)
	}
	// A real export cut short, as a full disk leaves it.
	b, err := os.ReadFile(nsysFixture)
	if err != nil {
		t.Fatal(err)
	}
	truncated := dir + "/truncated.sqlite"
	if err := os.WriteFile(truncated, b[:len(b)/3], 0o644); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{garbage, truncated, dir + "/absent.sqlite"} {
		v, err := CheckExport(context.Background(), p, Expect{})
		if err != nil {
			t.Fatal(err)
		}
		if got := ids(v); !slices.Equal(got, []string{"broken report-unreadable"}) {
			t.Errorf("%s: findings %q, want one broken report-unreadable", p, got)
		}
	}
}

func TestCheckExportCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := CheckExport(ctx, nsysFixture, Expect{}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled check: %v, want context.Canceled (a cancelled check is no verdict)", err)
	}
}
