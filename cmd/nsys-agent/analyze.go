package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/nsys-agent/nsys-agent/internal/atomicfile"
	"github.com/nsys-agent/nsys-agent/nsys"
	"github.com/nsys-agent/nsys-agent/torchprof"
	"github.com/nsys-agent/nsys-agent/torchprof/verdict"
)

func analyzeCommand() *cli.Command {
	return &cli.Command{
		Name:      "analyze",
		Usage:     "say where each rank's GPU time went, which rank is slow, and whether the capture can be trusted",
		ArgsUsage: "WINDOW | GROUP-DIR | FILES...",
		Description: `Reads per-rank torch-profiler traces (*.trace.json.gz), an nsys SQLite export
(*.sqlite) or an nsys report (*.nsys-rep, exported to SQLite beside it with nsys first),
given as files or as a window directory holding them (what 'pull' wrote), and prints per
rank: GPU busy time, kernel, communication (NCCL, custom all-reduce) and compute time, the
top kernels; across ranks: the slowest rank and why, and per-kernel max/min ratios.

A GROUP-DIR (a group window pulled with 'pull GROUP': group.json and one folder per host)
compares the ranks of every host: rows are labelled with their host (gpu-1_7477:TP00, or
gpu-1_7477:pid 627 for nsys reports), the slowest rank is named across all hosts, every
host is put on the coordinator's clock, and each host's window gets its checks.

Then CHECKS, the capture's verdict (ok, warning or broken), one line per finding with its
fix: no kernels at all, a rank whose launches have no kernels, CUDA graphs traced whole
(not node by node), a report nsys cannot open or a lone .qdstrm, rank traces that do not
parse, a report too large per captured second. Checks that need an expectation run only
when given one (--expect-ranks, --expect-pids, --expect-nvtx). In JSON: "verdict".

   nsys-agent analyze ./reports/w20261130-101500-a1b2c3 --html report.html
   nsys-agent analyze report.nsys-rep --expect-ranks 2
   nsys-agent analyze -o json report.sqlite
   nsys-agent analyze ./g-run1 --expect-ranks 8     # a pulled group; 8 ranks per host`,
		Flags: append([]cli.Flag{
			outputFlag("output", "o"),
			nsysFlag(),
			&cli.StringFlag{Name: "html", Usage: "also write a self-contained HTML report to `FILE`"},
		}, checkFlags()...),
		Action: runAnalyze,
	}
}

func runAnalyze(c *cli.Context) error {
	args, err := interspersedArgs(c)
	if err != nil {
		return err
	}
	if len(args) == 0 {
		return usagef("analyze: give a window directory, trace files or an nsys .sqlite export")
	}
	format := c.String("output")
	if format == "text" { // the previous release's name of the table
		format = "table"
	}
	if format != "table" && format != "json" {
		return usagef("analyze: -o %q: want table or json", format)
	}
	expect, err := expectFromFlags(c)
	if err != nil {
		return err
	}
	var g *groupFolder
	if len(args) == 1 && isGroupFolder(args[0]) {
		if g, err = readGroupFolder(args[0]); err != nil {
			return fmt.Errorf("analyze: %w", err)
		}
	}
	s, err := analyzeInputs(c, args, g)
	if err != nil {
		// A window analyze cannot read (a lone .qdstrm, no kernels) is exactly one whose
		// verdict says what to do: print it before the error.
		var ue usageError
		if !errors.As(err, &ue) && c.Context.Err() == nil {
			if v, cerr := checkInputs(c, args, expect, g); cerr == nil && len(v.Findings) > 0 {
				if format == "json" {
					enc := json.NewEncoder(c.App.Writer)
					enc.SetIndent("", "  ")
					enc.Encode(struct {
						Verdict verdict.Verdict `json:"verdict"`
					}{v})
				} else {
					printChecks(c.App.Writer, v, g != nil)
				}
			}
		}
		return err
	}
	v, err := checkInputs(c, args, expect, g)
	if err != nil {
		return fmt.Errorf("analyze: checking %s: %w", strings.Join(args, " "), err)
	}
	printWarnings(c.App.ErrWriter, s.Warnings)
	if path := c.String("html"); path != "" {
		if err := writeHTMLReport(s, path); err != nil {
			return err
		}
	}
	res := analyzeJSON{Summary: s, Verdict: v}
	if g != nil {
		res.Group = g.info(s)
	}
	if format == "json" {
		if res.Group != nil && !res.Group.Aligned {
			fmt.Fprintln(c.App.ErrWriter, "warning: timeline "+unalignedNote(res.Group))
		}
		enc := json.NewEncoder(c.App.Writer)
		enc.SetIndent("", "  ")
		return enc.Encode(res)
	}
	printSummary(c, s)
	if res.Group != nil {
		fmt.Fprintln(c.App.Writer)
		printGroup(c.App.Writer, res.Group)
	}
	printChecks(c.App.Writer, v, g != nil)
	return nil
}

