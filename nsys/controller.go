package nsys

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Controller opens and closes capture windows on one named nsys session. Exit code 0
// from nsys proves nothing: every start and stop is checked against `nsys sessions
// list` before and after, and every stop against the files on disk.
type Controller struct {
	Runner  Runner
	Info    *Info
	Session string
	Mode    Mode
	// FirstOutput is the launch's --output (start-later, cuda-profiler), without extension.
	FirstOutput string
	SampleCPU   bool

	// Timeouts; zero values get the defaults below.
	StartTimeout  time.Duration // one `nsys start` (default 30 s)
	StopTimeout   time.Duration // one `nsys stop`, report generation included (default 5 min)
	ImportTimeout time.Duration // QdstrmImporter / export (default 10 min)
	RetryFor      time.Duration // how long to retry "wrong state" answers (default 20 s)

	// MaxStateAge lets Start trust a `sessions list` row this recent (kept fresh by
	// Watch) instead of listing again; 0 always lists. The check after `nsys start` is
	// never skipped, and it removes a stray session if the cached row was wrong.
	MaxStateAge time.Duration

	// Log receives one line per nsys command, when set.
	Log func(format string, args ...any)

	cacheMu  sync.Mutex
	cached   Session
	cachedOK bool
	cachedAt time.Time
}

// Window is where one capture's report goes.
type Window struct {
	Dir  string // absolute folder the report ends up in
	Name string // report base name without extension (default "report")
}

// StopResult says what a stop produced.
type StopResult struct {
	Report   string   // the .nsys-rep in the window folder ("" if none)
	Qdstrm   string   // the raw .qdstrm, when it was kept (import failed or not attempted)
	Files    []string // every file moved into the window folder
	Imported bool     // we ran QdstrmImporter ourselves
	Warnings []string
	Duration time.Duration
}

func (c *Controller) logf(format string, args ...any) {
	if c.Log != nil {
		c.Log(format, args...)
	}
}

func (c *Controller) timeout(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// Sessions lists all nsys sessions on this host (other users' too) and refreshes the
// cached row of this controller's session.
func (c *Controller) Sessions(ctx context.Context) ([]Session, error) {
	list, err := ListSessions(ctx, c.Runner)
	if err == nil {
		s, ok := Lookup(list, c.Session)
		c.cacheMu.Lock()
		c.cached, c.cachedOK, c.cachedAt = s, ok, time.Now()
		c.cacheMu.Unlock()
	}
	return list, err
}

// Watch refreshes the cached session row every interval until ctx ends, so that Start
// can skip its own listing (MaxStateAge). One `nsys sessions list` costs ~10 ms of CPU.
func (c *Controller) Watch(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			_, _ = c.Sessions(ctx)
		}
	}
}

// freshState returns the cached state when it is recent enough to act on.
func (c *Controller) freshState() (State, bool) {
	if c.MaxStateAge <= 0 {
		return "", false
	}
	c.cacheMu.Lock()
	defer c.cacheMu.Unlock()
	if !c.cachedOK || time.Since(c.cachedAt) > c.MaxStateAge {
		return "", false
	}
	return c.cached.State, true
}

// ListSessions runs and parses `nsys sessions list`.
func ListSessions(ctx context.Context, r Runner) ([]Session, error) {
	res, err := r.Run(ctx, Call{Args: []string{"sessions", "list"}, Timeout: 20 * time.Second})
	if err != nil {
		return nil, err
	}
	if res.ExitCode != 0 {
		return nil, &CommandError{Args: []string{"sessions", "list"}, ExitCode: res.ExitCode, Output: res.Output()}
	}
	return ParseSessions([]byte(res.Stdout))
}

// State returns the session's current state.
func (c *Controller) State(ctx context.Context) (State, error) {
	list, err := c.Sessions(ctx)
	if err != nil {
		return "", err
	}
	s, ok := Lookup(list, c.Session)
	if !ok {
		return "", &SessionNotFoundError{Name: c.Session, Known: Names(list)}
	}
	return s.State, nil
}

