package nsys

// After a stop the report can be in three places: where the output says (nsys diverts a
// report whose name existed to /tmp/nsys-report-XXXX.*), in the `nsys start` caller's
// working directory (start-later's reportN.nsys-rep), or at the launch's --output
// (start-later's first window). This file finds it and moves it into the window folder.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/nsys-agent/nsys-agent/internal/regularfile"
)

// collect finds the report(s) a stop produced wherever nsys put them, moves them into
// the window folder, and imports a lone .qdstrm. Only paths this stop's own output names,
// new files in the window folder and the session's first output are considered: other
// sessions' stops write /tmp/nsys-report-XXXX files at the same time (taking one of those
// broke a concurrent stop in a test run).
func (c *Controller) collect(ctx context.Context, w Window, out string, before map[string]bool) (*StopResult, error) {
	// A report diverted because its name existed is named in the output too
	// ("Generated: /tmp/nsys-report-XXXX.nsys-rep").
	cands := generatedPaths(out)
	// Files that appeared in the window folder (start-later: reportN.* in the caller's dir).
	for p := range newFiles(w.Dir, before) {
		cands = append(cands, p)
	}
	if c.FirstOutput != "" {
		for _, ext := range []string{".nsys-rep", ".qdstrm"} {
			cands = append(cands, c.FirstOutput+ext)
		}
	}
	cands = dedupe(cands)
	res := &StopResult{}
	var looked []string
	for _, p := range cands {
		ext := reportExt(p)
		if ext == "" {
			continue
		}
		looked = append(looked, p)
		st, err := os.Stat(p)
		if err != nil || st.Size() == 0 {
			continue
		}
		dst := filepath.Join(w.Dir, w.Name+ext)
		if p != dst {
			if err := MoveFile(p, dst); err != nil {
				// Left where nsys wrote it (often /tmp, mode 0664), the capture, which
				// embeds the server's environment, stays: private to its owner and named.
				_ = os.Chmod(p, 0o600)
				return nil, fmt.Errorf("moving report %s into the window folder: %w; the capture stays at %s (now mode 0600): move it where there is room", p, err, p)
			}
		}
		// Reports embed the server's whole environment: nsys writes them 0644 (a .qdstrm
		// 0664); only their owner may read them.
		_ = os.Chmod(dst, 0o600)
		res.Files = append(res.Files, dst)
		switch ext {
		case ".nsys-rep":
			res.Report = dst
		case ".qdstrm":
			res.Qdstrm = dst
		}
	}
	if res.Report == "" && res.Qdstrm != "" {
		rep, err := c.Import(ctx, res.Qdstrm)
		if err != nil {
			res.Warnings = append(res.Warnings, err.Error())
		} else {
			res.Report, res.Imported = rep, true
			res.Files = append(res.Files, rep)
		}
	}
	if res.Report == "" && res.Qdstrm == "" {
		return nil, &NoReportError{Session: c.Session, Looked: looked, Output: out}
	}
	if res.Report != "" && res.Qdstrm != "" && res.Imported {
		// The raw stream is redundant once imported; keep disk use down.
		_ = os.Remove(res.Qdstrm)
		res.Files = slices.DeleteFunc(res.Files, func(f string) bool { return f == res.Qdstrm })
		res.Qdstrm = ""
	}
	slices.Sort(res.Files)
	return res, nil
}

// keepLeftovers is the file part of hung-stop recovery: the stop never said where it
// wrote, so only new files in the window folder and the first output count. A hung stop
// on 2022.4 left a .qdstrm there; it is kept (and imported when possible) and named in
// the error, which stays a *TimeoutError either way.
func (c *Controller) keepLeftovers(ctx context.Context, w Window, before map[string]bool, te *TimeoutError) (*StopResult, error) {
	if got, err := c.collect(ctx, w, "", before); err == nil {
		te.Recovered = got.Files
		return got, te
	}
	return nil, te
}

// generatedPaths pulls report paths out of nsys output ("Generated:\n    /x/y.qdstrm",
// "Generating '/tmp/nsys-report-1351.qdstrm'", "Saved report file to \"...\"").
var pathRE = regexp.MustCompile(`(/[^\s'"]+\.(?:nsys-rep|qdrep|qdstrm))`)

func generatedPaths(out string) []string {
	return pathRE.FindAllString(out, -1)
}

func reportExt(p string) string {
	switch {
	case strings.HasSuffix(p, ".nsys-rep"):
		return ".nsys-rep"
	case strings.HasSuffix(p, ".qdrep"):
		return ".nsys-rep" // pre-2021 name of the same format
	case strings.HasSuffix(p, ".qdstrm"):
		return ".qdstrm"
	}
	return ""
}

func snapshot(dir string) map[string]bool {
	m := map[string]bool{}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		m[filepath.Join(dir, e.Name())] = true
	}
	return m
}

func newFiles(dir string, before map[string]bool) map[string]bool {
	m := map[string]bool{}
	for p := range snapshot(dir) {
		if !before[p] {
			m[p] = true
		}
	}
	return m
}

func dedupe(s []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, v := range s {
		if v != "" && !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	return out
}

// MoveFile renames src to dst (replacing it), falling back to CopyFile and removing src
// across file systems (nsys diverts reports to /tmp).
func MoveFile(src, dst string) error {
	if err := os.Rename(src, dst); err == nil {
		return nil
	}
	if err := os.Remove(dst); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if err := CopyFile(src, dst); err != nil {
		return err
	}
	return os.Remove(src)
}

// CopyFile copies src to dst, which must not exist yet, with fsync; dst is 0600 (reports
// and raw streams embed the server's environment). A failed copy leaves no dst.
func CopyFile(src, dst string) error { return regularfile.CopyNew(src, dst, true) }
