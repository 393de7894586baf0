package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/urfave/cli/v2"

	"github.com/nsys-agent/nsys-agent/torchprof"
)

func mergeCommand() *cli.Command {
	return &cli.Command{
		Name:      "merge",
		Usage:     "merge per-rank torch-profiler traces, of one host or several, into one timeline",
		ArgsUsage: "FILES... | DIR | GROUP-DIR",
		Description: `Merges SGLang's (...-TP-0.trace.json.gz) or vLLM's (...rank0.<ns>.pt.trace.json.gz)
per-rank Chrome traces into one gzipped trace, as SGLang's merge_profiles does, but
streaming: memory stays flat however large the traces are. Each process is renamed
"[TP00-DP01] <pid>"; ranks whose clocks differ are aligned. A DIR must hold one capture.

A GROUP-DIR is a group window pulled with 'pull GROUP': DIR/group.json and one folder per
host (DIR/gpu-1_7477/...). Every host's ranks are put on the coordinator's clock with the
clock offsets group.json records, labelled with their host ("[gpu-1_7477:TP00] 435"),
and written to DIR/merged.trace.json.gz (or --out) and, beside it, a Perfetto
multi-machine bundle (merged.perfetto.tar: every rank trace, one machine per host, clock
offsets in its perfetto_manifest.json; open it in ui.perfetto.dev or trace_processor).
A folder of host folders without group.json is merged too, but no host's clock offset
is known: the output says the timeline is UNALIGNED. A group of nsys windows holds
reports, not traces: merge refuses it (open the reports together in Nsight Systems, or
compare their ranks with analyze GROUP-DIR).

   nsys-agent merge ./profiles --out merged.trace.json.gz
   nsys-agent merge rank0.trace.json.gz rank1.trace.json.gz --out merged.trace.json.gz -o json
   nsys-agent merge ./g-run1                      # a pulled group: ./g-run1/merged.trace.json.gz + merged.perfetto.tar
   nsys-agent merge ./g-run1 --out all.trace.json.gz --no-perfetto
   nsys-agent merge ./profiles --out m.trace.json.gz --perfetto m.perfetto.tar`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "out", Usage: "write the merged trace to `FILE` (.trace.json.gz); required but for a group folder (DIR/merged.trace.json.gz)"},
			outputFlag("output", "o"),
			&cli.IntFlag{Name: "level", Value: 1, Usage: "gzip `LEVEL` of the output, 1 (fastest) to 9"},
			&cli.BoolFlag{Name: "no-clock-align", Usage: "keep each rank's timestamps even when their baseTimeNanoseconds or their hosts' clocks differ"},
			&cli.StringFlag{Name: "perfetto", Usage: "also write a Perfetto multi-machine bundle to `FILE` (.perfetto.tar; a group folder gets one beside the merged trace by default)"},
			&cli.BoolFlag{Name: "no-perfetto", Usage: "no Perfetto bundle for a group folder"},
			&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "no progress bar"},
			// Until the next release: --json was the format, -o the output file.
			&cli.BoolFlag{Name: "json", Hidden: true},
		},
		Action: runMerge,
	}
}

// mergeJSON is merge's JSON: the merge's statistics, the bundle's and the group's.
type mergeJSON struct {
	torchprof.MergeStats
	Perfetto *torchprof.BundleStats `json:"perfetto,omitempty"`
	Group    *groupInfo             `json:"group,omitempty"`
}