// waitSettled polls until the session leaves a transient state (Generation) or the
// deadline passes, and returns the last state seen.
func (c *Controller) waitSettled(ctx context.Context, within time.Duration) (State, error) {
	deadline := time.Now().Add(within)
	for {
		st, err := c.State(ctx)
		if err != nil || !st.Generating() || time.Now().After(deadline) {
			return st, err
		}
		if err := sleepCtx(ctx, 200*time.Millisecond); err != nil {
			return st, err
		}
	}
}

var (
	msgConfigNotAllowed = "Configuring is not allowed in this state"
	msgNotApplicable    = "The request is not applicable in this state"
	msgNoSessions       = "There are no active sessions"
)

// Start opens a window. The session must be listed and armable (Launched or
// DelayedCollection); otherwise nothing is run, because `nsys start` on an unknown name
// silently creates a new empty session.
func (c *Controller) Start(ctx context.Context, w Window) error {
	if c.Mode == ModeCudaProfiler {
		return fmt.Errorf("session %q is armed for cudaProfilerApi ranges: the target opens windows itself (e.g. SGLang /start_profile with CUDA_PROFILER)", c.Session)
	}
	if !filepath.IsAbs(w.Dir) {
		return fmt.Errorf("window folder must be absolute, got %q", w.Dir)
	}
	if w.Name == "" {
		w.Name = "report"
	}
	if err := os.MkdirAll(w.Dir, 0o700); err != nil {
		return fmt.Errorf("creating window folder: %w", err)
	}
	armable := []State{StateLaunched, StateDelayedCollection}
	st, fresh := c.freshState()
	if !fresh || !stateIn(st, armable) {
		var err error
		if st, err = c.waitSettled(ctx, c.timeout(c.RetryFor, 20*time.Second)); err != nil {
			return err
		}
	}
	if !stateIn(st, armable) {
		return &WrongStateError{Session: c.Session, Op: "start a window on", State: st, Want: armable}
	}
	args := StartArgs(c.Info.Caps, c.Mode, c.Session, filepath.Join(w.Dir, w.Name), c.SampleCPU)
	dir := ""
	if c.Mode == ModeStartLater {
		// Later windows go to reportN.nsys-rep in the caller's working directory.
		dir = w.Dir
	}
	res, err := c.retrying(ctx, Call{Args: args, Dir: dir, Timeout: c.timeout(c.StartTimeout, 30*time.Second)}, msgConfigNotAllowed)
	if err != nil {
		return err
	}
	list, err := c.Sessions(ctx)
	if err != nil {
		return err
	}
	row, ok := Lookup(list, c.Session)
	if !ok {
		return &SessionNotFoundError{Name: c.Session, Known: Names(list)}
	}
	after := row.State
	if after == StateStarted && row.Launch == "0" {
		// nsys made a new, empty session under our name: ours was gone. Remove it.
		_ = c.Shutdown(ctx)
		return &SessionNotFoundError{Name: c.Session}
	}
	if !after.Collecting() {
		detail := strings.TrimSpace(res.Output())
		return &WrongStateError{Session: c.Session, Op: "confirm the window started on", State: after, Want: []State{StateCollection}, Detail: detail}
	}
	return nil
}

// retrying runs a call and repeats it while nsys answers with a "wrong state, retry"
// message, for up to RetryFor.
func (c *Controller) retrying(ctx context.Context, call Call, retryMsg string) (Result, error) {
	deadline := time.Now().Add(c.timeout(c.RetryFor, 20*time.Second))
	delay := 100 * time.Millisecond
	for {
		res, err := c.Runner.Run(ctx, call)
		c.logf("nsys %s -> exit %d in %s", strings.Join(call.Args, " "), res.ExitCode, res.Duration.Round(time.Millisecond))
		if err != nil {
			return res, err
		}
		out := res.Output()
		if res.ExitCode == 0 && !strings.Contains(out, retryMsg) {
			return res, nil
		}
		if !strings.Contains(out, retryMsg) || time.Now().After(deadline) {
			if strings.Contains(out, msgNoSessions) {
				return res, &SessionNotFoundError{Name: c.Session}
			}
			if strings.Contains(out, retryMsg) || strings.Contains(out, msgNotApplicable) {
				st, _ := c.State(ctx)
				return res, &WrongStateError{Session: c.Session, Op: call.Args[0], State: st, Detail: oneLine(out, 200)}
			}
			return res, &CommandError{Args: call.Args, ExitCode: res.ExitCode, Output: out}
		}
		if err := sleepCtx(ctx, delay); err != nil {
			return res, err
		}
		if delay < time.Second {
			delay *= 2
		}
	}
}

