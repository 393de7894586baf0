package torch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"

	"github.com/nsys-agent/nsys-agent/internal/atomicfile"
	"github.com/nsys-agent/nsys-agent/plugins/shared"
	"github.com/nsys-agent/nsys-agent/torchprof"
	"github.com/nsys-agent/nsys-agent/torchprof/serverprof"
)

// The analysis a window carries beside its traces (the nsys backend writes the same names).
const (
	SummaryFile = "summary.json"
	SummaryPage = "summary.html"
)

// Finalize merges the window's rank traces into one SGLang-compatible trace
// (merged-{profile_id}.trace.json.gz), and says per rank where the GPU time went:
// summary.json (the whole analysis), summary.html, and the compact summary, naming the
// slowest rank, in the result. A rank trace that does not parse is left out of both with
// a warning naming it; with none left, or none at all, the window fails. A server folder
// Stop did not empty (a plugin restarted in between) is collected first.
func (b *Backend) Finalize(ctx context.Context, w shared.Window, p shared.Progress) (shared.Result, error) {
	var res shared.Result
	dir, err := serverDir(w)
	if err != nil {
		return res, err
	}
	if _, err := os.Lstat(dir); err == nil {
		res.Artifacts, res.Warnings = b.collect(w, &window{sw: &serverprof.Window{ID: w.ID, Dir: dir}})
	}
	files, err := windowFiles(w.Dir)
	if err != nil {
		return res, fmt.Errorf("window %s: listing its traces: %w", w.ID, err)
	}
	ranks, dups := rankFiles(rankTraces(files))
	res.Warnings = append(res.Warnings, dups...)
	if len(ranks) == 0 {
		return res, fmt.Errorf("window %s: no rank trace (*.trace.json.gz) in %s to merge: the server wrote none for this window; look in its log", w.ID, w.Dir)
	}
	p.Send(shared.ProgressEvent{Step: fmt.Sprintf("merging %d rank traces", len(ranks)), Fraction: 0.6})
	out := filepath.Join(w.Dir, mergedName(w, ranks))
	st, ranks, bad, err := mergeGood(ctx, ranks, out, p)
	res.Warnings = append(res.Warnings, bad...)
	if err != nil {
		return res, fmt.Errorf("window %s: %w", w.ID, err)
	}
	// The collected files come first (memory snapshots too), then the ranks merged.
	for _, rf := range ranks {
		if name := filepath.Base(rf.Path); !slices.Contains(res.Artifacts, name) {
			res.Artifacts = append(res.Artifacts, name)
		}
	}
	res.Artifacts = append(res.Artifacts, filepath.Base(out))
	res.Warnings = append(res.Warnings, warningTexts(st.Warnings)...)

	p.Send(shared.ProgressEvent{Step: "analyzing GPU time per rank", Fraction: 0.85})
	sum, err := torchprof.AnalyzeKineto(ctx, ranks)
	if err != nil {
		if ctx.Err() != nil {
			return res, fmt.Errorf("window %s: analyzing its traces: %w", w.ID, ctx.Err())
		}
		// The merged trace is fine; only the answer is missing.
		res.Warnings = append(res.Warnings, "analysis failed: "+err.Error())
		return res, nil
	}
	relative(sum)
	res.Warnings = append(res.Warnings, warningTexts(sum.Warnings)...)
	compact, err := writeSummary(sum, w.Dir)
	if err != nil {
		res.Warnings = append(res.Warnings, fmt.Sprintf("writing the summary: %v", err))
		return res, nil
	}
	res.Summary = compact
	res.Artifacts = append(res.Artifacts, SummaryFile, SummaryPage)
	p.Send(shared.ProgressEvent{Step: "summary written", Fraction: 0.95})
	return res, nil
}

// windowFiles lists the regular files of a window folder with what each is.
func windowFiles(dir string) ([]serverprof.File, error) {
	return (&serverprof.Window{ID: filepath.Base(dir), Dir: dir}).Files()
}

// rankFiles orders the rank traces the way SGLang's merger does and keeps one per rank
// label: two files of the same rank (two captures in one folder) would share their pids
// in the merged trace. Each one left out is a warning.
func rankFiles(files []serverprof.File) ([]torchprof.RankFile, []string) {
	ranks := make([]torchprof.RankFile, len(files))
	for i, f := range files {
		ranks[i] = f.Rank
		ranks[i].Index = i
	}
	torchprof.SortRankFiles(ranks)
	var keep []torchprof.RankFile
	var warnings []string
	seen := map[string]string{}
	for _, rf := range ranks {
		label := rf.Label()
		if first, ok := seen[label]; ok {
			warnings = append(warnings, fmt.Sprintf("%s is rank %s again (as %s): left out of the merged trace and the summary", filepath.Base(rf.Path), label, filepath.Base(first)))
			continue
		}
		seen[label] = rf.Path
		keep = append(keep, rf)
	}
	return keep, warnings
}