// analyzeInputs picks the reader: a group folder's traces, a .sqlite export, or Kineto
// traces (given or found).
func analyzeInputs(c *cli.Context, args []string, g *groupFolder) (*torchprof.Summary, error) {
	if g != nil && g.isNsys() {
		return analyzeNsysGroup(c, g)
	}
	if g != nil {
		return torchprof.AnalyzeKineto(c.Context, g.files())
	}
	if len(args) == 1 {
		fi, err := os.Stat(args[0])
		if err != nil {
			return nil, err
		}
		if fi.IsDir() {
			sqlites, _ := filepath.Glob(filepath.Join(args[0], "*.sqlite"))
			traces, _ := filepath.Glob(filepath.Join(args[0], "*.trace.json*"))
			reports, _ := filepath.Glob(filepath.Join(args[0], "*.nsys-rep"))
			switch {
			case len(traces) == 0 && len(sqlites) == 0 && len(reports) == 1:
				return analyzeReport(c, reports[0])
			case len(traces) == 0 && len(sqlites) == 0 && len(reports) > 1:
				return nil, usagef("analyze: %s holds %d .nsys-rep reports; name one", args[0], len(reports))
			case len(traces) > 0:
				files, err := torchprof.Discover(args[0])
				if err != nil {
					return nil, err
				}
				return torchprof.AnalyzeKineto(c.Context, files)
			case len(sqlites) == 1:
				return analyzeSQLite(c, sqlites[0])
			case len(sqlites) > 1:
				return nil, usagef("analyze: %s holds %d .sqlite exports; name one", args[0], len(sqlites))
			default:
				return nil, fmt.Errorf("analyze: %s holds no *.trace.json.gz, *.sqlite or *.nsys-rep", args[0])
			}
		}
		if strings.HasSuffix(args[0], ".sqlite") {
			return analyzeSQLite(c, args[0])
		}
		if strings.HasSuffix(args[0], ".nsys-rep") {
			return analyzeReport(c, args[0])
		}
	}
	for _, a := range args {
		if strings.HasSuffix(a, ".sqlite") || strings.HasSuffix(a, ".nsys-rep") {
			return nil, usagef("analyze: give one nsys report or .sqlite export alone, not with other files")
		}
	}
	files, err := rankFilesFromArgs(args)
	if err != nil {
		return nil, err
	}
	return torchprof.AnalyzeKineto(c.Context, files)
}

// analyzeReport exports an nsys report to SQLite beside it (see exportedSQLite), then
// analyzes the export.
func analyzeReport(c *cli.Context, report string) (*torchprof.Summary, error) {
	sqlite, err := exportedSQLite(c, report)
	if err != nil {
		return nil, err
	}
	return analyzeSQLite(c, sqlite)
}

// exportedSQLite is the SQLite export of an nsys report: made beside it with the nsys
// `run` would use, once (an export newer than the report is reused).
func exportedSQLite(c *cli.Context, report string) (string, error) {
	sqlite := strings.TrimSuffix(report, ".nsys-rep") + ".sqlite"
	rs, err := os.Stat(report)
	if err != nil {
		return "", fmt.Errorf("analyze: %w", err)
	}
	if es, err := os.Stat(sqlite); err == nil && es.ModTime().After(rs.ModTime()) {
		return sqlite, nil
	}
	path, err := nsys.Locate(c.String("nsys"))
	if err != nil {
		return "", fmt.Errorf("analyze: %s needs nsys to be exported to SQLite: %w", report, err)
	}
	fmt.Fprintf(c.App.ErrWriter, "exporting %s to SQLite with %s (kept beside it as %s)\n", report, path, filepath.Base(sqlite))
	out, err := nsys.ExportSQLite(c.Context, nsys.NewExecRunner(path), report, 30*time.Minute)
	if err != nil {
		return "", fmt.Errorf("analyze: exporting %s: %w", report, err)
	}
	return out, nil
}

