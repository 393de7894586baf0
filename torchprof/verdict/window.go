package verdict

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/nsys-agent/nsys-agent/torchprof"
)

// CheckDir checks a window folder, whatever its backend left: each nsys report
// (CheckReport), each export without its report (CheckExport), each raw stream without
// its report (CheckStream), and the torch traces with their merged trace (CheckKineto).
// Only regular files count: a link or FIFO planted in the folder is never followed.
func CheckDir(ctx context.Context, dir string, t Tools, e Expect) (Verdict, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return Verdict{}, fmt.Errorf("verdict: %w", err)
	}
	has := map[string]bool{}
	var reports, exports, streams, merged []string
	traces := false
	for _, ent := range entries {
		if !ent.Type().IsRegular() {
			continue
		}
		name := ent.Name()
		has[name] = true
		switch {
		case strings.HasSuffix(name, ".nsys-rep"), strings.HasSuffix(name, ".qdrep"):
			reports = append(reports, name)
		case strings.HasSuffix(name, ".sqlite"):
			exports = append(exports, name)
		case strings.HasSuffix(name, ".qdstrm"):
			streams = append(streams, name)
		case strings.HasPrefix(name, "merged-") && strings.Contains(name, ".trace.json"):
			merged = append(merged, name)
		default:
			if _, ok := torchprof.ParseName(name); ok {
				traces = true
			}
		}
	}
	stem := func(name string) string { return strings.TrimSuffix(name, filepath.Ext(name)) }
	hasReport := func(name string) bool {
		return has[stem(name)+".nsys-rep"] || has[stem(name)+".qdrep"]
	}
	var v Verdict
	for _, s := range streams {
		if !hasReport(s) {
			v.Merge(CheckStream(filepath.Join(dir, s), t.Importer))
		}
	}
	for _, r := range reports {
		rv, err := CheckReport(ctx, filepath.Join(dir, r), t, e)
		if err != nil {
			return Verdict{}, err
		}
		v.Merge(rv)
	}
	for _, x := range exports {
		if hasReport(x) {
			continue // checked with its report
		}
		xv, err := CheckExport(ctx, filepath.Join(dir, x), e)
		if err != nil {
			return Verdict{}, err
		}
		v.Merge(xv)
	}
	if traces || len(merged) > 0 {
		kv, err := checkDirTraces(ctx, dir, traces, merged, e)
		if err != nil {
			return Verdict{}, err
		}
		v.Merge(kv)
	}
	if len(reports)+len(exports)+len(streams) == 0 && !traces && len(merged) == 0 {
		v.Add(Finding{ID: IDReportMissing, Level: Broken, File: filepath.Base(dir),
			Message: "the window folder holds no report, export, raw stream or trace",
			Fix:     "the capture wrote nothing: the window's error says why (nsys-agent show WINDOW); a cudaProfilerApi range that never opened writes no file"})
	}
	return v.done(), nil
}

// checkDirTraces checks the torch traces of a folder (one capture: torchprof.Discover
// refuses several) and its merged trace.
func checkDirTraces(ctx context.Context, dir string, traces bool, merged []string, e Expect) (Verdict, error) {
	var v Verdict
	var files []torchprof.RankFile
	if traces {
		var err error
		files, err = torchprof.Discover(dir)
		if err != nil {
			v.Add(Finding{ID: IDTraceUnreadable, Level: Broken, File: filepath.Base(dir),
				Message: oneLine(err.Error(), 300),
				Fix:     "a window folder holds the traces of one capture: pass the files of one capture to analyze explicitly"})
			return v.done(), nil
		}
	}
	if len(merged) > 1 {
		slices.Sort(merged)
		v.Add(Finding{ID: IDMergedTraceInvalid, Level: Warning, File: merged[0],
			Message: fmt.Sprintf("the folder holds %d merged traces (%s); only %s was checked", len(merged), strings.Join(merged, ", "), merged[0]),
			Fix:     "keep one merged trace per window"})
	}
	m := ""
	if len(merged) > 0 {
		m = filepath.Join(dir, merged[0])
	}
	kv, err := CheckKineto(ctx, files, m, e)
	if err != nil {
		return Verdict{}, err
	}
	v.Merge(kv)
	return v.done(), nil
}
