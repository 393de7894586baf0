package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/nsys-agent/nsys-agent/torchprof"
)

func mergeCommand() *cli.Command {
	return &cli.Command{
		Name:      "merge",
		Usage:     "merge per-rank torch-profiler traces into one timeline",
		ArgsUsage: "FILES... | DIR",
		Description: `Merges SGLang's (...-TP-0.trace.json.gz) or vLLM's (...rank0.<ns>.pt.trace.json.gz)
per-rank Chrome traces into one gzipped trace, as SGLang's merge_profiles does, but
streaming: memory stays flat however large the traces are. Each process is renamed
"[TP00-DP01] <pid>"; ranks whose clocks differ are aligned. A DIR must hold one capture.

   nsys-agent merge ./profiles --out merged.trace.json.gz
   nsys-agent merge rank0.trace.json.gz rank1.trace.json.gz --out merged.trace.json.gz -o json`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "out", Usage: "write the merged trace to `FILE` (.trace.json.gz); required"},
			outputFlag("output", "o"),
			&cli.IntFlag{Name: "level", Value: 1, Usage: "gzip `LEVEL` of the output, 1 (fastest) to 9"},
			&cli.BoolFlag{Name: "no-clock-align", Usage: "keep each rank's timestamps even when their baseTimeNanoseconds differ"},
			&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "no progress bar"},
			// Until the next release: --json was the format, -o the output file.
			&cli.BoolFlag{Name: "json", Hidden: true},
		},
		Action: runMerge,
	}
}

func runMerge(c *cli.Context) error {
	args, err := interspersedArgs(c)
	if err != nil {
		return err
	}
	if len(args) == 0 {
		return usagef("merge: give the per-rank trace files or their directory")
	}
	out, format, err := mergeDeprecations(c)
	if err != nil {
		return err
	}
	if l := c.Int("level"); l < 1 || l > 9 {
		return usagef("merge: --level %d: want 1 to 9", l)
	}
	files, err := rankFilesFromArgs(args)
	if err != nil {
		return err
	}
	opts := torchprof.MergeOptions{Level: c.Int("level"), NoClockAlign: c.Bool("no-clock-align")}
	stderr := c.App.ErrWriter
	if !c.Bool("quiet") && isTerminal(stderr) {
		opts.Progress = mergeProgress(stderr)
	}
	st, err := torchprof.Merge(c.Context, files, out, opts)
	if opts.Progress != nil {
		fmt.Fprintln(stderr)
	}
	if err != nil {
		return err
	}
	printWarnings(stderr, st.Warnings)
	w := c.App.Writer
	if format == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(st)
	}
	for _, r := range st.Ranks {
		shift := ""
		if r.ShiftNs != 0 {
			shift = fmt.Sprintf(" (clock shifted %v)", time.Duration(r.ShiftNs))
		}
		fmt.Fprintf(w, "%-16s %9d events  %s%s\n", r.Label, r.Events, r.Path, shift)
	}
	d := time.Duration(st.Duration)
	fmt.Fprintf(w, "merged %d events from %d ranks into %s in %.2fs (%.0f k events/s)\n",
		st.Events, len(st.Ranks), st.Output, d.Seconds(), float64(st.Events)/d.Seconds()/1e3)
	return nil
}

// mergeDeprecations applies the flags of the previous release, `-o FILE` and --json,
// with a note on stderr, and returns the output file and format.
func mergeDeprecations(c *cli.Context) (out, format string, err error) {
	out, format, stderr := c.String("out"), c.String("output"), c.App.ErrWriter
	if format != "table" && format != "json" {
		if out != "" {
			return "", "", usagef("merge: -o %q: want table or json (the merged trace goes in --out FILE)", format)
		}
		fmt.Fprintf(stderr, "nsys-agent: merge -o FILE is deprecated and goes away in the next release: use --out %s (-o is the output format: table or json)\n", shellQuote(format))
		out, format = format, "table"
	}
	if c.Bool("json") {
		fmt.Fprintln(stderr, "nsys-agent: merge --json is deprecated and goes away in the next release: use -o json")
		format = "json"
	}
	if out == "" {
		return "", "", usagef("merge: --out FILE is required (where the merged trace goes)")
	}
	return out, format, nil
}

// rankFilesFromArgs takes one directory (a capture to discover) or trace files.
func rankFilesFromArgs(args []string) ([]torchprof.RankFile, error) {
	if len(args) == 1 {
		fi, err := os.Stat(args[0])
		if err != nil {
			return nil, err
		}
		if fi.IsDir() {
			return torchprof.Discover(args[0])
		}
	}
	for _, a := range args {
		fi, err := os.Stat(a)
		if err != nil {
			return nil, err
		}
		if fi.IsDir() {
			return nil, usagef("%s is a directory: give one directory or only files", a)
		}
	}
	return torchprof.RankFilesFromPaths(args), nil
}

// mergeProgress redraws one line: a bar, percent and MB of input read.
func mergeProgress(w io.Writer) func(done, total int64) {
	return func(done, total int64) {
		if total <= 0 {
			return
		}
		const width = 30
		n := int(done * width / total)
		fmt.Fprintf(w, "\r[%s%s] %3d%%  %d/%d MB", strings.Repeat("#", n), strings.Repeat(" ", width-n),
			done*100/total, done>>20, total>>20)
	}
}

// printWarnings tells, on stderr, what malformed input a reader skipped or kept.
func printWarnings(w io.Writer, warnings []torchprof.Warning) {
	for _, warn := range warnings {
		fmt.Fprintln(w, "warning:", warn.String())
	}
}