// analyzeSQLite analyzes an nsys export; a capture without GPU work says so plainly.
func analyzeSQLite(c *cli.Context, sqlite string) (*torchprof.Summary, error) {
	s, err := torchprof.AnalyzeNsysSQLite(c.Context, sqlite)
	return s, noGPUWork(err, sqlite)
}

// noGPUWork says plainly what ErrNoKernels means for what.
func noGPUWork(err error, what string) error {
	if errors.Is(err, torchprof.ErrNoKernels) {
		return fmt.Errorf("analyze: %s holds no GPU work: no CUDA kernel ran during this capture (a CPU-only program, or a window in which the server computed nothing); nothing to attribute", what)
	}
	return err
}

// analyzeNsysGroup analyzes a group of nsys windows: each host's export (made from its
// report where it has none), with the host's clock offset from group.json.
func analyzeNsysGroup(c *cli.Context, g *groupFolder) (*torchprof.Summary, error) {
	inputs := make([]torchprof.NsysInput, len(g.Hosts))
	for i, h := range g.Hosts {
		in := torchprof.NsysInput{Path: h.Nsys, Host: h.Name}
		if strings.HasSuffix(h.Nsys, ".nsys-rep") {
			sqlite, err := exportedSQLite(c, h.Nsys)
			if err != nil {
				return nil, fmt.Errorf("host %s: %w", h.Name, err)
			}
			in.Path = sqlite
		}
		if offsetKnown(h.Member) {
			in.HostOffsetNs, in.HostOffsetKnown = h.Member.OffsetNs, true
		}
		inputs[i] = in
	}
	s, err := torchprof.AnalyzeNsysHosts(c.Context, inputs)
	return s, noGPUWork(err, "the group's capture ("+g.Dir+")")
}

func writeHTMLReport(s *torchprof.Summary, path string) error {
	f, err := atomicfile.New(path, 0o644)
	if err != nil {
		return fmt.Errorf("analyze: %w", err)
	}
	defer f.Abort()
	if err := s.WriteHTML(f); err != nil {
		return fmt.Errorf("analyze: write %s: %w", path, err)
	}
	if err := f.Commit(); err != nil {
		return fmt.Errorf("analyze: %w", err)
	}
	return nil
}

func printSummary(c *cli.Context, s *torchprof.Summary) {
	out := c.App.Writer
	msf := func(ns int64) string { return fmt.Sprintf("%.3f", float64(ns)/1e6) }
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "RANK\tKERNELS\tKERNEL ms\tBUSY ms\tCOMM ms\tCOMPUTE ms\tSPAN ms\t")
	for _, r := range s.Ranks {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\t\n", r.Label, r.Kernels, msf(r.KernelNs), msf(r.BusyNs),
			msf(r.CommNs), msf(r.ComputeNs), msf(r.SpanNs))
	}
	tw.Flush()
	for _, r := range s.Ranks {
		fmt.Fprintf(out, "\n%s top kernels:\n", r.Label)
		for _, k := range r.Top {
			comm := ""
			if k.Comm {
				comm = "  [comm]"
			}
			fmt.Fprintf(out, "  %5.1f%%  %10s ms  %6d×  %s%s\n", k.Share*100, msf(k.TotalNs), k.Count, truncate(k.Name, 90), comm)
		}
	}
	if len(s.Ranks) > 1 {
		fmt.Fprintf(out, "\nslowest rank: %s, imbalance %.3f×\n%s\n", s.SlowestRank, s.Imbalance, s.Reason)
	}
}

func truncate(s string, n int) string {
	s = strings.TrimPrefix(s, "void ")
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}
