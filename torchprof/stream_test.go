package torchprof

import (
	"bytes"
	"cmp"
	"context"
	"database/sql"
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// referenceUnion is the in-memory busy union analyze used before it streamed: sort every
// interval, then sweep. The streaming code must give exactly its figures.
func referenceUnion(ivs []interval, start, end int64, keep func(interval) bool) (int64, []float64) {
	ivs = slices.Clone(ivs)
	slices.SortFunc(ivs, func(a, b interval) int { return cmp.Compare(a.start, b.start) })
	bins := make([]float64, timelineBins)
	if end <= start {
		return 0, bins
	}
	width := float64(end-start) / timelineBins
	var total int64
	cover := func(a, b int64) {
		total += b - a
		fa, fb := float64(a-start)/width, float64(b-start)/width
		for i := int(fa); i < timelineBins && float64(i) < fb; i++ {
			lo, hi := math.Max(fa, float64(i)), math.Min(fb, float64(i+1))
			bins[i] += hi - lo
		}
	}
	curS, curE := int64(0), int64(math.MinInt64)
	for _, iv := range ivs {
		if !keep(iv) {
			continue
		}
		if iv.start > curE {
			if curE > curS {
				cover(curS, curE)
			}
			curS, curE = iv.start, iv.end
		} else if iv.end > curE {
			curE = iv.end
		}
	}
	if curE > curS {
		cover(curS, curE)
	}
	for i := range bins {
		bins[i] = round3(math.Min(bins[i], 1))
	}
	return total, bins
}

// genRank is one generated rank: its GPU intervals (ns, on the common clock) and its
// kernels (name per interval; "" for memcpy).
type genRank struct {
	ivs   []interval
	names []string
}

var genKernels = []string{"gemm_bf16", `flash_fwd<128, \"a\">`, "ncclDevKernel_AllReduce_Sum_bf16_RING_LL",
	"void vllm::cross_device_reduce_1stage<float, 8>", "layer_norm"}

// genRanks makes ranks with n GPU intervals each, on 4 overlapping streams, comm kernels
// among them, in random order: the worst case for a streaming union.
func genRanks(ranks, n int, seed uint64) []genRank {
	rng := rand.New(rand.NewPCG(seed, 7))
	out := make([]genRank, ranks)
	for r := range out {
		g := &out[r]
		var at [4]int64
		for i := range n {
			s := rng.IntN(4)
			at[s] += rng.Int64N(5000) // gaps, some zero
			dur := 1 + rng.Int64N(50000)
			if rng.IntN(50) == 0 {
				dur = 0
			}
			name := genKernels[rng.IntN(len(genKernels))]
			if i%10 == 9 {
				name = "" // memcpy
			}
			start := 1_790_000_000_000_000 + int64(r)*777 + at[s]
			g.ivs = append(g.ivs, interval{start, start + dur, name != "" && IsCommKernel(name), 0})
			g.names = append(g.names, name)
			at[s] += dur / 2 // streams overlap themselves too
		}
		rng.Shuffle(n, func(i, j int) {
			g.ivs[i], g.ivs[j] = g.ivs[j], g.ivs[i]
			g.names[i], g.names[j] = g.names[j], g.names[i]
		})
	}
	return out
}

// writeKineto writes the ranks as Kineto traces, timestamps relative to a base time
// written after the events, as Kineto does.
func writeKineto(t *testing.T, dir string, ranks []genRank) []RankFile {
	const base = 1_790_000_000_000_000
	var paths []string
	for r, g := range ranks {
		var b bytes.Buffer
		b.WriteString(`{"traceEvents": [`)
		for i, iv := range g.ivs {
			if i > 0 {
				b.WriteString(",\n")
			}
			cat, name := "kernel", g.names[i]
			if name == "" {
				cat, name = "gpu_memcpy", "Memcpy DtoD"
			}
			fmt.Fprintf(&b, `{"ph": "X", "cat": %q, "name": "%s", "pid": 0, "tid": 7, "ts": %s, "dur": %s}`,
				cat, name, appendMicros(nil, iv.start-base), appendMicros(nil, iv.end-iv.start))
		}
		fmt.Fprintf(&b, `], "baseTimeNanoseconds": %d}`, base)
		p := filepath.Join(dir, fmt.Sprintf("gen-TP-%d.trace.json.gz", r))
		writeGz(t, p, b.String())
		paths = append(paths, p)
	}
	files, err := Discover(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != len(paths) {
		t.Fatalf("discovered %d files, wrote %d", len(files), len(paths))
	}
	return files
}

// checkAgainstReference compares the figures that come from intervals with the
// in-memory computation over the same intervals.
func checkAgainstReference(t *testing.T, s *Summary, ranks []genRank) {
	t.Helper()
	start, end := int64(math.MaxInt64), int64(math.MinInt64)
	for _, g := range ranks {
		for _, iv := range g.ivs {
			start, end = min(start, iv.start), max(end, iv.end)
		}
	}
	if s.StartNs != start || s.EndNs != end {
		t.Errorf("range [%d, %d), want [%d, %d)", s.StartNs, s.EndNs, start, end)
	}
	for i, g := range ranks {
		r := s.Ranks[i]
		busy, busyBins := referenceUnion(g.ivs, start, end, func(interval) bool { return true })
		_, commBins := referenceUnion(g.ivs, start, end, func(iv interval) bool { return iv.comm })
		var kernels, kernelNs, commNs int64
		first, last := int64(math.MaxInt64), int64(math.MinInt64)
		for j, iv := range g.ivs {
			first, last = min(first, iv.start), max(last, iv.end)
			if g.names[j] == "" {
				continue
			}
			kernels++
			kernelNs += iv.end - iv.start
			if iv.comm {
				commNs += iv.end - iv.start
			}
		}
		if r.BusyNs != busy || r.Kernels != kernels || r.KernelNs != kernelNs || r.CommNs != commNs || r.SpanNs != last-first {
			t.Errorf("%s: busy %d kernels %d kernel %d comm %d span %d; want %d %d %d %d %d", r.Label,
				r.BusyNs, r.Kernels, r.KernelNs, r.CommNs, r.SpanNs, busy, kernels, kernelNs, commNs, last-first)
		}
		if !reflect.DeepEqual(r.TimelineBusy, busyBins) || !reflect.DeepEqual(r.TimelineComm, commBins) {
			t.Errorf("%s: timeline differs from the in-memory union\n got %v\nwant %v\n got %v\nwant %v", r.Label,
				r.TimelineBusy, busyBins, r.TimelineComm, commBins)
		}
	}
}

// smallRuns makes the interval sorter spill every few intervals and merge in several
// passes, for the rest of the test.
func smallRuns(t *testing.T) {
	t.Helper()
	rl, kl, fi := runLen, keepLen, mergeFanIn
	runLen, keepLen, mergeFanIn = 97, 0, 3
	t.Cleanup(func() { runLen, keepLen, mergeFanIn = rl, kl, fi })
}

// TestAnalyzeKinetoStreamsExactly: with the intervals spilled in sorted runs and merged
// (several passes), the unordered input gives exactly the in-memory figures; so do the
// real fixtures, compared with the default in-memory path.
func TestAnalyzeKinetoStreamsExactly(t *testing.T) {
	ranks := genRanks(3, 20000, 1)
	files := writeKineto(t, t.TempDir(), ranks)
	ctx := context.Background()
	for _, small := range []bool{false, true} {
		t.Run(fmt.Sprintf("small runs %v", small), func(t *testing.T) {
			if small {
				smallRuns(t)
			}
			s, err := AnalyzeKineto(ctx, files)
			if err != nil {
				t.Fatal(err)
			}
			checkAgainstReference(t, s, ranks)
		})
	}

	fixture, err := Discover(kinetoFixture)
	if err != nil {
		t.Fatal(err)
	}
	want, err := AnalyzeKineto(ctx, fixture) // 120 and 135 intervals: kept in memory
	if err != nil {
		t.Fatal(err)
	}
	smallRuns(t)
	got, err := AnalyzeKineto(ctx, fixture)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("the fixture's summary changes when its intervals are spilled and merged")
	}
}

// TestAnalyzeNsysStreamsExactly: kernels, memcpy and memset rows of two processes in
// random order in an nsys-shaped export give exactly the in-memory figures, also when
// their one sorter spills every few intervals.
func TestAnalyzeNsysStreamsExactly(t *testing.T) {
	ranks := genRanks(2, 20000, 2)
	path := filepath.Join(t.TempDir(), "gen.sqlite")
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	exec := func(q string, args ...any) {
		t.Helper()
		if _, err := db.Exec(q, args...); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	exec(`CREATE TABLE StringIds (id INTEGER PRIMARY KEY, value TEXT NOT NULL)`)
	exec(`CREATE TABLE CUPTI_ACTIVITY_KIND_KERNEL (start INTEGER NOT NULL, end INTEGER NOT NULL, globalPid INTEGER,
		demangledName INTEGER, shortName INTEGER)`)
	exec(`CREATE TABLE CUPTI_ACTIVITY_KIND_MEMCPY (start INTEGER NOT NULL, end INTEGER NOT NULL, globalPid INTEGER)`)
	exec(`CREATE TABLE CUPTI_ACTIVITY_KIND_MEMSET (start INTEGER NOT NULL, end INTEGER NOT NULL, globalPid INTEGER)`)
	for i, n := range genKernels {
		exec(`INSERT INTO StringIds VALUES (?, ?)`, i, strings.ReplaceAll(n, `\"`, `"`))
		exec(`INSERT INTO StringIds VALUES (?, ?)`, 100+i, "short")
	}
	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	for r, g := range ranks {
		gpid := int64(1000+r) << 24
		for j, iv := range g.ivs {
			switch {
			case g.names[j] != "":
				id := slices.Index(genKernels, g.names[j])
				_, err = tx.Exec(`INSERT INTO CUPTI_ACTIVITY_KIND_KERNEL VALUES (?, ?, ?, ?, ?)`, iv.start, iv.end, gpid, id, 100+id)
			case j%2 == 0:
				_, err = tx.Exec(`INSERT INTO CUPTI_ACTIVITY_KIND_MEMCPY VALUES (?, ?, ?)`, iv.start, iv.end, gpid)
			default:
				_, err = tx.Exec(`INSERT INTO CUPTI_ACTIVITY_KIND_MEMSET VALUES (?, ?, ?)`, iv.start, iv.end, gpid)
			}
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	// A process without kernels: its copies are no rank's.
	if _, err := tx.Exec(`INSERT INTO CUPTI_ACTIVITY_KIND_MEMCPY VALUES (1, 2, ?)`, int64(5)<<24); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	for i := range ranks {
		// The generated names unescaped, as SQLite holds them.
		for j, n := range ranks[i].names {
			ranks[i].names[j] = strings.ReplaceAll(n, `\"`, `"`)
		}
	}
	for _, small := range []bool{false, true} {
		t.Run(fmt.Sprintf("small runs %v", small), func(t *testing.T) {
			if small {
				smallRuns(t)
			}
			s, err := AnalyzeNsysSQLite(context.Background(), path)
			if err != nil {
				t.Fatal(err)
			}
			if len(s.Ranks) != 2 {
				t.Fatalf("%d ranks, want 2", len(s.Ranks))
			}
			checkAgainstReference(t, s, ranks)
		})
	}
}
