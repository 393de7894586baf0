package main

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nsys-agent/nsys-agent/agent"
	"github.com/nsys-agent/nsys-agent/agent/agenttest"
	"github.com/nsys-agent/nsys-agent/agent/windows"
)

// served runs the real API over the shared fake Service, recording the Range headers
// of artifact downloads.
type served struct {
	*agenttest.Service
	mu     sync.Mutex
	ranges []string
}

func newScriptedAgent(t *testing.T) *served { return &served{Service: agenttest.New(t)} }

func (s *served) serve(t *testing.T, tokens ...string) string {
	t.Helper()
	h := agent.NewHandler(s.Service, agent.APIOptions{Tokens: tokens, Version: "test", Logger: slog.New(slog.DiscardHandler)})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if rg := r.Header.Get("Range"); rg != "" {
			s.mu.Lock()
			s.ranges = append(s.ranges, rg)
			s.mu.Unlock()
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

type result struct {
	code           int
	stdout, stderr string
}

// runCLI runs the app as main does, with the environment cleared of agent settings.
func runCLI(t *testing.T, args ...string) result {
	t.Helper()
	for _, k := range []string{"NSYS_AGENT_ADDR", "NSYS_AGENT_TOKEN"} {
		t.Setenv(k, "") // restores the value after the test
		os.Unsetenv(k)
	}
	var out, errb bytes.Buffer
	code := func() (code int) {
		// A panic fails this test with its stack, not the whole test binary.
		defer func() {
			if p := recover(); p != nil {
				t.Errorf("nsys-agent %q panicked: %v\n%s", args, p, debug.Stack())
				code = -1
			}
		}()
		return run(append([]string{"nsys-agent"}, args...), &out, &errb)
	}()
	return result{code, out.String(), errb.String()}
}

func (r result) must(t *testing.T, code int) result {
	t.Helper()
	if r.code != code {
		t.Fatalf("exit code %d, want %d\nstdout:\n%s\nstderr:\n%s", r.code, code, r.stdout, r.stderr)
	}
	return r
}

func TestStartShowWindows(t *testing.T) {
	s := newScriptedAgent(t)
	url := s.serve(t, "sekret")
	r := runCLI(t, "start", "--agent", url, "--token", "sekret", "--duration", "5s", "--name", "spike").must(t, 0)
	for _, want := range []string{"WINDOW", "w1", "capturing", "spike"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("start output lacks %q:\n%s", want, r.stdout)
		}
	}
	r = runCLI(t, "start", "--agent", url, "--token", "sekret").must(t, 1)
	if !strings.Contains(r.stderr, "window w1 is already capturing") || !strings.Contains(r.stderr, "nsys-agent stop") {
		t.Errorf("conflict error should say what and what to do:\n%s", r.stderr)
	}
	r = runCLI(t, "show", "active", "--agent", url, "--token", "sekret", "-o", "json").must(t, 0)
	var m windows.Manifest
	if err := json.Unmarshal([]byte(r.stdout), &m); err != nil || m.ID != "w1" || m.Duration != "5s" {
		t.Errorf("show -o json: %v %+v\n%s", err, m, r.stdout)
	}
	r = runCLI(t, "windows", "--agent", url, "--token", "sekret").must(t, 0)
	if !strings.Contains(r.stdout, "WINDOW") || !strings.Contains(r.stdout, "spike") {
		t.Errorf("windows table:\n%s", r.stdout)
	}
	r = runCLI(t, "status", "--agent", url, "--token", "sekret").must(t, 0)
	if !strings.Contains(r.stdout, "ACTIVE") || !strings.Contains(r.stdout, "w1 capturing") {
		t.Errorf("status table:\n%s", r.stdout)
	}
}

func TestUnauthorizedSaysWhatToDo(t *testing.T) {
	url := newScriptedAgent(t).serve(t, "sekret")
	r := runCLI(t, "status", "--agent", url, "--token", "wrong").must(t, 1)
	if !strings.Contains(r.stderr, "set --token or NSYS_AGENT_TOKEN") {
		t.Errorf("401 hint missing:\n%s", r.stderr)
	}
	tf := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tf, []byte("sekret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	runCLI(t, "status", "--agent", url, "--token-file", tf).must(t, 0)
}

func TestStopNoWait(t *testing.T) {
	s := newScriptedAgent(t)
	url := s.serve(t)
	runCLI(t, "start", "--agent", url).must(t, 0)
	s.Finalize = []windows.Manifest{{State: windows.StateReady}}
	r := runCLI(t, "stop", "--agent", url, "--no-wait", "-o", "json").must(t, 0)
	var m windows.Manifest
	if err := json.Unmarshal([]byte(r.stdout), &m); err != nil || m.State != windows.StateFinalizing {
		t.Errorf("stop --no-wait should print the finalizing window: %v\n%s", err, r.stdout)
	}
	if r.stderr != "" {
		t.Errorf("--no-wait drew progress:\n%s", r.stderr)
	}
}

func TestStopWaitsWithProgress(t *testing.T) {
	for _, noEvents := range []bool{false, true} {
		name := map[bool]string{false: "events", true: "polling"}[noEvents]
		t.Run(name, func(t *testing.T) {
			s := newScriptedAgent(t)
			s.NoEvents = noEvents
			url := s.serve(t)
			runCLI(t, "start", "--agent", url).must(t, 0)
			s.Finalize = []windows.Manifest{
				{State: windows.StateFinalizing, Progress: &windows.Progress{Step: "importing report", Fraction: 0.5}},
				{State: windows.StateReady},
			}
			r := runCLI(t, "stop", "w1", "--agent", url).must(t, 0)
			if !strings.Contains(r.stderr, "50% importing report") || !strings.Contains(r.stderr, "100% done") {
				t.Errorf("progress lines:\n%s", r.stderr)
			}
			if !strings.Contains(r.stdout, "ready") {
				t.Errorf("final window:\n%s", r.stdout)
			}
		})
	}
}

func TestStopFailedWindowExits1(t *testing.T) {
	s := newScriptedAgent(t)
	url := s.serve(t)
	runCLI(t, "start", "--agent", url).must(t, 0)
	s.Finalize = []windows.Manifest{{State: windows.StateFailed, Error: "nsys stop hung; kept the .qdstrm"}}
	r := runCLI(t, "stop", "--agent", url).must(t, 1)
	if !strings.Contains(r.stderr, "window w1 failed: nsys stop hung") {
		t.Errorf("failure not explained:\n%s", r.stderr)
	}
}

func TestFanOutOneAgentDown(t *testing.T) {
	up := newScriptedAgent(t).serve(t)
	dead := httptest.NewServer(http.NotFoundHandler())
	down := dead.URL
	dead.Close()

	r := runCLI(t, "status", "--agent", up+","+down).must(t, 1)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "AGENT") {
		t.Fatalf("want a header and one row per agent:\n%s", r.stdout)
	}
	if !strings.Contains(lines[1], up) || !strings.Contains(lines[1], " ok ") ||
		!strings.Contains(lines[2], down) || !strings.Contains(lines[2], " error ") {
		t.Errorf("rows:\n%s", r.stdout)
	}
	if !strings.Contains(lines[2], "is `nsys-agent run` running at "+down) {
		t.Errorf("connection error hint missing:\n%s", lines[2])
	}
	if !strings.Contains(r.stderr, "1 of 2 agents failed") {
		t.Errorf("stderr:\n%s", r.stderr)
	}

	r = runCLI(t, "status", "--agent", up, "--agent", down, "-o", "json").must(t, 1)
	var rows []struct {
		Agent  string          `json:"agent"`
		OK     bool            `json:"ok"`
		Error  string          `json:"error"`
		Result json.RawMessage `json:"result"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &rows); err != nil {
		t.Fatalf("-o json: %v\n%s", err, r.stdout)
	}
	if len(rows) != 2 || !rows[0].OK || rows[0].Agent != up || rows[1].OK || rows[1].Error == "" {
		t.Errorf("rows = %+v", rows)
	}
	var st agent.Status
	if err := json.Unmarshal(rows[0].Result, &st); err != nil || st.Target.PID != 7 {
		t.Errorf("result of the live agent: %v %s", err, rows[0].Result)
	}
}

func TestSingleAgentConnectionRefused(t *testing.T) {
	dead := httptest.NewServer(http.NotFoundHandler())
	dead.Close()
	r := runCLI(t, "windows", "--agent", dead.URL).must(t, 1)
	if !strings.Contains(r.stderr, "connection refused") || !strings.Contains(r.stderr, "is `nsys-agent run` running at") {
		t.Errorf("stderr:\n%s", r.stderr)
	}
}

func TestPull(t *testing.T) {
	s := newScriptedAgent(t)
	url := s.serve(t)
	rep0, rep1 := strings.Repeat("rank zero report ", 100), strings.Repeat("rank one report ", 100)
	s.AddWindow(t, "w7", map[string]string{"rank0-report.nsys-rep": rep0, "rank1-report.nsys-rep": rep1, "summary.json": "{}"})
	dir := t.TempDir()
	into := filepath.Join(dir, "w7")

	// Flags after the window, as the design writes them.
	r := runCLI(t, "pull", "w7", "--agent", url, "--dir", dir, "--rank", "1").must(t, 0)
	if _, err := os.Stat(filepath.Join(into, "rank0-report.nsys-rep")); !os.IsNotExist(err) {
		t.Errorf("--rank 1 pulled rank 0: %v", err)
	}
	checkFile(t, filepath.Join(into, "rank1-report.nsys-rep"), rep1)

	// A partial file is resumed with a Range request and verified as a whole.
	if err := os.WriteFile(filepath.Join(into, "rank0-report.nsys-rep.part"), []byte(rep0[:500]), 0o600); err != nil {
		t.Fatal(err)
	}
	r = runCLI(t, "pull", "--agent", url, "--dir", dir, "-o", "json", "w7").must(t, 0)
	var res pullResult
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
		t.Fatalf("pull -o json: %v\n%s", err, r.stdout)
	}
	status := map[string]string{}
	for _, f := range res.Files {
		status[f.Name] = f.Status
	}
	want := map[string]string{"rank0-report.nsys-rep": "resumed", "rank1-report.nsys-rep": "up-to-date", "summary.json": "downloaded"}
	for name, st := range want {
		if status[name] != st {
			t.Errorf("%s: status %q, want %q (all: %v)", name, status[name], st, status)
		}
	}
	if len(s.ranges) != 1 || s.ranges[0] != "bytes=500-" {
		t.Errorf("Range headers = %q, want one bytes=500-", s.ranges)
	}
	checkFile(t, filepath.Join(into, "rank0-report.nsys-rep"), rep0)
	if _, err := os.Stat(filepath.Join(into, "rank0-report.nsys-rep.part")); !os.IsNotExist(err) {
		t.Errorf(".part left behind: %v", err)
	}
	var m windows.Manifest
	b, err := os.ReadFile(filepath.Join(into, "manifest.json"))
	if err != nil || json.Unmarshal(b, &m) != nil || m.ID != "w7" || len(m.Artifacts) != 3 {
		t.Errorf("manifest.json: %v %s", err, b)
	}

	// A bad partial file fails verification after resuming; pull starts it over.
	if err := os.Remove(filepath.Join(into, "summary.json")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(into, "summary.json.part"), []byte("X"), 0o600); err != nil {
		t.Fatal(err)
	}
	r = runCLI(t, "pull", "w7", "--agent", url, "--dir", dir).must(t, 0)
	if !strings.Contains(r.stdout, "verified") {
		t.Errorf("table:\n%s", r.stdout)
	}
	checkFile(t, filepath.Join(into, "summary.json"), "{}")
}

func TestPullDetectsCorruption(t *testing.T) {
	s := newScriptedAgent(t)
	url := s.serve(t)
	s.AddWindow(t, "w3", map[string]string{"report.nsys-rep": "the real bytes"})
	// The file changes under the manifest: what arrives no longer matches its sha256.
	if err := os.WriteFile(filepath.Join(s.Dir, "w3", "report.nsys-rep"), []byte("the rEal bytes"), 0o644); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	r := runCLI(t, "pull", "w3", "--agent", url, "--dir", dir).must(t, 1)
	if !strings.Contains(r.stderr, "sha256 mismatch") {
		t.Errorf("stderr:\n%s", r.stderr)
	}
	for _, name := range []string{"report.nsys-rep", "report.nsys-rep.part"} {
		if _, err := os.Stat(filepath.Join(dir, "w3", name)); !os.IsNotExist(err) {
			t.Errorf("%s kept after a bad download: %v", name, err)
		}
	}
}

func TestUsageErrorsExit2(t *testing.T) {
	for _, args := range [][]string{
		{"start", "--duration", "abc"},
		{"start", "--duration", "48h"},
		{"start", "--name", "../x"},
		{"start", "--at", "later"},
		{"start", "--bogus"},
		{"stop", "w1", "w2"},
		{"stop", "w1", "--bogus"},
		{"show"},
		{"pull", "w1", "--rank"},
		{"windows", "-o", "yaml"},
		{"status", "--agent", "ftp://x"},
		{"status", "--agent", "http://user:pw@x"},
	} {
		r := runCLI(t, args...)
		if r.code != exitUsage {
			t.Errorf("%q: exit %d, want %d\n%s", args, r.code, exitUsage, r.stderr)
		}
	}
	if r := runCLI(t, "start", "--duration", "abc"); !strings.Contains(r.stderr, `duration: invalid duration "abc"`) {
		t.Errorf("bad duration message:\n%s", r.stderr)
	}
}

func checkFile(t *testing.T, path, want string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != want {
		t.Errorf("%s: %d bytes, want %d", path, len(b), len(want))
	}
}

func TestHumanFormats(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1536: "1.5 KiB", 5 << 20: "5.0 MiB"} {
		if got := humanBytes(n); got != want {
			t.Errorf("humanBytes(%d) = %q, want %q", n, got, want)
		}
	}
	for d, want := range map[time.Duration]string{
		1500 * time.Microsecond: "2ms", 4240 * time.Millisecond: "4.2s", 192 * time.Second: "3m12s", 125 * time.Minute: "2h5m",
	} {
		if got := humanDuration(d); got != want {
			t.Errorf("humanDuration(%v) = %q, want %q", d, got, want)
		}
	}
}

// TestBackends: without an agent the built-in backends are listed with what keeps one
// from being used; with --agent, the agent's own list.
func TestBackends(t *testing.T) {
	r := runCLI(t, "backends", "--nsys", "/nonexistent/nsys").must(t, 0)
	if !strings.Contains(r.stdout, "nsys") || !strings.Contains(r.stdout, "unavailable") || !strings.Contains(r.stdout, "install Nsight Systems") {
		t.Errorf("local list without nsys:\n%s", r.stdout)
	}
	url := newScriptedAgent(t).serve(t, "sekret")
	r = runCLI(t, "backends", "--agent", url, "--token", "sekret", "-o", "json").must(t, 0)
	var list []agent.BackendStatus
	if err := json.Unmarshal([]byte(r.stdout), &list); err != nil || len(list) != 1 || list[0].Name != "nsys" || !list[0].Default {
		t.Errorf("agent list: %v\n%s", err, r.stdout)
	}
	runCLI(t, "backends", "extra").must(t, 2)
}

// TestShowErrors: every way show can fail says so (exit 1, the reason on stderr) and
// prints nothing on stdout: no panic, no "null".
func TestShowErrors(t *testing.T) {
	s := newScriptedAgent(t)
	up := s.serve(t, "sekret")
	s.AddWindow(t, "w7", map[string]string{"report.nsys-rep": "r"})
	other := newScriptedAgent(t).serve(t, "sekret")
	dead := httptest.NewServer(http.NotFoundHandler())
	down := dead.URL
	dead.Close()

	for _, tc := range []struct {
		name   string
		args   []string
		stderr string
	}{
		{"unknown window", []string{"show", "nope", "--agent", up, "--token", "sekret"}, `no window has the id or name "nope"`},
		{"agent down", []string{"show", "w7", "--agent", down}, "connection refused"},
		{"wrong token", []string{"show", "w7", "--agent", up, "--token", "wrong"}, "401"},
		{"no windows yet", []string{"show", "latest", "--agent", other, "--token", "sekret"}, "no windows yet"},
		{"nothing active", []string{"show", "active", "--agent", up, "--token", "sekret"}, "no window is active"},
	} {
		for _, format := range []string{"table", "json"} {
			t.Run(tc.name+"/"+format, func(t *testing.T) {
				r := runCLI(t, append(tc.args, "-o", format)...).must(t, 1)
				if !strings.Contains(r.stderr, tc.stderr) {
					t.Errorf("stderr lacks %q:\n%s", tc.stderr, r.stderr)
				}
				if r.stdout != "" {
					t.Errorf("stdout should be empty:\n%s", r.stdout)
				}
			})
		}
	}

	// Several agents, one of which lacks the window: a row each, exit 1.
	r := runCLI(t, "show", "w7", "--agent", up+","+other+","+down, "--token", "sekret").must(t, 1)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 4 || !strings.Contains(lines[1], " ok ") || !strings.Contains(lines[1], "w7") ||
		!strings.Contains(lines[2], `no window has the id or name "w7"`) ||
		!strings.Contains(lines[3], "connection refused") {
		t.Errorf("per-agent rows:\n%s", r.stdout)
	}
	r = runCLI(t, "show", "w7", "--agent", up+","+other, "--token", "sekret", "-o", "json").must(t, 1)
	var rows []agentResultJSON
	if err := json.Unmarshal([]byte(r.stdout), &rows); err != nil || len(rows) != 2 {
		t.Fatalf("-o json: %v\n%s", err, r.stdout)
	}
	if !rows[0].OK || rows[0].Result == nil || rows[1].OK || rows[1].Result != nil || rows[1].Code != "not_found" {
		t.Errorf("rows: %+v", rows)
	}
}

// TestPullNeverWritesThroughLinks: a symbolic link planted at <artifact>.part (a shared
// download folder) is refused, the file it points at untouched; what pull writes is
// private (0600 files in a 0700 folder), a partial file of ours included.
func TestPullNeverWritesThroughLinks(t *testing.T) {
	s := newScriptedAgent(t)
	url := s.serve(t)
	report := strings.Repeat("the report, with the server's environment ", 50)
	s.AddWindow(t, "w7", map[string]string{"report.nsys-rep": report})
	dir := t.TempDir()
	into := filepath.Join(dir, "w7")
	if err := os.Mkdir(into, 0o700); err != nil {
		t.Fatal(err)
	}
	victim := filepath.Join(t.TempDir(), "victim")
	if err := os.WriteFile(victim, []byte("precious"), 0o644); err != nil {
		t.Fatal(err)
	}
	part := filepath.Join(into, "report.nsys-rep.part")
	if err := os.Symlink(victim, part); err != nil {
		t.Fatal(err)
	}
	r := runCLI(t, "pull", "w7", "--agent", url, "--dir", dir).must(t, 1)
	checkFile(t, victim, "precious")
	if fi, _ := os.Stat(victim); fi.Mode().Perm() != 0o644 {
		t.Errorf("victim's mode changed to %v", fi.Mode().Perm())
	}
	if !strings.Contains(r.stderr, "symbolic link") || !strings.Contains(r.stderr, part) {
		t.Errorf("stderr should name the link:\n%s", r.stderr)
	}
	if _, err := os.Lstat(filepath.Join(into, "report.nsys-rep")); !os.IsNotExist(err) {
		t.Errorf("the artifact was written anyway: %v", err)
	}

	// A partial file that is not ours is not written to either.
	if err := os.Remove(part); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(part, []byte(report[:100]), 0o666); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		if err := os.Chown(part, 65534, 65534); err != nil {
			t.Fatal(err)
		}
		r = runCLI(t, "pull", "w7", "--agent", url, "--dir", dir).must(t, 1)
		if !strings.Contains(r.stderr, "belongs to uid 65534") {
			t.Errorf("a foreign partial file should be refused:\n%s", r.stderr)
		}
		if err := os.Chown(part, 0, 0); err != nil {
			t.Fatal(err)
		}
	}

	// Our own partial file, left world-readable by an older pull: resumed, made private.
	if err := os.Chmod(part, 0o644); err != nil {
		t.Fatal(err)
	}
	runCLI(t, "pull", "w7", "--agent", url, "--dir", dir).must(t, 0)
	checkFile(t, filepath.Join(into, "report.nsys-rep"), report)
	for _, name := range []string{"report.nsys-rep", "manifest.json"} {
		if fi, err := os.Stat(filepath.Join(into, name)); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v, mode %v; want 0600", name, err, fi.Mode().Perm())
		}
	}

	// The window's folder itself must not be a link to somewhere else.
	elsewhere := t.TempDir()
	dir2 := t.TempDir()
	if err := os.Symlink(elsewhere, filepath.Join(dir2, "w7")); err != nil {
		t.Fatal(err)
	}
	r = runCLI(t, "pull", "w7", "--agent", url, "--dir", dir2).must(t, 1)
	if !strings.Contains(r.stderr, "symbolic link") {
		t.Errorf("a linked window folder should be refused:\n%s", r.stderr)
	}
	if ents, _ := os.ReadDir(elsewhere); len(ents) != 0 {
		t.Errorf("pull wrote through the linked folder: %v", ents)
	}
}

// TestPullKeepsTheUsersFiles: a different local file of an artifact's name, or a
// manifest.json that is not this window's, is kept unless --force; nothing is downloaded
// before that is settled. With --force the file is replaced and says so.
func TestPullKeepsTheUsersFiles(t *testing.T) {
	s := newScriptedAgent(t)
	url := s.serve(t)
	s.AddWindow(t, "w7", map[string]string{"report.nsys-rep": "the agent's report", "summary.json": "{}"})
	dir := t.TempDir()
	into := filepath.Join(dir, "w7")
	if err := os.Mkdir(into, 0o700); err != nil {
		t.Fatal(err)
	}
	mine := filepath.Join(into, "report.nsys-rep")
	notes := filepath.Join(into, "manifest.json")
	for path, data := range map[string]string{mine: "my own edited report", notes: "my notes"} {
		if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	r := runCLI(t, "pull", "w7", "--agent", url, "--dir", dir).must(t, 1)
	checkFile(t, mine, "my own edited report")
	checkFile(t, notes, "my notes")
	for _, want := range []string{mine, notes, "--force", "nsys-agent pull w7 --dir " + dir + " --force --agent " + url} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
		}
	}
	if _, err := os.Stat(filepath.Join(into, "summary.json")); !os.IsNotExist(err) {
		t.Errorf("pull downloaded before refusing: %v", err)
	}

	r = runCLI(t, "pull", "w7", "--agent", url, "--dir", dir, "--force", "-o", "json").must(t, 0)
	var res pullResult
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
		t.Fatalf("%v\n%s", err, r.stdout)
	}
	status := map[string]string{}
	for _, f := range res.Files {
		status[f.Name] = f.Status
	}
	if status["report.nsys-rep"] != "replaced" || status["summary.json"] != "downloaded" {
		t.Errorf("statuses %v", status)
	}
	checkFile(t, mine, "the agent's report")

	// A manifest.json from an earlier pull of this window is pull's own: refreshed freely.
	runCLI(t, "pull", "w7", "--agent", url, "--dir", dir).must(t, 0)
}

// TestPullFailedWindows: a failed or cancelled window is no successful pull: exit 1 with
// its state and reason, unless --allow-failed, which pulls what it has and says its
// state, in the table and in the JSON.
func TestPullFailedWindows(t *testing.T) {
	s := newScriptedAgent(t)
	url := s.serve(t)
	s.AddWindow(t, "w1", map[string]string{"report.qdstrm": "half a capture"})
	s.Change(t, "w1", windows.Manifest{State: windows.StateFailed, Error: "nsys stop hung; kept the .qdstrm"})
	dir := t.TempDir()

	r := runCLI(t, "pull", "latest", "--agent", url, "--dir", dir).must(t, 1)
	for _, want := range []string{"window w1 failed: nsys stop hung; kept the .qdstrm", "nsys-agent pull w1 --dir " + dir + " --allow-failed --agent " + url} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
		}
	}
	if strings.Contains(r.stdout, "verified") {
		t.Errorf("a refused pull claims success:\n%s", r.stdout)
	}
	if _, err := os.Stat(filepath.Join(dir, "w1")); !os.IsNotExist(err) {
		t.Errorf("a refused pull made the window folder: %v", err)
	}

	r = runCLI(t, "pull", "latest", "--agent", url, "--dir", dir, "--allow-failed").must(t, 0)
	if !strings.Contains(r.stdout, "window w1 failed (nsys stop hung; kept the .qdstrm): 1 file") {
		t.Errorf("table should say the window failed:\n%s", r.stdout)
	}
	checkFile(t, filepath.Join(dir, "w1", "report.qdstrm"), "half a capture")
	r = runCLI(t, "pull", "latest", "--agent", url, "--dir", dir, "--allow-failed", "-o", "json").must(t, 0)
	var res pullResult
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil || res.State != "failed" || res.Error == "" || len(res.Files) != 1 {
		t.Errorf("json: %v %+v\n%s", err, res, r.stdout)
	}

	s.AddWindow(t, "w2", nil)
	s.Change(t, "w2", windows.Manifest{State: windows.StateCancelled})
	r = runCLI(t, "pull", "w2", "--agent", url, "--dir", dir).must(t, 1)
	if !strings.Contains(r.stderr, "window w2 was cancelled") {
		t.Errorf("stderr:\n%s", r.stderr)
	}
}

// TestWindowNames: a window's name works wherever its id does, and means the newest
// window of that name; an id wins over a name.
func TestWindowNames(t *testing.T) {
	s := newScriptedAgent(t)
	url := s.serve(t)
	runCLI(t, "start", "--agent", url, "--name", "spike").must(t, 0)
	s.Change(t, "w1", windows.Manifest{State: windows.StateReady})
	runCLI(t, "start", "--agent", url, "--name", "spike").must(t, 0)

	r := runCLI(t, "show", "spike", "--agent", url, "-o", "json").must(t, 0)
	var m windows.Manifest
	if err := json.Unmarshal([]byte(r.stdout), &m); err != nil || m.ID != "w2" {
		t.Errorf("show spike: want the newest spike, w2: %v\n%s", err, r.stdout)
	}
	s.Finalize = []windows.Manifest{{State: windows.StateReady}}
	r = runCLI(t, "stop", "spike", "--agent", url, "-o", "json").must(t, 0)
	if err := json.Unmarshal([]byte(r.stdout), &m); err != nil || m.ID != "w2" || m.State != windows.StateReady {
		t.Errorf("stop spike: %v\n%s", err, r.stdout)
	}
	s.Change(t, "w2", windows.Manifest{State: windows.StateReady}) // the fake's events do not change its record
	runCLI(t, "pull", "spike", "--agent", url, "--dir", t.TempDir()).must(t, 0)

	r = runCLI(t, "show", "nope", "--agent", url).must(t, 1)
	if !strings.Contains(r.stderr, `no window has the id or name "nope"`) || !strings.Contains(r.stderr, "nsys-agent windows --agent "+url) {
		t.Errorf("unknown name:\n%s", r.stderr)
	}
}

// TestPullDeprecatedFlags: -o is the output format; the old `pull -o DIR` and --format
// keep working for one release, with a note on stderr.
func TestPullDeprecatedFlags(t *testing.T) {
	s := newScriptedAgent(t)
	url := s.serve(t)
	s.AddWindow(t, "w7", map[string]string{"report.nsys-rep": "r"})
	dir := t.TempDir()
	r := runCLI(t, "pull", "w7", "--agent", url, "-o", dir).must(t, 0)
	checkFile(t, filepath.Join(dir, "w7", "report.nsys-rep"), "r")
	if !strings.Contains(r.stderr, "pull -o DIR is deprecated") || !strings.Contains(r.stderr, "--dir "+dir) {
		t.Errorf("no deprecation note:\n%s", r.stderr)
	}
	r = runCLI(t, "pull", "w7", "--agent", url, "--dir", dir, "--format", "json").must(t, 0)
	if !json.Valid([]byte(r.stdout)) || !strings.Contains(r.stderr, "--format is deprecated") {
		t.Errorf("--format json:\n%s\n%s", r.stdout, r.stderr)
	}
	r = runCLI(t, "pull", "w7", "--agent", url, "--dir", dir, "-o", "json").must(t, 0)
	if !json.Valid([]byte(r.stdout)) || r.stderr != "" {
		t.Errorf("-o json:\n%s\n%s", r.stdout, r.stderr)
	}
	// Both a directory in -o and --dir: which one was meant is not clear.
	r = runCLI(t, "pull", "w7", "--agent", url, "--dir", dir, "-o", dir).must(t, 2)
	if !strings.Contains(r.stderr, "-o is the output format") {
		t.Errorf("stderr:\n%s", r.stderr)
	}
}

// whenSubscribed runs steps on window id once it exists and a client has begun to listen
// to the event stream since this call (at once with NoEvents), as the agent would while
// the client waits.
func (s *served) whenSubscribed(t *testing.T, id string, steps ...windows.Manifest) {
	before := s.Subscriptions()
	done := make(chan struct{})
	t.Cleanup(func() { <-done })
	go func() {
		defer close(done)
		ready := func() bool {
			if !s.NoEvents && s.Subscriptions() == before {
				return false
			}
			for _, m := range s.Windows(context.Background()) {
				if m.ID == id {
					return true
				}
			}
			return false
		}
		for deadline := time.Now().Add(10 * time.Second); !ready(); time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Errorf("window %s did not appear with a client listening within 10s", id)
				return
			}
		}
		for _, st := range steps {
			s.Change(t, id, st)
		}
	}()
}

var (
	stepFinalizing = windows.Manifest{State: windows.StateFinalizing, Progress: &windows.Progress{Step: "importing report", Fraction: 0.5}}
	stepReady      = windows.Manifest{State: windows.StateReady}
)

// TestStartWait: start --wait follows the window to its end, with the progress stop
// shows, and exits as the window ended.
func TestStartWait(t *testing.T) {
	s := newScriptedAgent(t)
	url := s.serve(t)
	s.whenSubscribed(t, "w1", stepFinalizing, stepReady)
	r := runCLI(t, "start", "--agent", url, "--duration", "1s", "--wait").must(t, 0)
	// The steps may come before the client's first look: only the end is sure to show.
	for _, want := range []string{"100% done"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("progress lacks %q:\n%s", want, r.stderr)
		}
	}
	if !strings.Contains(r.stdout, "ready") {
		t.Errorf("start --wait should print the ready window:\n%s", r.stdout)
	}

	s.whenSubscribed(t, "w2", windows.Manifest{State: windows.StateFailed, Error: "nsys stop hung"})
	r = runCLI(t, "start", "--agent", url, "--duration", "1s", "--wait").must(t, 1)
	if !strings.Contains(r.stderr, "window w2 failed: nsys stop hung") {
		t.Errorf("stderr:\n%s", r.stderr)
	}
	// Without --duration or --steps only a stop ends the window: nothing to wait for.
	r = runCLI(t, "start", "--agent", url, "--wait").must(t, 2)
	if !strings.Contains(r.stderr, "--wait needs --duration or --steps") {
		t.Errorf("stderr:\n%s", r.stderr)
	}
}

// TestStopWaitsForAFinalizingWindow: a window whose duration ran out is finalizing; stop
// (of it, or of nothing in particular) waits for it instead of answering 409.
func TestStopWaitsForAFinalizingWindow(t *testing.T) {
	for _, args := range [][]string{{"stop", "w1"}, {"stop"}} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			s := newScriptedAgent(t)
			url := s.serve(t)
			runCLI(t, "start", "--agent", url, "--duration", "1s").must(t, 0)
			s.Change(t, "w1", windows.Manifest{State: windows.StateFinalizing})
			s.Finalize = []windows.Manifest{stepFinalizing, stepReady}
			r := runCLI(t, append(args, "--agent", url)...).must(t, 0)
			if !strings.Contains(r.stderr, "window w1 is already finalizing; waiting for it") || !strings.Contains(r.stderr, "100% done") {
				t.Errorf("stderr:\n%s", r.stderr)
			}
			if !strings.Contains(r.stdout, "ready") {
				t.Errorf("stdout:\n%s", r.stdout)
			}
		})
	}
	// A window that ended already: stop of it says so; exit 0 if it is ready.
	s := newScriptedAgent(t)
	url := s.serve(t)
	s.AddWindow(t, "w1", nil)
	r := runCLI(t, "stop", "w1", "--agent", url).must(t, 0)
	if !strings.Contains(r.stderr, "window w1 had already ended") {
		t.Errorf("stderr:\n%s", r.stderr)
	}
	// Nothing capturing and nothing finalizing: still a conflict.
	runCLI(t, "stop", "--agent", url).must(t, 1)
}

// TestWait: wait follows a window (default: the newest) to its end; pull's hint for a
// window still finalizing names it.
func TestWait(t *testing.T) {
	for _, noEvents := range []bool{false, true} {
		t.Run(map[bool]string{false: "events", true: "polling"}[noEvents], func(t *testing.T) {
			s := newScriptedAgent(t)
			s.NoEvents = noEvents
			url := s.serve(t)
			runCLI(t, "start", "--agent", url, "--duration", "1s", "--name", "quick").must(t, 0)
			// Its duration ran out: the agent finalizes it while the client waits.
			s.Change(t, "w1", windows.Manifest{State: windows.StateFinalizing})
			s.Finalize = []windows.Manifest{stepFinalizing, stepReady}
			r := runCLI(t, "wait", "--agent", url).must(t, 0)
			if !strings.Contains(r.stderr, "50% importing report") || !strings.Contains(r.stderr, "100% done") || !strings.Contains(r.stdout, "ready") {
				t.Errorf("wait:\n%s\n%s", r.stdout, r.stderr)
			}
			runCLI(t, "wait", "quick", "--agent", url).must(t, 0)
		})
	}

	s := newScriptedAgent(t)
	url := s.serve(t)
	runCLI(t, "start", "--agent", url, "--duration", "1s").must(t, 0)
	s.Change(t, "w1", windows.Manifest{State: windows.StateFinalizing})
	r := runCLI(t, "pull", "latest", "--agent", url, "--dir", t.TempDir()).must(t, 1)
	if !strings.Contains(r.stderr, "nsys-agent wait w1 --agent "+url) {
		t.Errorf("pull of a finalizing window should hint at wait:\n%s", r.stderr)
	}
	r = runCLI(t, "wait", "w1", "--agent", url, "--timeout", "300ms").must(t, 1)
	if !strings.Contains(r.stderr, "window w1 is still finalizing after 300ms") {
		t.Errorf("timeout:\n%s", r.stderr)
	}
	s.Change(t, "w1", windows.Manifest{State: windows.StateFailed, Error: "import failed"})
	r = runCLI(t, "wait", "--agent", url).must(t, 1)
	if !strings.Contains(r.stderr, "window w1 failed: import failed") {
		t.Errorf("failed window:\n%s", r.stderr)
	}
}

// TestStartAt: --at is bounded as the agent bounds it, before anything is sent; a
// scheduled window says when it starts, and stopping it before then cancels it (exit 0).
func TestStartAt(t *testing.T) {
	dead := httptest.NewServer(http.NotFoundHandler())
	dead.Close()
	for _, at := range []string{"25h", time.Now().Add(48 * time.Hour).UTC().Format(time.RFC3339)} {
		r := runCLI(t, "start", "--agent", dead.URL, "--at", at).must(t, 2)
		if !strings.Contains(r.stderr, "--at: at most 24h0m0s ahead") {
			t.Errorf("--at %s:\n%s", at, r.stderr)
		}
	}

	s := newScriptedAgent(t)
	url := s.serve(t)
	r := runCLI(t, "start", "--agent", url, "--at", "90s", "--duration", "5s").must(t, 0)
	for _, want := range []string{"requested", "STARTS", "(in 1m30s)"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("start --at: no %q:\n%s", want, r.stdout)
		}
	}
	r = runCLI(t, "stop", "--agent", url).must(t, 0)
	if !strings.Contains(r.stderr, "window w1 was cancelled before it started") || !strings.Contains(r.stdout, "cancelled") {
		t.Errorf("stop of a scheduled window:\n%s\n%s", r.stdout, r.stderr)
	}

	r = runCLI(t, "start", "--agent", url, "--at", "1h", "-o", "json").must(t, 0)
	var m windows.Manifest
	if err := json.Unmarshal([]byte(r.stdout), &m); err != nil || m.State != windows.StateRequested {
		t.Errorf("json: %v\n%s", err, r.stdout)
	}
	if !strings.Contains(r.stderr, "window w2 starts at ") || !strings.Contains(r.stderr, "(in 1h0m)") {
		t.Errorf("-o json: the start time goes to stderr:\n%s", r.stderr)
	}
	r = runCLI(t, "stop", "w2", "--agent", url, "-o", "json").must(t, 0)
	if err := json.Unmarshal([]byte(r.stdout), &m); err != nil || m.State != windows.StateCancelled {
		t.Errorf("json: %v\n%s", err, r.stdout)
	}
}

// TestWindowCommandsFailCleanly: every command that names a window fails the way show
// does when the window is unknown, the agent is down or the token is wrong: exit 1, the
// reason on stderr, nothing (not "null") on stdout.
func TestWindowCommandsFailCleanly(t *testing.T) {
	up := newScriptedAgent(t).serve(t, "sekret")
	dead := httptest.NewServer(http.NotFoundHandler())
	dead.Close()
	dir := t.TempDir()
	for _, cmd := range [][]string{{"show", "nope"}, {"stop", "nope"}, {"wait", "nope"}, {"pull", "nope", "--dir", dir}} {
		for _, tc := range []struct {
			name   string
			args   []string
			stderr string
		}{
			{"unknown window", []string{"--agent", up, "--token", "sekret"}, `no window has the id or name "nope"`},
			{"agent down", []string{"--agent", dead.URL}, "connection refused"},
			{"wrong token", []string{"--agent", up, "--token", "wrong"}, "401"},
		} {
			for _, format := range []string{"table", "json"} {
				args := append(append(append([]string{}, cmd...), tc.args...), "-o", format)
				r := runCLI(t, args...).must(t, 1)
				if !strings.Contains(r.stderr, tc.stderr) || r.stdout != "" {
					t.Errorf("%q: want %q on stderr and nothing on stdout:\nstdout: %s\nstderr: %s", args, tc.stderr, r.stdout, r.stderr)
				}
			}
		}
	}
}

// TestWaitSurvivesALostEvent: the window's final event never arrives (the agent's bus
// dropped it) while the stream stays open; the wait still ends, from its periodic check
// (before, it waited for ever).
func TestWaitSurvivesALostEvent(t *testing.T) {
	saved := recheckEvery
	recheckEvery = 100 * time.Millisecond
	defer func() { recheckEvery = saved }()
	s := newScriptedAgent(t)
	url := s.serve(t)
	runCLI(t, "start", "--agent", url, "--duration", "1s").must(t, 0)
	s.Change(t, "w1", windows.Manifest{State: windows.StateFinalizing})
	go func() {
		for s.Subscriptions() == 0 {
			time.Sleep(10 * time.Millisecond)
		}
		time.Sleep(100 * time.Millisecond)
		s.ChangeQuietly(t, "w1", windows.Manifest{State: windows.StateReady})
	}()
	done := make(chan result, 1)
	go func() { done <- runCLI(t, "wait", "w1", "--agent", url) }()
	select {
	case r := <-done:
		if r.code != 0 || !strings.Contains(r.stdout, "ready") {
			t.Fatalf("wait: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("wait hung on a lost event")
	}
}