// Stop closes the open window and brings its report into w.Dir, importing a .qdstrm
// when nsys could not. On a hung stop it shuts the session's agent down and returns a
// *TimeoutError listing what was recovered.
func (c *Controller) Stop(ctx context.Context, w Window) (*StopResult, error) {
	begin := time.Now()
	if w.Name == "" {
		w.Name = "report"
	}
	st, err := c.State(ctx)
	if err != nil {
		return nil, err
	}
	if !st.Collecting() {
		return nil, &WrongStateError{Session: c.Session, Op: "stop", State: st, Want: []State{StateCollection}}
	}
	before := snapshot(w.Dir)
	args := []string{"stop", "--session=" + c.Session}
	call := Call{Args: args, Dir: w.Dir, Timeout: c.timeout(c.StopTimeout, 5*time.Minute)}
	res, err := c.Runner.Run(ctx, call)
	c.logf("nsys %s -> exit %d in %s", strings.Join(args, " "), res.ExitCode, res.Duration.Round(time.Millisecond))
	var te *TimeoutError
	if errors.As(err, &te) {
		return c.recoverHungStop(ctx, w, before, te)
	}
	if err != nil {
		return nil, err
	}
	out := res.Output()
	if res.ExitCode != 0 {
		if strings.Contains(out, msgNotApplicable) || strings.Contains(out, msgNoSessions) {
			st, _ := c.State(ctx)
			return nil, &WrongStateError{Session: c.Session, Op: "stop", State: st, Want: []State{StateCollection}, Detail: oneLine(out, 200)}
		}
		return nil, &CommandError{Args: args, ExitCode: res.ExitCode, Output: out}
	}
	result, err := c.collect(ctx, w, out, before)
	if err != nil {
		return nil, err
	}
	if after, err := c.waitSettled(ctx, 30*time.Second); err == nil && after.Collecting() {
		result.Warnings = append(result.Warnings, fmt.Sprintf("session %q still reports %s after stop", c.Session, after))
	}
	result.Duration = time.Since(begin)
	return result, nil
}

// collect finds the report(s) a stop produced wherever nsys put them, moves them into
// the window folder, and imports a lone .qdstrm. Only paths this stop's own output names,
// new files in the window folder and the session's first output are considered: other
// sessions' stops write /tmp/nsys-report-XXXX files at the same time (taking one of those
// broke a concurrent stop in a test run).
func (c *Controller) collect(ctx context.Context, w Window, out string, before map[string]bool) (*StopResult, error) {
	// A report diverted because its name existed is named in the output too
	// ("Generated: /tmp/nsys-report-XXXX.nsys-rep").
	cands := generatedPaths(out)
	// Files that appeared in the window folder (start-later: reportN.* in the caller's dir).
	for p := range newFiles(w.Dir, before) {
		cands = append(cands, p)
	}
	if c.FirstOutput != "" {
		for _, ext := range []string{".nsys-rep", ".qdstrm"} {
			cands = append(cands, c.FirstOutput+ext)
		}
	}
	cands = dedupe(cands)
	res := &StopResult{}
	var looked []string
	for _, p := range cands {
		ext := reportExt(p)
		if ext == "" {
			continue
		}
		looked = append(looked, p)
		st, err := os.Stat(p)
		if err != nil || st.Size() == 0 {
			continue
		}
		dst := filepath.Join(w.Dir, w.Name+ext)
		if p != dst {
			if err := moveFile(p, dst); err != nil {
				return nil, fmt.Errorf("moving report %s into the window folder: %w", p, err)
			}
		}
		res.Files = append(res.Files, dst)
		switch ext {
		case ".nsys-rep":
			res.Report = dst
		case ".qdstrm":
			res.Qdstrm = dst
		}
	}
	if res.Report == "" && res.Qdstrm != "" {
		rep, err := c.Import(ctx, res.Qdstrm)
		if err != nil {
			res.Warnings = append(res.Warnings, err.Error())
		} else {
			res.Report, res.Imported = rep, true
			res.Files = append(res.Files, rep)
		}
	}
	if res.Report == "" && res.Qdstrm == "" {
		return nil, &NoReportError{Session: c.Session, Looked: looked, Output: out}
	}
	if res.Report != "" && res.Qdstrm != "" && res.Imported {
		// The raw stream is redundant once imported; keep disk use down.
		_ = os.Remove(res.Qdstrm)
		res.Files = removeString(res.Files, res.Qdstrm)
		res.Qdstrm = ""
	}
	sort.Strings(res.Files)
	return res, nil
}