// profileIDPattern is what may go into the merged trace's name.
var profileIDPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._]{0,127}$`)

// mergedName is SGLang's name for the merged trace, merged-{profile_id}.trace.json.gz,
// when the ranks share a profile id (SGLang's do; vLLM's carry each rank's own export
// time), else merged-{window id}.trace.json.gz.
func mergedName(w shared.Window, ranks []torchprof.RankFile) string {
	id := ranks[0].ProfileID
	for _, rf := range ranks[1:] {
		if rf.ProfileID != id {
			id = ""
		}
	}
	if !profileIDPattern.MatchString(id) {
		id = w.ID
	}
	return "merged-" + id + ".trace.json.gz"
}

// mergeGood merges ranks into out. When the merge fails on a trace that does not parse
// (truncated, not JSON), each rank is read alone to find which, those are left out with a
// warning, and the rest are merged. It returns the ranks merged.
func mergeGood(ctx context.Context, ranks []torchprof.RankFile, out string, p shared.Progress) (torchprof.MergeStats, []torchprof.RankFile, []string, error) {
	progress := func(done, total int64) {
		if total > 0 {
			p.Send(shared.ProgressEvent{Step: fmt.Sprintf("merging %d rank traces", len(ranks)), Fraction: 0.6 + 0.2*float64(done)/float64(total)})
		}
	}
	st, err := torchprof.Merge(ctx, ranks, out, torchprof.MergeOptions{Progress: progress})
	if err == nil || ctx.Err() != nil {
		return st, ranks, nil, err
	}
	var good []torchprof.RankFile
	var warnings []string
	for _, rf := range ranks {
		if _, rerr := torchprof.AnalyzeKineto(ctx, []torchprof.RankFile{rf}); rerr != nil {
			if ctx.Err() != nil {
				return st, ranks, warnings, ctx.Err()
			}
			warnings = append(warnings, fmt.Sprintf("rank trace %s (%s) is malformed and was left out of the merged trace and the summary: %v", filepath.Base(rf.Path), rf.Label(), rerr))
			continue
		}
		good = append(good, rf)
	}
	switch {
	case len(good) == len(ranks):
		return st, ranks, warnings, fmt.Errorf("merging %d rank traces into %s: %w", len(ranks), out, err)
	case len(good) == 0:
		return st, nil, warnings, errors.New("no rank trace of the window could be read: every one is malformed (see the warnings)")
	}
	st, err = torchprof.Merge(ctx, good, out, torchprof.MergeOptions{Progress: progress})
	if err != nil {
		return st, good, warnings, fmt.Errorf("merging the %d readable rank traces into %s: %w", len(good), out, err)
	}
	return st, good, warnings, nil
}

// relative names the inputs by their file names: the window folder moves (pull, another
// host), and the manifest should not carry the agent's data dir.
func relative(s *torchprof.Summary) {
	for i := range s.Inputs {
		s.Inputs[i] = filepath.Base(s.Inputs[i])
	}
	for i := range s.Ranks {
		s.Ranks[i].Input = filepath.Base(s.Ranks[i].Input)
	}
	for i := range s.Warnings {
		s.Warnings[i].Input = filepath.Base(s.Warnings[i].Input)
	}
}

func warningTexts(ws []torchprof.Warning) []string {
	out := make([]string, len(ws))
	for i, w := range ws {
		w.Input = filepath.Base(w.Input)
		out[i] = w.String()
	}
	return out
}

// writeSummary writes summary.json and summary.html into dir, each whole or not at all,
// and returns the compact summary for the manifest.
func writeSummary(s *torchprof.Summary, dir string) (json.RawMessage, error) {
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := atomicfile.Write(filepath.Join(dir, SummaryFile), append(data, '\n'), 0o644); err != nil {
		return nil, err
	}
	page, err := atomicfile.New(filepath.Join(dir, SummaryPage), 0o644)
	if err != nil {
		return nil, err
	}
	if err := s.WriteHTML(page); err != nil {
		page.Abort()
		return nil, fmt.Errorf("writing %s: %w", SummaryPage, err)
	}
	if err := page.Commit(); err != nil {
		return nil, err
	}
	return json.Marshal(s.Compact())
}
