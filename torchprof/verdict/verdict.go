// Package verdict says whether a capture window can be trusted: is it complete (every
// rank's kernels are there, CUDA graphs traced node by node, the NVTX that was asked
// for), is it readable (the report opens, the traces parse), and is it a sane size.
// Each check reads files only: an nsys SQLite export, a window folder, Kineto rank
// traces and a merged trace. Checks that need an expectation (how many ranks, whether
// NVTX is wanted) say nothing when it is absent: they never guess.
package verdict

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// Level grades a finding and a whole verdict. The zero value is OK.
type Level int

const (
	OK      Level = iota // nothing wrong was found
	Warning              // usable, with a caveat worth acting on
	Broken               // the capture misses what it was taken for
)

var levelNames = [...]string{OK: "ok", Warning: "warning", Broken: "broken"}

func (l Level) String() string {
	if l >= 0 && int(l) < len(levelNames) {
		return levelNames[l]
	}
	return fmt.Sprintf("Level(%d)", int(l))
}

// MarshalText writes "ok", "warning" or "broken" (manifests and the API are JSON).
func (l Level) MarshalText() ([]byte, error) {
	if l < 0 || int(l) >= len(levelNames) {
		return nil, fmt.Errorf("verdict: no such level %d", int(l))
	}
	return []byte(levelNames[l]), nil
}

// UnmarshalText reads what MarshalText wrote.
func (l *Level) UnmarshalText(b []byte) error {
	i := slices.Index(levelNames[:], string(b))
	if i < 0 {
		return fmt.Errorf("verdict: level %q: want ok, warning or broken", b)
	}
	*l = Level(i)
	return nil
}

// Finding is one thing wrong with a window, in one line, with what to do about it.
type Finding struct {
	// ID names the kind of finding; the set (IDs) is stable, so it can label a
	// Prometheus counter and be matched by scripts.
	ID      string `json:"id"`
	Level   Level  `json:"level"`
	Message string `json:"message"`
	Fix     string `json:"fix,omitempty"`
	// PID is the process (nsys exports) and Rank the rank label (Kineto traces, e.g.
	// "TP01") the finding is about, when it is about one.
	PID  int    `json:"pid,omitempty"`
	Rank string `json:"rank,omitempty"`
	// File is the window's file the finding is about (base name), when there are several.
	File string `json:"file,omitempty"`
}

// String is the finding's one line: level, ID, message.
func (f Finding) String() string {
	return fmt.Sprintf("%s %s: %s", f.Level, f.ID, f.Message)
}

// Verdict is every finding about one window and the worst of their levels.
type Verdict struct {
	Level    Level     `json:"level"`
	Findings []Finding `json:"findings"`
	// Skipped says which checks did not run and why (an expectation was not given, or
	// the input has nothing they read), so that "ok" is not read as more than it is.
	Skipped []string `json:"skipped,omitempty"`
}

// Add appends findings (a check of another package, e.g. what the window cost the
// server) and raises the level to the worst of them; findings stay sorted.
func (v *Verdict) Add(fs ...Finding) {
	for _, f := range fs {
		v.Findings = append(v.Findings, f)
		v.Level = max(v.Level, f.Level)
	}
	v.sort()
}

func (v *Verdict) skip(format string, a ...any) {
	v.Skipped = append(v.Skipped, fmt.Sprintf(format, a...))
}

// Merge adds other's findings and skipped checks to v, for a window checked in parts
// (several reports of one window, or a report and its torch traces).
func (v *Verdict) Merge(other Verdict) {
	v.Add(other.Findings...)
	for _, s := range other.Skipped {
		if !slices.Contains(v.Skipped, s) {
			v.Skipped = append(v.Skipped, s)
		}
	}
}

// sort orders findings worst first, then by ID, process and rank, so that output is
// stable whatever order the checks ran in.
func (v *Verdict) sort() {
	slices.SortStableFunc(v.Findings, func(a, b Finding) int {
		return cmp.Or(cmp.Compare(b.Level, a.Level), strings.Compare(a.ID, b.ID),
			strings.Compare(a.File, b.File), cmp.Compare(a.PID, b.PID), strings.Compare(a.Rank, b.Rank))
	})
}

// Count returns how many findings have each ID, for a counter by finding.
func (v Verdict) Count() map[string]int {
	m := map[string]int{}
	for _, f := range v.Findings {
		m[f.ID]++
	}
	return m
}