// recoverHungStop handles `nsys stop` that never returned (seen on 2022.4 with the state
// stuck in Generation): shut the session down without killing the target, end its
// session agent, and keep whatever raw stream it left.
func (c *Controller) recoverHungStop(ctx context.Context, w Window, before map[string]bool, te *TimeoutError) (*StopResult, error) {
	var cleanup []string
	if err := c.Shutdown(ctx); err != nil {
		cleanup = append(cleanup, "nsys shutdown --kill=none failed: "+err.Error())
	} else {
		cleanup = append(cleanup, "ran nsys shutdown --kill=none")
	}
	for _, pid := range SessionAgentPIDs(c.Session) {
		if err := terminate(pid, 5*time.Second); err == nil {
			cleanup = append(cleanup, fmt.Sprintf("ended the session agent (pid %d)", pid))
		}
	}
	te.Cleanup = strings.Join(cleanup, "; ")
	if got, err := c.collect(ctx, w, "", before); err == nil {
		te.Recovered = got.Files
		return got, te
	}
	return nil, te
}

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
	if st, serr := os.Stat(rep); serr == nil && st.Size() > 0 {
		return rep, nil
	}
	if err == nil {
		err = errors.New("no .nsys-rep appeared")
	}
	hint := ""
	if m := missingLibRE.FindStringSubmatch(string(out)); m != nil {
		// Seen on the GPU machine: Nsight Compute's bundled importer needs libdw.so.1.
		hint = fmt.Sprintf("; the importer cannot load %s: install it (libdw.so.1 comes with Debian/Ubuntu's libdw1 package) or put it on LD_LIBRARY_PATH, then run %s -i %s", m[1], imp, qdstrm)
	}
	return "", fmt.Errorf("importing %s with %s failed: %v: %s%s", filepath.Base(qdstrm), imp, err, oneLine(string(out), 300), hint)
}

// Export runs `nsys export --type sqlite` and returns the .sqlite path beside the report.
func (c *Controller) Export(ctx context.Context, report string) (string, error) {
	return ExportSQLite(ctx, c.Runner, report, c.timeout(c.ImportTimeout, 10*time.Minute))
}

// ExportSQLite exports a report to SQLite, checking the result exists (nsys exit codes
// prove little).
func ExportSQLite(ctx context.Context, r Runner, report string, timeout time.Duration) (string, error) {
	out := strings.TrimSuffix(report, filepath.Ext(report)) + ".sqlite"
	args := []string{"export", "--type=sqlite", "--force-overwrite=true", "--output=" + out, report}
	res, err := r.Run(ctx, Call{Args: args, Timeout: timeout})
	if err != nil {
		return "", err
	}
	if st, serr := os.Stat(out); serr != nil || st.Size() == 0 {
		return "", &CommandError{Args: args, ExitCode: res.ExitCode, Output: "no sqlite file written: " + res.Output()}
	}
	return out, nil
}

// Shutdown ends the session's collection without killing the target (nsys shutdown
// discards an open window: stop first).
func (c *Controller) Shutdown(ctx context.Context) error {
	res, err := c.Runner.Run(ctx, Call{Args: []string{"shutdown", "--session=" + c.Session, "--kill=none"}, Timeout: 30 * time.Second})
	if err != nil {
		return err
	}
	if res.ExitCode != 0 {
		return &CommandError{Args: []string{"shutdown", "--session=" + c.Session}, ExitCode: res.ExitCode, Output: res.Output()}
	}
	return nil
}

