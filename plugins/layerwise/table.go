package layerwise

// The layer table: the window's summary (top modules per rank, in the manifest), the full
// table as layers.csv, and the text `nsys-agent show` prints.

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"unicode"

	"github.com/nsys-agent/nsys-agent/internal/atomicfile"
)

// SummaryKind marks a window summary as this backend's (Summary.Kind).
const SummaryKind = "layerwise-nvtx"

// The orders of the table (window option sort).
const (
	SortSelf  = "self"  // GPU time of the kernels launched directly in the module (default)
	SortTotal = "total" // including its submodules
)

// Summary is the compact answer in the window's manifest: per rank, the top modules.
type Summary struct {
	Kind    string   `json:"kind"`
	Sort    string   `json:"sort"`
	Top     int      `json:"top"`
	Reports []string `json:"reports"`         // the exports analyzed, by base name
	Table   string   `json:"table,omitempty"` // the full table's file in the window folder
	Ranks   []Rank   `json:"ranks"`
}

// Rank is one process: its kernel time and its top modules.
type Rank struct {
	PID     int    `json:"pid"`
	Process string `json:"process,omitempty"`
	Kernels int64  `json:"kernels"`
	// KernelNs is the GPU time of all the process's kernels in the window: shares are of it.
	KernelNs int64 `json:"kernel_ns"`
	// InLayersNs is the GPU time of the kernels launched inside a layer range.
	InLayersNs  int64    `json:"in_layers_ns"`
	LayerRanges int64    `json:"layer_ranges"`
	Modules     []Module `json:"modules"`
	// MoreModules is how many modules of the rank are in the table but not in Modules.
	MoreModules int `json:"more_modules,omitempty"`
}

// Module is one row of the table.
type Module struct {
	Module string `json:"module"`
	// Layer is the module's layer number, -1 when it belongs to none (see Marker.Layer).
	Layer   int   `json:"layer"`
	Calls   int64 `json:"calls"`   // ranges of the module
	Kernels int64 `json:"kernels"` // kernels launched inside them, submodules included
	TotalNs int64 `json:"total_ns"`
	SelfNs  int64 `json:"self_ns"`
	MeanNs  int64 `json:"mean_ns"` // TotalNs per call
	// Share and SelfShare are TotalNs and SelfNs over the rank's KernelNs.
	Share     float64 `json:"share"`
	SelfShare float64 `json:"self_share"`
	kind      string
}

// rows is a rank's table, ordered: modules by the sort key, then the rows that are no
// module (outside layer ranges, no launch record).
func (a *Analysis) rows(rk *rankAcc, order string) []Module {
	out := make([]Module, 0, len(rk.modules)+2)
	for _, acc := range rk.modules {
		out = append(out, row(acc, rk.kernelNs))
	}
	sort.Slice(out, func(i, j int) bool {
		x, y := out[i], out[j]
		kx, ky := x.SelfNs, y.SelfNs
		if order == SortTotal {
			kx, ky = x.TotalNs, y.TotalNs
		}
		switch {
		case kx != ky:
			return kx > ky
		case x.TotalNs != y.TotalNs:
			return x.TotalNs > y.TotalNs
		case x.Calls != y.Calls:
			return x.Calls > y.Calls
		}
		return x.Module < y.Module
	})
	if rk.outside.kernels > 0 {
		out = append(out, row(rk.outside, rk.kernelNs))
	}
	if miss := rk.kernels - rk.launched; miss > 0 {
		// Their count is known, their time only as what the launched ones leave.
		launchedNs := rk.inLayers + rk.outside.total
		acc := &moduleAcc{marker: Marker{Module: noLaunchRecord, Layer: -1}, kernels: miss,
			total: max(rk.kernelNs-launchedNs, 0)}
		acc.self = acc.total
		out = append(out, row(acc, rk.kernelNs))
	}
	return out
}

func row(acc *moduleAcc, kernelNs int64) Module {
	m := Module{Module: acc.marker.Module, Layer: acc.marker.Layer, Calls: acc.calls,
		Kernels: acc.kernels, TotalNs: acc.total, SelfNs: acc.self, kind: acc.marker.Kind}
	if acc.calls > 0 {
		m.MeanNs = acc.total / acc.calls
	}
	if kernelNs > 0 {
		m.Share = round4(float64(acc.total) / float64(kernelNs))
		m.SelfShare = round4(float64(acc.self) / float64(kernelNs))
	}
	return m
}

func round4(f float64) float64 { return math.Round(f*1e4) / 1e4 }

// Summary is the compact table: per rank, the first top modules in the given order (the
// rows that are no module are left to layers.csv).
func (a *Analysis) Summary(top int, order string) Summary {
	s := Summary{Kind: SummaryKind, Sort: order, Top: top, Ranks: []Rank{}}
	for _, p := range a.reports {
		s.Reports = append(s.Reports, filepath.Base(p))
	}
	for _, rk := range a.sortedRanks() {
		r := Rank{PID: rk.pid, Process: rk.process, Kernels: rk.kernels, KernelNs: rk.kernelNs,
			InLayersNs: rk.inLayers, LayerRanges: rk.ranges, Modules: []Module{}}
		n := 0
		for _, m := range a.rows(rk, order) {
			if m.kind == "" { // not a module
				continue
			}
			if n < top {
				r.Modules = append(r.Modules, m)
			}
			n++
		}
		r.MoreModules = max(n-top, 0)
		s.Ranks = append(s.Ranks, r)
	}
	return s
}

// csvHeader is layers.csv's first line.
var csvHeader = []string{"pid", "process", "module", "kind", "layer", "calls", "kernels",
	"total_ns", "self_ns", "mean_ns", "share", "self_share"}

