package nsys

// Turning what a window left into files people can open: QdstrmImporter when nsys left
// only a .qdstrm (`nsys stop` exits 0 when its import failed), and `nsys export` to SQLite.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/nsys-agent/nsys-agent/internal/diskspace"
)

// Import runs QdstrmImporter on a .qdstrm (Debian puts it where nsys does not look)
// and returns the .nsys-rep it wrote.
func (c *Controller) Import(ctx context.Context, qdstrm string) (string, error) {
	imp := ""
	if c.Info != nil {
		imp = c.Info.Importer
	}
	if imp == "" {
		return "", fmt.Errorf("only %s was written and no QdstrmImporter was found next to %s; install the nsight-systems host package or open the .qdstrm in the Nsight Systems GUI", filepath.Base(qdstrm), c.Runner.Binary())
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout(c.ImportTimeout, 10*time.Minute))
	defer cancel()
	cmd := exec.CommandContext(ctx, imp, "-i", qdstrm)
	cmd.Dir = filepath.Dir(qdstrm)
	out, err := cmd.CombinedOutput()
	rep := strings.TrimSuffix(qdstrm, ".qdstrm") + ".nsys-rep"
	c.logf("QdstrmImporter -i %s -> %v", qdstrm, err)
	st, serr := os.Stat(rep)
	if err == nil && serr == nil && st.Size() > 0 {
		_ = os.Chmod(rep, 0o600) // it embeds the server's environment
		return rep, nil
	}
	if err == nil {
		err = errors.New("no .nsys-rep appeared")
	}
	// A report the importer did not finish is truncated (seen: a 28-41 kB file on a full
	// disk, which nsys cannot open but whose sha256 "verifies"): it must not pass for the
	// report. The .qdstrm stays the window's real capture.
	_ = os.Remove(rep)
	hand := fmt.Sprintf("; the raw capture is kept: import it by hand with %s -i %s (needs about its size again in free space)", imp, qdstrm)
	if qs, qerr := os.Stat(qdstrm); qerr == nil {
		if free, ferr := diskspace.Free(filepath.Dir(qdstrm)); ferr == nil && free < uint64(qs.Size()) {
			err = fmt.Errorf("%w; the disk is full: %s free where the report needs about %s", err, diskspace.Human(free), diskspace.Human(uint64(qs.Size())))
		}
	}
	hint := ""
	if m := missingLibRE.FindStringSubmatch(string(out)); m != nil {
		// Seen on the GPU machine: Nsight Compute's bundled importer needs libdw.so.1.
		hint = fmt.Sprintf("; the importer cannot load %s: install it (libdw.so.1 comes with Debian/Ubuntu's libdw1 package) or put it on LD_LIBRARY_PATH, then run %s -i %s", m[1], imp, qdstrm)
	}
	if hint == "" {
		hint = hand
	}
	return "", fmt.Errorf("importing %s with %s failed: %v: %s%s", filepath.Base(qdstrm), imp, err, importerMessage(string(out)), hint)
}

// Export runs `nsys export --type sqlite` and returns the .sqlite path beside the report.
func (c *Controller) Export(ctx context.Context, report string) (string, error) {
	return ExportSQLite(ctx, c.Runner, report, c.timeout(c.ImportTimeout, 10*time.Minute))
}

// ExportSQLite exports a report to SQLite, checking the result exists (nsys exit codes
// prove little).
func ExportSQLite(ctx context.Context, r Runner, report string, timeout time.Duration) (string, error) {
	return ExportSQLiteTo(ctx, r, report, strings.TrimSuffix(report, filepath.Ext(report))+".sqlite", timeout)
}

// ExportSQLiteTo exports a report to SQLite at out (the agent's checks export into a
// scratch folder, so a window does not grow an export nobody asked for).
func ExportSQLiteTo(ctx context.Context, r Runner, report, out string, timeout time.Duration) (string, error) {
	args := []string{"export", "--type=sqlite", "--force-overwrite=true", "--output=" + out, report}
	res, err := r.Run(ctx, Call{Args: args, Timeout: timeout})
	if err != nil {
		return "", err
	}
	if st, serr := os.Stat(out); serr != nil || st.Size() == 0 {
		return "", &CommandError{Args: args, ExitCode: res.ExitCode, Output: "no sqlite file written: " + res.Output()}
	}
	_ = os.Chmod(out, 0o600) // the export holds the report's environment too
	return out, nil
}

// progressRE matches QdstrmImporter's progress bars, which fill its output.
var progressRE = regexp.MustCompile(`Processing \[[= ]*\d+%\s*\]`)

// importerMessage is what the importer said without its progress bars: the end of it,
// where its error is.
func importerMessage(out string) string {
	s := strings.Join(strings.Fields(progressRE.ReplaceAllString(out, " ")), " ")
	if len(s) > 300 {
		s = "…" + s[len(s)-300:]
	}
	if s == "" {
		return "(no message)"
	}
	return s
}

var missingLibRE = regexp.MustCompile(`error while loading shared libraries: ([^:\s]+)`)