func runMerge(c *cli.Context) error {
	args, err := interspersedArgs(c)
	if err != nil {
		return err
	}
	if len(args) == 0 {
		return usagef("merge: give the per-rank trace files, their directory or a pulled group folder")
	}
	var g *groupFolder
	if len(args) == 1 && isGroupFolder(args[0]) {
		if g, err = readGroupFolder(args[0]); err != nil {
			return fmt.Errorf("merge: %w", err)
		}
		if g.isNsys() {
			return fmt.Errorf("merge: %s holds nsys reports, which do not merge into one trace file: open them together in Nsight Systems (File > Open, several reports: one timeline per host), or compare their ranks with nsys-agent analyze %s", args[0], args[0])
		}
	}
	defaultOut := ""
	if g != nil {
		defaultOut = filepath.Join(g.Dir, "merged.trace.json.gz")
	}
	out, format, err := mergeDeprecations(c, defaultOut)
	if err != nil {
		return err
	}
	if l := c.Int("level"); l < 1 || l > 9 {
		return usagef("merge: --level %d: want 1 to 9", l)
	}
	bundle, err := perfettoPath(c, out, g != nil)
	if err != nil {
		return err
	}
	var files []torchprof.RankFile
	if g != nil {
		files = g.files()
	} else if files, err = rankFilesFromArgs(args); err != nil {
		return err
	}
	opts := torchprof.MergeOptions{Level: c.Int("level"), NoClockAlign: c.Bool("no-clock-align")}
	stderr := c.App.ErrWriter
	bar := !c.Bool("quiet") && isTerminal(stderr)
	if bar {
		opts.Progress = mergeProgress(stderr)
	}
	st, err := torchprof.Merge(c.Context, files, out, opts)
	if opts.Progress != nil {
		fmt.Fprintln(stderr)
	}
	if err != nil {
		return err
	}
	res := mergeJSON{MergeStats: st}
	if g != nil {
		res.Group = g.info(nil)
	}
	if bundle != "" {
		bo := torchprof.BundleOptions{NoClockAlign: opts.NoClockAlign, Attributes: bundleAttributes(g)}
		if bar {
			bo.Progress = mergeProgress(stderr)
		}
		bs, err := torchprof.WritePerfettoBundle(c.Context, files, bundle, bo)
		if bo.Progress != nil {
			fmt.Fprintln(stderr)
		}
		if err != nil {
			return fmt.Errorf("merge: the merged trace %s is written, the Perfetto bundle is not: %w", out, err)
		}
		res.Perfetto = &bs
	}
	printWarnings(stderr, st.Warnings)
	w := c.App.Writer
	if format == "json" {
		if res.Group != nil && !st.Aligned {
			fmt.Fprintln(stderr, "warning: timeline "+unalignedNote(res.Group))
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(res)
	}
	for _, r := range st.Ranks {
		shift := ""
		if r.ShiftNs != 0 {
			shift = fmt.Sprintf(" (clock shifted %v)", time.Duration(r.ShiftNs))
		}
		fmt.Fprintf(w, "%-16s %9d events  %s%s\n", r.Label, r.Events, r.Path, shift)
	}
	if res.Group != nil {
		printGroup(w, res.Group)
	}
	d := time.Duration(st.Duration)
	fmt.Fprintf(w, "merged %d events from %d ranks into %s in %.2fs (%.0f k events/s)\n",
		st.Events, len(st.Ranks), st.Output, d.Seconds(), float64(st.Events)/d.Seconds()/1e3)
	if b := res.Perfetto; b != nil {
		fmt.Fprintf(w, "Perfetto bundle: %s (%d rank traces, %s; open it in ui.perfetto.dev or with trace_processor)\n",
			b.Output, len(b.Files), humanize.IBytes(uint64(b.Bytes)))
	}
	return nil
}

// perfettoPath is where the Perfetto bundle goes: --perfetto, else beside the merged
// trace for a group folder (merged.trace.json.gz -> merged.perfetto.tar), else none.
func perfettoPath(c *cli.Context, out string, group bool) (string, error) {
	p := c.String("perfetto")
	if c.Bool("no-perfetto") {
		if p != "" {
			return "", usagef("merge: --perfetto and --no-perfetto: give one")
		}
		return "", nil
	}
	if p != "" || !group {
		return p, nil
	}
	stem := out
	for _, ext := range []string{".gz", ".json", ".trace"} {
		stem = strings.TrimSuffix(stem, ext)
	}
	return stem + ".perfetto.tar", nil
}

// bundleAttributes annotate a group's bundle with the group (Perfetto shows them as
// manifest_attribute.* metadata).
func bundleAttributes(g *groupFolder) map[string]string {
	if g == nil || g.Record == nil {
		return nil
	}
	a := map[string]string{"nsys_agent.group": g.Record.ID}
	if g.Record.Coordinator != "" {
		a["nsys_agent.coordinator"] = g.Record.Coordinator
	}
	if !g.Record.StartAt.IsZero() {
		a["nsys_agent.start_at"] = g.Record.StartAt.UTC().Format(time.RFC3339Nano)
	}
	return a
}

// mergeDeprecations applies the flags of the previous release, `-o FILE` and --json,
// with a note on stderr, and returns the output file (defaultOut when not given) and
// format.
func mergeDeprecations(c *cli.Context, defaultOut string) (out, format string, err error) {
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
		out = defaultOut
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