// WriteCSV writes the full table: every module of every rank, ranks by pid, rows in the
// given order, then per rank the rows that are no module.
func (a *Analysis) WriteCSV(w io.Writer, order string) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(csvHeader); err != nil {
		return err
	}
	for _, rk := range a.sortedRanks() {
		for _, m := range a.rows(rk, order) {
			layer := ""
			if m.Layer >= 0 {
				layer = strconv.Itoa(m.Layer)
			}
			rec := []string{strconv.Itoa(rk.pid), csvText(rk.process), csvText(m.Module), csvText(m.kind), layer,
				strconv.FormatInt(m.Calls, 10), strconv.FormatInt(m.Kernels, 10),
				strconv.FormatInt(m.TotalNs, 10), strconv.FormatInt(m.SelfNs, 10), strconv.FormatInt(m.MeanNs, 10),
				strconv.FormatFloat(m.Share, 'f', 4, 64), strconv.FormatFloat(m.SelfShare, 'f', 4, 64)}
			if err := cw.Write(rec); err != nil {
				return err
			}
		}
	}
	cw.Flush()
	return cw.Error()
}

// WriteCSVFile writes the table to path atomically (0600: module names come from the
// server's model).
func (a *Analysis) WriteCSVFile(path, order string) error {
	f, err := atomicfile.New(path, 0o600)
	if err != nil {
		return fmt.Errorf("writing the layer table: %w", err)
	}
	if err := a.WriteCSV(f, order); err != nil {
		f.Abort()
		return fmt.Errorf("writing the layer table %s: %w", path, err)
	}
	return f.Commit()
}

// csvText keeps a text cell (a module name comes from the server's model, which need not
// be trusted) from being read as a formula by a spreadsheet — such cells get a leading ' —
// or driving a terminal that shows the file: control characters are escaped.
func csvText(s string) string {
	s = escapeControls(s)
	if s != "" && strings.ContainsRune("=+-@", rune(s[0])) {
		return "'" + s
	}
	return s
}

// WriteTable prints a window summary's layer table for `nsys-agent show`: per rank, its
// kernel time and its top modules (top <= 0: all the summary holds). It returns false,
// writing nothing, when the summary is not this backend's, so the caller can print
// another kind; an error when it claims to be but cannot be read.
func WriteTable(w io.Writer, summary json.RawMessage, top int) (bool, error) {
	var probe struct {
		Kind string `json:"kind"`
	}
	if len(summary) == 0 || json.Unmarshal(summary, &probe) != nil || probe.Kind != SummaryKind {
		return false, nil
	}
	var s Summary
	if err := json.Unmarshal(summary, &s); err != nil {
		return true, fmt.Errorf("reading the window's layer table: %w", err)
	}
	key := "self"
	if s.Sort == SortTotal {
		key = "total"
	}
	for i, r := range s.Ranks {
		if i > 0 {
			fmt.Fprintln(w)
		}
		label := fmt.Sprintf("pid %d", r.PID)
		if r.Process != "" {
			label += " (" + printable(r.Process) + ")"
		}
		inside := 0.0
		if r.KernelNs > 0 {
			inside = 100 * float64(r.InLayersNs) / float64(r.KernelNs)
		}
		fmt.Fprintf(w, "%s: %d kernels, %s on the GPU, %.1f%% inside %d layer ranges; modules by %s time\n",
			label, r.Kernels, ms(r.KernelNs), inside, r.LayerRanges, key)
		if len(r.Modules) == 0 {
			fmt.Fprintln(w, "  no layer ranges")
			continue
		}
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "  SELF ms\tSELF %\tTOTAL ms\tCALLS\tMEAN ms\tLAYER\t\tMODULE")
		n := 0
		for _, m := range r.Modules {
			if top > 0 && n >= top {
				break
			}
			n++
			layer := "-"
			if m.Layer >= 0 {
				layer = strconv.Itoa(m.Layer)
			}
			fmt.Fprintf(tw, "  %s\t%.1f%%\t%s\t%d\t%s\t%s\t\t%s\n", msf(m.SelfNs), 100*m.SelfShare, msf(m.TotalNs),
				m.Calls, msf(m.MeanNs), layer, printable(m.Module))
		}
		tw.Flush()
		if more := len(r.Modules) - n + r.MoreModules; more > 0 {
			table := s.Table
			if table == "" {
				table = "the window's table"
			}
			fmt.Fprintf(w, "  (%d more modules in %s)\n", more, table)
		}
	}
	return true, nil
}

func msf(ns int64) string { return strconv.FormatFloat(float64(ns)/1e6, 'f', 3, 64) }

func ms(ns int64) string { return msf(ns) + " ms" }

// printable keeps a text from the export (a module or process name) from driving the
// terminal: control characters and invalid UTF-8 are escaped, and it is cut at 160 runes.
func printable(s string) string {
	if r := []rune(s); len(r) > 160 {
		s = string(r[:159]) + "…"
	}
	return escapeControls(s)
}

// escapeControls writes control and unprintable characters, and invalid UTF-8, as Go
// escapes (\x1b, \ufffd).
func escapeControls(s string) string {
	clean := true
	for _, r := range s {
		if r == unicode.ReplacementChar || unicode.IsControl(r) || !unicode.IsPrint(r) && r != ' ' {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == unicode.ReplacementChar:
			b.WriteString(`\ufffd`)
		case unicode.IsControl(r) || !unicode.IsPrint(r) && r != ' ':
			q := strconv.QuoteRune(r)
			b.WriteString(q[1 : len(q)-1])
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// marshalSummary is the summary as the manifest keeps it (compact JSON).
func marshalSummary(s Summary) (json.RawMessage, error) {
	raw, err := json.Marshal(s)
	if err != nil {
		return nil, fmt.Errorf("encoding the layer summary: %w", err)
	}
	return raw, nil
}
