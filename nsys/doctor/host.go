package doctor

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/nsys-agent/nsys-agent/internal/diskspace"
)

// roomyWindow is the free space below which the doctor warns although windows may still
// start: one 4 s H100 window with CPU sampling was 2 GB (README).
const roomyWindow = 2 << 30

// checkDataDir says how much room the data dir's file system has against the start floor
// (run --min-free) and whether the agent can write there. A data dir not made yet is
// judged by the nearest folder above it that exists, where the agent would create it.
func checkDataDir(_ context.Context, s *state) []Result {
	dir := s.cfg.DataDir
	at, err := existingAncestor(dir)
	if err != nil {
		return []Result{{Check: "data dir", Status: Fail, Finding: fmt.Sprintf("data dir %s: %v", dir, err),
			Fix: "give --data-dir a folder (or a path where one can be made)"}}
	}
	if err := syscall.Access(at, 2 /* W_OK */); err != nil {
		return []Result{{Check: "data dir", Status: Fail, Finding: fmt.Sprintf("data dir %s: %s is not writable (%v)", dir, at, err),
			Fix: "run the agent as a user who may write there, or give --data-dir a folder it owns"}}
	}
	return []Result{spaceResult("data dir", dir, at, s.cfg.MinFree,
		"free space on that file system, give --data-dir a bigger one, or lower --min-free")}
}

// checkTmpdir: nsys keeps session state under TMPDIR and writes each stream there
// (/tmp/nsys-report-*.qdstrm) before moving it to the window (docs/nsys-facts.md), so
// an unwritable or full TMPDIR fails a window as surely as a full data dir.
func checkTmpdir(_ context.Context, s *state) []Result {
	dir := os.TempDir()
	f, err := os.CreateTemp(dir, "nsys-agent-doctor-*")
	if err != nil {
		return []Result{{Check: "TMPDIR", Status: Fail, Finding: fmt.Sprintf("cannot write in %s: %v", dir, err),
			Fix: "point TMPDIR at a writable folder with room for a window's stream (the same TMPDIR for the agent and every nsys command)"}}
	}
	name := f.Name()
	_ = f.Close()
	_ = os.Remove(name)
	return []Result{spaceResult("TMPDIR", dir, dir, s.cfg.MinFree, "free space there or point TMPDIR at a bigger file system")}
}

// spaceResult judges the free space under at (for the folder named dir).
func spaceResult(name, dir, at string, floor uint64, fix string) Result {
	free, err := diskspace.Free(at)
	if err != nil {
		return Result{Check: name, Status: Warn, Finding: err.Error(), Fix: "check that " + at + " is mounted"}
	}
	finding := fmt.Sprintf("%s free at %s", diskspace.Human(free), dir)
	switch {
	case floor > 0 && free < floor:
		return Result{Check: name, Status: Fail,
			Finding: fmt.Sprintf("%s, below the %s a window needs to start", finding, diskspace.Human(floor)), Fix: fix}
	case free < roomyWindow:
		return Result{Check: name, Status: Warn,
			Finding: finding + "; one large window (CPU sampling on an H100) was 2 GB", Fix: fix}
	}
	return Result{Check: name, Status: OK, Finding: finding}
}

// existingAncestor returns dir or the nearest folder above it that exists; a file in
// the way is an error.
func existingAncestor(dir string) (string, error) {
	p, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	for {
		st, err := os.Stat(p)
		if err == nil {
			if !st.IsDir() {
				return "", fmt.Errorf("%s is not a folder", p)
			}
			return p, nil
		}
		// ENOTDIR: a file above it; walking up finds it and names it.
		if !errors.Is(err, os.ErrNotExist) && !errors.Is(err, syscall.ENOTDIR) {
			return "", err
		}
		parent := filepath.Dir(p)
		if parent == p {
			return "", err
		}
		p = parent
	}
}

// checkPerf reads kernel.perf_event_paranoid: nsys samples CPUs (run --sample-cpu) only
// where it is 2 or less for a non-root user. Sampling is off by default, so a denial is a
// warning.
func checkPerf(_ context.Context, s *state) []Result {
	const name = "cpu sampling"
	path := filepath.Join(s.cfg.ProcRoot, "sys/kernel/perf_event_paranoid")
	raw, err := os.ReadFile(path)
	if err != nil {
		return []Result{{Check: name, Status: Warn, Finding: fmt.Sprintf("cannot read %s: %v", path, err),
			Fix: "only --sample-cpu needs it; inside a container, CPU sampling may also be blocked by its seccomp profile"}}
	}
	level, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil {
		return []Result{{Check: name, Status: Warn, Finding: fmt.Sprintf("%s holds %q, not a number", path, strings.TrimSpace(string(raw)))}}
	}
	switch {
	case s.euid() == 0:
		return []Result{{Check: name, Status: OK, Finding: fmt.Sprintf("running as root: --sample-cpu allowed (perf_event_paranoid %d)", level)}}
	case level <= 2:
		return []Result{{Check: name, Status: OK, Finding: fmt.Sprintf("perf_event_paranoid %d: --sample-cpu allowed for this user", level)}}
	}
	return []Result{{Check: name, Status: Warn,
		Finding: fmt.Sprintf("perf_event_paranoid %d: nsys cannot sample CPUs as this user (--sample-cpu would record no samples)", level),
		Fix:     "sudo sysctl -w kernel.perf_event_paranoid=2 (persist it in /etc/sysctl.d/), or run the agent as root; windows without --sample-cpu are not affected"}}
}

// checkPort tries to listen where the agent would. A busy port is a failure here; the
// CLI turns it into OK when the agent it found answers on that port.
func checkPort(_ context.Context, s *state) []Result {
	addr := s.cfg.Listen
	l, err := net.Listen("tcp", addr)
	if err == nil {
		_ = l.Close()
		return []Result{{Check: "port", Status: OK, Finding: addr + " is free for the agent's API"}}
	}
	r := Result{Check: "port", Status: Fail, Finding: fmt.Sprintf("cannot listen on %s: %v", addr, unwrapOp(err))}
	if errors.Is(err, syscall.EADDRINUSE) {
		_, port, _ := net.SplitHostPort(addr)
		r.Finding = addr + " is in use by another program"
		r.Fix = fmt.Sprintf("give run --listen another port, or find the holder with `ss -ltnp 'sport = :%s'`", port)
	} else {
		r.Fix = "give run --listen an address of this host (host:port)"
	}
	return []Result{r}
}

func unwrapOp(err error) error {
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		return oe.Err
	}
	return err
}
