package verdict

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/nsys-agent/nsys-agent/torchprof"
)

// CheckKineto checks a torch window's traces: every rank trace parses and holds GPU
// kernels, the expected ranks all have a trace (e.RankCount), and the merged trace, when
// there is one (merged != ""), parses and holds every kernel of the rank traces. Each
// file is read once, streaming (torchprof.AnalyzeKineto), at most GOMAXPROCS at a time.
func CheckKineto(ctx context.Context, files []torchprof.RankFile, merged string, e Expect) (Verdict, error) {
	var v Verdict
	type result struct {
		s   *torchprof.Summary
		err error
	}
	res := make([]result, len(files))
	sem := make(chan struct{}, max(runtime.GOMAXPROCS(0), 1))
	var wg sync.WaitGroup
	for i := range files {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			res[i].s, res[i].err = torchprof.AnalyzeKineto(ctx, files[i:i+1])
		}()
	}
	wg.Wait()
	if ctx.Err() != nil {
		return Verdict{}, ctx.Err()
	}
	var kernels int64
	allRead := true
	for i, rf := range files {
		label, base := strings.Trim(rf.Label(), "[]"), filepath.Base(rf.Path)
		if err := res[i].err; err != nil {
			allRead = false
			f := Finding{ID: IDTraceUnreadable, Level: Broken, Rank: label, File: base}
			if errors.Is(err, fs.ErrNotExist) {
				f.Message = fmt.Sprintf("%s's trace %s is missing", label, base)
				f.Fix = "the server did not write this rank's trace (a rank that crashed, or a window stopped before /stop_profile finished writing): see the server's log, and take the window again"
			} else {
				f.Message = fmt.Sprintf("%s's trace %s does not parse: %s", label, base, errText(err, rf.Path))
				f.Fix = "the trace was cut short (the server was stopped, or its disk filled, while it wrote the traces) and cannot be repaired: take the window again"
			}
			v.Add(f)
			continue
		}
		s := res[i].s
		var n int64
		for _, r := range s.Ranks {
			n += r.Kernels
		}
		kernels += n
		if n == 0 {
			v.Add(Finding{ID: IDNoKernels, Level: Broken, Rank: label, File: base,
				Message: fmt.Sprintf("%s's trace %s holds no GPU kernel", label, base),
				Fix:     "the profiler recorded no GPU activity for this rank: ask for it (SGLang /start_profile activities [\"CPU\", \"GPU\"]; vLLM --profiler-config profiler=torch), capture while the server serves requests, and do not run the server under an nsys that traces CUDA (CUPTI takes one subscriber: the torch profiler then records no GPU data; nsys-agent run --trace nvtx)"})
		}
		if w := skippedEvents(s.Warnings); w != "" {
			v.Add(Finding{ID: IDEventsSkipped, Level: Warning, Rank: label, File: base,
				Message: fmt.Sprintf("%s's trace %s has malformed events that analysis skipped: %s", label, base, w),
				Fix:     "the per-rank times leave these events out; a profiler that writes them should be reported upstream"})
		}
	}
	checkRankFiles(&v, files, e)
	if merged == "" {
		v.skip("merged trace: none in the window")
	} else if err := checkMerged(ctx, &v, merged, kernels, allRead); err != nil {
		return Verdict{}, err
	}
	return v.done(), nil
}

// checkRankFiles compares the rank traces found with e.RankCount, naming the missing
// TP ranks when the files are numbered by TP alone (SGLang without DP, PP or EP).
func checkRankFiles(v *Verdict, files []torchprof.RankFile, e Expect) {
	if e.RankCount == 0 {
		v.skip("expected ranks: none given (the agent gives the server's tp_size; analyze takes --expect-ranks)")
		return
	}
	if len(files) >= e.RankCount {
		return
	}
	var labels []string
	byTP := true
	have := map[int]bool{}
	for _, rf := range files {
		labels = append(labels, strings.Trim(rf.Label(), "[]"))
		byTP = byTP && rf.TP >= 0 && rf.DP < 0 && rf.PP < 0 && rf.EP < 0
		have[rf.TP] = true
	}
	msg := fmt.Sprintf("found %d of %d expected rank traces (%s)", len(files), e.RankCount, strings.Join(labels, ", "))
	if len(files) == 0 {
		msg = fmt.Sprintf("found none of %d expected rank traces", e.RankCount)
	}
	if byTP && len(files) > 0 {
		var missing []string
		for tp := range e.RankCount {
			if !have[tp] {
				missing = append(missing, "TP"+fmt.Sprintf("%02d", tp))
			}
		}
		if len(missing) > 0 {
			msg += ": " + strings.Join(missing, ", ") + " missing"
		}
	}
	v.Add(Finding{ID: IDRankMissing, Level: Broken, Message: msg,
		Fix: "the missing ranks wrote no trace into the window's folder: every rank must share the output_dir (on one host), and /stop_profile must have finished; see the server's log"})
}

// checkMerged reads the merged trace: it must parse, and hold as many kernels as the
// rank traces together (when all of those were read).
func checkMerged(ctx context.Context, v *Verdict, merged string, rankKernels int64, allRead bool) error {
	base := filepath.Base(merged)
	rf := torchprof.RankFilesFromPaths([]string{merged})
	s, err := torchprof.AnalyzeKineto(ctx, rf)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	const fix = "merge the rank traces again: nsys-agent merge WINDOW_DIR --out merged.trace.json.gz"
	if err != nil {
		v.Add(Finding{ID: IDMergedTraceInvalid, Level: Broken, File: base,
			Message: fmt.Sprintf("the merged trace %s does not parse: %s", base, errText(err, merged)), Fix: fix})
		return nil
	}
	var n int64
	for _, r := range s.Ranks {
		n += r.Kernels
	}
	if allRead && n < rankKernels {
		v.Add(Finding{ID: IDMergedTraceInvalid, Level: Broken, File: base,
			Message: fmt.Sprintf("the merged trace %s holds %d GPU kernels, the rank traces %d: the merge lost events", base, n, rankKernels), Fix: fix})
	}
	return nil
}

// errText is a reader's error without the "analyze: PATH: " it starts with (the
// finding names the file already), on one line.
func errText(err error, path string) string {
	s := strings.TrimPrefix(err.Error(), "analyze: ")
	s = strings.TrimPrefix(s, path+": ")
	return oneLine(s, 300)
}

// skippedEvents sums what a reader skipped, by problem.
func skippedEvents(ws []torchprof.Warning) string {
	var parts []string
	for _, w := range ws {
		if w.Action == "skipped" {
			parts = append(parts, strconv.FormatInt(w.Events, 10)+" "+w.Problem)
		}
	}
	slices.Sort(parts)
	return strings.Join(parts, "; ")
}
