package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/nsys-agent/nsys-agent/torchprof"
)

func analyzeCommand() *cli.Command {
	return &cli.Command{
		Name:      "analyze",
		Usage:     "say where each rank's GPU time went and which rank is slow",
		ArgsUsage: "WINDOW | FILES...",
		Description: `Reads per-rank torch-profiler traces (*.trace.json.gz) or an nsys SQLite export
(*.sqlite), given as files or as a window directory holding them, and prints per rank:
GPU busy time, kernel, communication (NCCL, custom all-reduce) and compute time, the top
kernels; across ranks: the slowest rank and why, and per-kernel max/min ratios.

   nsys-agent analyze ./window-3 --html report.html
   nsys-agent analyze -o json report.sqlite`,
		Flags: []cli.Flag{
			outputFlag("output", "o"),
			&cli.StringFlag{Name: "html", Usage: "also write a self-contained HTML report to `FILE`"},
		},
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
	s, err := analyzeInputs(c, args)
	if err != nil {
		return err
	}
	if path := c.String("html"); path != "" {
		if err := writeHTMLReport(s, path); err != nil {
			return err
		}
	}
	if format == "json" {
		enc := json.NewEncoder(c.App.Writer)
		enc.SetIndent("", "  ")
		return enc.Encode(s)
	}
	printSummary(c, s)
	return nil
}

// analyzeInputs picks the reader: a .sqlite export, or Kineto traces (given or found).
func analyzeInputs(c *cli.Context, args []string) (*torchprof.Summary, error) {
	if len(args) == 1 {
		fi, err := os.Stat(args[0])
		if err != nil {
			return nil, err
		}
		if fi.IsDir() {
			sqlites, _ := filepath.Glob(filepath.Join(args[0], "*.sqlite"))
			traces, _ := filepath.Glob(filepath.Join(args[0], "*.trace.json*"))
			switch {
			case len(traces) > 0:
				files, err := torchprof.Discover(args[0])
				if err != nil {
					return nil, err
				}
				return torchprof.AnalyzeKineto(c.Context, files)
			case len(sqlites) == 1:
				return torchprof.AnalyzeNsysSQLite(c.Context, sqlites[0])
			case len(sqlites) > 1:
				return nil, usagef("analyze: %s holds %d .sqlite exports; name one", args[0], len(sqlites))
			default:
				return nil, fmt.Errorf("analyze: %s holds no *.trace.json.gz or *.sqlite", args[0])
			}
		}
		if strings.HasSuffix(args[0], ".sqlite") {
			return torchprof.AnalyzeNsysSQLite(c.Context, args[0])
		}
	}
	for _, a := range args {
		if strings.HasSuffix(a, ".sqlite") {
			return nil, usagef("analyze: give one .sqlite export alone, not with other files")
		}
	}
	files, err := rankFilesFromArgs(args)
	if err != nil {
		return nil, err
	}
	return torchprof.AnalyzeKineto(c.Context, files)
}

func writeHTMLReport(s *torchprof.Summary, path string) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("analyze: %w", err)
	}
	if err := s.WriteHTML(f); err != nil {
		f.Close()
		return fmt.Errorf("analyze: write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("analyze: write %s: %w", path, err)
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
