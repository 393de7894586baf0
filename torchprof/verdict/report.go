package verdict

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Exporter turns an nsys report into an SQLite export and returns the export's path
// (the agent and the CLI wrap nsys.ExportSQLite). A report it cannot export is not
// readable.
type Exporter func(ctx context.Context, report string) (string, error)

// Tools are the nsys pieces the file checks use, each optional.
type Tools struct {
	// Export opens reports; without it a report's contents go unchecked.
	Export Exporter
	// Importer is QdstrmImporter's path, named in the fix for a lone .qdstrm.
	Importer string
}

// CheckReport checks that an nsys report opens (it exports to SQLite), then checks the
// export (CheckExport). An export beside the report that is newer than it is used as is;
// otherwise t.Export makes one, and without it the contents go unchecked (said in
// Skipped). e.ReportBytes, when zero, is the report's size.
func CheckReport(ctx context.Context, report string, t Tools, e Expect) (Verdict, error) {
	var v Verdict
	base := filepath.Base(report)
	fi, err := os.Stat(report)
	if err != nil || !fi.Mode().IsRegular() || fi.Size() == 0 {
		what := "is empty"
		switch {
		case err != nil:
			what = fmt.Sprintf("cannot be read: %v", err)
		case !fi.Mode().IsRegular():
			what = "is not a regular file"
		}
		v.Add(Finding{ID: IDReportUnreadable, Level: Broken, File: base,
			Message: fmt.Sprintf("the report %s %s", base, what),
			Fix:     damagedFix(report, t.Importer)})
		return v.done(), nil
	}
	if e.ReportBytes == 0 {
		e.ReportBytes = fi.Size()
	}
	sqlite := strings.TrimSuffix(report, filepath.Ext(report)) + ".sqlite"
	if es, err := os.Stat(sqlite); err == nil && es.Mode().IsRegular() && es.ModTime().After(fi.ModTime()) {
		return CheckExport(ctx, sqlite, e)
	}
	if t.Export == nil {
		v.skip("report contents: %s was not exported (no nsys to export it with)", base)
		checkSize(&v, nil, e, base)
		return v.done(), nil
	}
	out, err := t.Export(ctx, report)
	if err != nil {
		if ctx.Err() != nil {
			return Verdict{}, ctx.Err()
		}
		v.Add(Finding{ID: IDReportUnreadable, Level: Broken, File: base,
			Message: fmt.Sprintf("nsys cannot open the report %s: %s", base, oneLine(err.Error(), 300)),
			Fix:     damagedFix(report, t.Importer)})
		return v.done(), nil
	}
	return CheckExport(ctx, out, e)
}

// CheckStream is the verdict on a window that holds only a .qdstrm, the raw stream nsys
// writes before it imports it into a report: Broken, with the command that imports it
// by hand. importer is QdstrmImporter's path, when known.
func CheckStream(qdstrm, importer string) Verdict {
	var v Verdict
	v.Add(Finding{ID: IDReportMissing, Level: Broken, File: filepath.Base(qdstrm),
		Message: fmt.Sprintf("only the raw stream %s was written: nsys did not turn it into a report", filepath.Base(qdstrm)),
		Fix:     importFix(qdstrm, importer)})
	return v.done()
}

// damagedFix says what to do about a report nsys cannot open: import its stream again
// when the window kept it, else take the window again.
func damagedFix(report, importer string) string {
	const why = "the report is damaged (seen: an import cut short by a full disk leaves a report nsys cannot open)"
	qdstrm := strings.TrimSuffix(report, filepath.Ext(report)) + ".qdstrm"
	if fi, err := os.Stat(qdstrm); err == nil && fi.Mode().IsRegular() {
		return why + "; the window kept its raw stream: " + importFix(qdstrm, importer)
	}
	return why + " and no raw stream was kept: take the window again"
}

// importFix says how to import a stream by hand.
func importFix(qdstrm, importer string) string {
	where := ""
	if importer == "" {
		importer = "QdstrmImporter"
		where = " (QdstrmImporter sits beside nsys, in its host-linux-x64 folder)"
	}
	return fmt.Sprintf("import the stream by hand: %s -i %s%s; it needs about the stream's size again in free space, and the report appears beside it",
		shellQuote(importer), shellQuote(qdstrm), where)
}

// shellQuote quotes s for a POSIX shell when it needs it, so a fix can be pasted.
func shellQuote(s string) string {
	safe := s != ""
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./=+,:@%", r)) {
			safe = false
			break
		}
	}
	if safe {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// oneLine flattens s to one line of at most n bytes.
func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > n {
		s = s[:n] + "…"
	}
	return s
}