// SessionAgentPIDs finds `nsys --start-agent --session-name=NAME` processes in /proc.
func SessionAgentPIDs(session string) []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	want := "--session-name=" + session
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		raw, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(strings.TrimRight(string(raw), "\x00"), "\x00")
		hasAgent, hasName := false, false
		for _, a := range args {
			if a == "--start-agent" {
				hasAgent = true
			}
			if a == want {
				hasName = true
			}
		}
		if hasAgent && hasName {
			pids = append(pids, pid)
		}
	}
	return pids
}

// SessionIDOf reads NSYS_PROFILING_SESSION_ID from a process's environment, mapping
// target PIDs to sessions ("" if absent or unreadable).
func SessionIDOf(pid int) string {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
	if err != nil {
		return ""
	}
	for _, kv := range strings.Split(string(raw), "\x00") {
		if v, ok := strings.CutPrefix(kv, "NSYS_PROFILING_SESSION_ID="); ok {
			return v
		}
	}
	return ""
}

func terminate(pid int, grace time.Duration) error {
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		return err
	}
	deadline := time.Now().Add(grace)
	for time.Now().Before(deadline) {
		if syscall.Kill(pid, 0) != nil {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return syscall.Kill(pid, syscall.SIGKILL)
}

var missingLibRE = regexp.MustCompile(`error while loading shared libraries: ([^:\s]+)`)

// generatedPaths pulls report paths out of nsys output ("Generated:\n    /x/y.qdstrm",
// "Generating '/tmp/nsys-report-1351.qdstrm'", "Saved report file to \"...\"").
var pathRE = regexp.MustCompile(`(/[^\s'"]+\.(?:nsys-rep|qdrep|qdstrm))`)

func generatedPaths(out string) []string {
	return pathRE.FindAllString(out, -1)
}

func reportExt(p string) string {
	switch {
	case strings.HasSuffix(p, ".nsys-rep"):
		return ".nsys-rep"
	case strings.HasSuffix(p, ".qdrep"):
		return ".nsys-rep" // pre-2021 name of the same format
	case strings.HasSuffix(p, ".qdstrm"):
		return ".qdstrm"
	}
	return ""
}

func snapshot(dir string) map[string]bool {
	m := map[string]bool{}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		m[filepath.Join(dir, e.Name())] = true
	}
	return m
}

func newFiles(dir string, before map[string]bool) map[string]bool {
	m := map[string]bool{}
	for p := range snapshot(dir) {
		if !before[p] {
			m[p] = true
		}
	}
	return m
}

func dedupe(s []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, v := range s {
		if v != "" && !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	return out
}

func removeString(s []string, v string) []string {
	out := s[:0]
	for _, x := range s {
		if x != v {
			out = append(out, x)
		}
	}
	return out
}

func stateIn(s State, set []State) bool {
	for _, x := range set {
		if s == x {
			return true
		}
	}
	return false
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// moveFile renames, falling back to copy+fsync+remove across file systems.
func moveFile(src, dst string) error {
	if err := os.Rename(src, dst); err == nil {
		return nil
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	return os.Remove(src)
}

// Kill ends everything of the session, target included: `nsys shutdown --kill=sigterm`,
// then SIGKILL for any process still carrying the session's id in its environment
// (NSYS_PROFILING_SESSION_ID) and for the session's agent. For cleanup after a crash or
// a failed test; a normal stop goes through the front-end (Process.Terminate).
func (c *Controller) Kill(ctx context.Context) {
	id := ""
	if list, err := c.Sessions(ctx); err == nil {
		if s, ok := Lookup(list, c.Session); ok {
			id = s.ID
		}
	}
	_, _ = c.Runner.Run(ctx, Call{Args: []string{"shutdown", "--session=" + c.Session, "--kill=sigterm"}, Timeout: 30 * time.Second})
	if id != "" {
		entries, _ := os.ReadDir("/proc")
		for _, e := range entries {
			pid, err := strconv.Atoi(e.Name())
			if err == nil && pid != os.Getpid() && SessionIDOf(pid) == id {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
	for _, pid := range SessionAgentPIDs(c.Session) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}
