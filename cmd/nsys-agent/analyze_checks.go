package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/urfave/cli/v2"

	"github.com/nsys-agent/nsys-agent/nsys"
	"github.com/nsys-agent/nsys-agent/torchprof"
	"github.com/nsys-agent/nsys-agent/torchprof/verdict"
)

// checkFlags are analyze's expectations for the window checks; without them the checks
// that need one say so instead of guessing.
func checkFlags() []cli.Flag {
	return []cli.Flag{
		&cli.IntFlag{Name: "expect-ranks", Usage: "the window should hold `N` ranks (tp_size; nsys: processes with kernels)"},
		&cli.StringFlag{Name: "expect-pids", Usage: "nsys windows: these processes (`PID,PID,...`) should have done GPU work"},
		&cli.BoolFlag{Name: "expect-nvtx", Usage: "nsys windows: NVTX ranges were asked for"},
		&cli.StringFlag{Name: "size-budget", Value: humanize.IBytes(uint64(verdict.DefaultSizeBudgetPerSecond)),
			Usage: "warn when the report is larger than `SIZE` per captured second (0: never)"},
	}
}

// expectFromFlags reads checkFlags.
func expectFromFlags(c *cli.Context) (verdict.Expect, error) {
	e := verdict.Expect{RankCount: c.Int("expect-ranks"), NVTX: c.Bool("expect-nvtx")}
	if e.RankCount < 0 {
		return e, usagef("analyze: --expect-ranks %d: want a count of ranks", e.RankCount)
	}
	if s := strings.TrimSpace(c.String("expect-pids")); s != "" {
		for _, f := range strings.Split(s, ",") {
			pid, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || pid <= 0 {
				return e, usagef("analyze: --expect-pids %q: want process ids separated by commas, e.g. 1171,1172", s)
			}
			e.PIDs = append(e.PIDs, pid)
		}
	}
	if b := c.String("size-budget"); b != "0" {
		n, err := humanize.ParseBytes(b)
		if err != nil || n > 1<<62 {
			return e, usagef("analyze: --size-budget %q: want a size such as 50MiB, or 0", b)
		}
		e.SizeBudgetPerSecond = int64(n)
	}
	return e, nil
}

// checkInputs runs the window checks on what analyze read: a group folder, a window
// folder, an export, a report or rank traces (the same dispatch as analyzeInputs).
func checkInputs(c *cli.Context, args []string, e verdict.Expect, g *groupFolder) (verdict.Verdict, error) {
	tools := analyzeTools(c)
	if g != nil {
		return checkGroup(c.Context, g, tools, e)
	}
	if len(args) == 1 {
		a := args[0]
		if fi, err := os.Stat(a); err == nil && fi.IsDir() {
			return verdict.CheckDir(c.Context, a, tools, e)
		}
		switch {
		case strings.HasSuffix(a, ".nsys-rep"):
			return verdict.CheckReport(c.Context, a, tools, e)
		case strings.HasSuffix(a, ".sqlite"):
			if e.ReportBytes == 0 {
				// The export's report, when it sits beside it, is what the size budget is about.
				if fi, err := os.Stat(strings.TrimSuffix(a, ".sqlite") + ".nsys-rep"); err == nil && fi.Mode().IsRegular() {
					e.ReportBytes = fi.Size()
				}
			}
			return verdict.CheckExport(c.Context, a, e)
		}
	}
	files, err := rankFilesFromArgs(args)
	if err != nil {
		return verdict.Verdict{}, err
	}
	return verdict.CheckKineto(c.Context, files, "", e)
}

// checkGroup checks each host's window folder (an expectation such as --expect-ranks is
// per host: each host ran its own window) and names the host in every finding: its file
// as HOST/FILE, its rank as HOST:RANK, as the summary labels ranks.
func checkGroup(ctx context.Context, g *groupFolder, tools verdict.Tools, e verdict.Expect) (verdict.Verdict, error) {
	v := verdict.Verdict{Findings: []verdict.Finding{}} // [] as a window's verdict has
	for _, h := range g.Hosts {
		hv, err := verdict.CheckDir(ctx, h.Dir, tools, e)
		if err != nil {
			return verdict.Verdict{}, fmt.Errorf("host %s: %w", h.Name, err)
		}
		for i := range hv.Findings {
			f := &hv.Findings[i]
			f.File = path.Join(h.Name, f.File)
			if f.Rank != "" {
				f.Rank = h.Name + ":" + f.Rank
			}
		}
		for i, s := range hv.Skipped {
			hv.Skipped[i] = h.Name + ": " + s
		}
		v.Merge(hv)
	}
	return v, nil
}

// analyzeTools gives the checks the nsys that analyze uses, found only when a check needs it.
func analyzeTools(c *cli.Context) verdict.Tools {
	t := verdict.Tools{Export: func(ctx context.Context, report string) (string, error) {
		path, err := nsys.Locate(c.String("nsys"))
		if err != nil {
			return "", fmt.Errorf("%s needs nsys to be exported to SQLite: %w", report, err)
		}
		fmt.Fprintf(c.App.ErrWriter, "exporting %s to SQLite with %s\n", report, path)
		return nsys.ExportSQLite(ctx, nsys.NewExecRunner(path), report, 30*time.Minute)
	}}
	if path, err := nsys.Locate(c.String("nsys")); err == nil {
		t.Importer = nsys.LocateImporter(path)
	}
	return t
}

// analyzeJSON is analyze's JSON: the summary's fields, the window's verdict and, for a
// group folder, its hosts.
type analyzeJSON struct {
	*torchprof.Summary
	Verdict verdict.Verdict `json:"verdict"`
	Group   *groupInfo      `json:"group,omitempty"`
}

// printChecks writes the CHECKS section: one line per finding with its fix, what was
// not checked, and the verdict. Files are shown by base name, but a group's as HOST/FILE.
func printChecks(w io.Writer, v verdict.Verdict, group bool) {
	fmt.Fprintln(w, "\nCHECKS")
	if len(v.Findings) == 0 {
		fmt.Fprintln(w, "  no problem found")
	}
	for _, f := range v.Findings {
		where := ""
		if f.File != "" {
			where = " [" + filepath.Base(f.File) + "]"
			if group {
				where = " [" + f.File + "]"
			}
		}
		fmt.Fprintf(w, "  %-8s %s%s: %s\n", strings.ToUpper(f.Level.String()), f.ID, where, f.Message)
		if f.Fix != "" {
			fmt.Fprintf(w, "  %-8s fix: %s\n", "", f.Fix)
		}
	}
	for _, s := range v.Skipped {
		fmt.Fprintf(w, "  not checked: %s\n", s)
	}
	n := len(v.Findings)
	plural := "s"
	if n == 1 {
		plural = ""
	}
	fmt.Fprintf(w, "verdict: %s (%d finding%s)\n", v.Level, n, plural)
}
