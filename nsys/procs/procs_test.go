package procs_test

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nsys-agent/nsys-agent/nsys/procs"
)

// fake reads testdata/proc: a real `nsys launch` tree of nsys 2022.4.2 plus a few traps
// (testdata/README.md).
func fake(t *testing.T) *procs.Reader {
	t.Helper()
	r, err := procs.New("testdata/proc")
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestNew(t *testing.T) {
	r, err := procs.New("")
	if err != nil {
		t.Fatal(err)
	}
	if r.Root() != "/proc" || procs.Default.Root() != "/proc" {
		t.Errorf("root: got %q and Default %q, want /proc", r.Root(), procs.Default.Root())
	}
	if _, err := procs.New("testdata/no-such-dir"); err == nil || !strings.Contains(err.Error(), "testdata/no-such-dir") {
		t.Errorf("a missing root must be an error naming it, got %v", err)
	}
}

func TestPIDs(t *testing.T) {
	got, err := fake(t).PIDs()
	if err != nil {
		t.Fatal(err)
	}
	want := []int{1, 2, 16011, 16019, 16027, 16028, 16029, 16031, 16032, 16050, 16060, 16070}
	if !slices.Equal(got, want) {
		t.Errorf("got %v, want %v (uptime is not a process)", got, want)
	}
}

func TestCmdline(t *testing.T) {
	r := fake(t)
	cases := []struct {
		pid     int
		want    []string
		missing bool
	}{
		{pid: 16019, want: []string{"/usr/lib/x86_64-linux-gnu/nsight-systems/target-linux-x64/nsys", "--start-agent",
			"--session-name=probe-tree", "--shm-name=quadd-create-agent-f7e3f8a3-f2b7-4830-8b4e-c5a143ee8020"}},
		{pid: 16028, want: []string{"/bin/sh", "-c", "sleep 20 & sleep 20 & wait"}},
		{pid: 2, want: []string{}}, // kernel thread
		{pid: 99999, missing: true},
	}
	for _, c := range cases {
		t.Run(fmt.Sprint(c.pid), func(t *testing.T) {
			got, err := r.Cmdline(c.pid)
			if c.missing {
				if !errors.Is(err, fs.ErrNotExist) {
					t.Fatalf("want an error wrapping fs.ErrNotExist, got %v %v", got, err)
				}
				return
			}
			if err != nil || !slices.Equal(got, c.want) {
				t.Errorf("got %q %v, want %q", got, err, c.want)
			}
		})
	}
}

func TestEnviron(t *testing.T) {
	r := fake(t)
	env, err := r.Environ(16028)
	if err != nil {
		t.Fatal(err)
	}
	if len(env) != 14 || env[0] != "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" ||
		!slices.Contains(env, "NSYS_PROFILING_SESSION_ID=1016019") {
		t.Errorf("target environment: got %d entries %q", len(env), env)
	}
	if env, err := r.Environ(2); err != nil || len(env) != 0 {
		t.Errorf("kernel thread: got %q %v, want empty", env, err)
	}
	if _, err := r.Environ(1); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("no environ file: want fs.ErrNotExist, got %v", err)
	}
}

func TestLookupEnv(t *testing.T) {
	r := fake(t)
	cases := []struct {
		pid     int
		name    string
		want    string
		found   bool
		wantErr bool
	}{
		{pid: 16031, name: "NSYS_PROFILING_SESSION_ID", want: "1016019", found: true},
		{pid: 16031, name: "QUADD_AGENT_PID", want: "16011", found: true},
		{pid: 16031, name: "NSYS_PROFILING_SESSION", found: false}, // a prefix of a name is not the name
		{pid: 16011, name: "NSYS_PROFILING_SESSION_ID", found: false},
		{pid: 16011, name: "HOME", want: "/root", found: true},
		{pid: 1, name: "HOME", wantErr: true},
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("%d/%s", c.pid, c.name), func(t *testing.T) {
			got, found, err := r.LookupEnv(c.pid, c.name)
			if (err != nil) != c.wantErr || got != c.want || found != c.found {
				t.Errorf("got %q %v %v, want %q %v (error %v)", got, found, err, c.want, c.found, c.wantErr)
			}
		})
	}
}

func TestFind(t *testing.T) {
	r := fake(t)
	agentOf := func(session string) func([]string) bool {
		return func(args []string) bool {
			return slices.Contains(args, "--start-agent") && slices.Contains(args, "--session-name="+session)
		}
	}
	cases := []struct {
		name  string
		match func([]string) bool
		want  []int
	}{
		{"agent of probe-tree", agentOf("probe-tree"), []int{16019}},
		{"agent of probe-tree-2", agentOf("probe-tree-2"), []int{16050}},
		{"agent of probe", agentOf("probe"), nil},
		{"empty command lines", func(a []string) bool { return len(a) == 0 }, []int{2}},
		{"every process", func([]string) bool { return true }, []int{1, 2, 16011, 16019, 16027, 16028, 16029, 16031, 16032, 16050, 16060, 16070}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := r.Find(c.match)
			if err != nil || !slices.Equal(got, c.want) {
				t.Errorf("got %v %v, want %v", got, err, c.want)
			}
		})
	}
}

func TestDescendants(t *testing.T) {
	r := fake(t)
	cases := []struct {
		pid  int
		want []procs.Proc
	}{
		// The front-end's tree: nsys' helpers, the target and its children, nearest first.
		{16011, []procs.Proc{
			{PID: 16027, PPID: 16011, Comm: "nsys-launcher", State: "S"},
			{PID: 16028, PPID: 16027, Comm: "sh", State: "S"},
			{PID: 16029, PPID: 16027, Comm: "nsys-tee", State: "S"},
			{PID: 16031, PPID: 16028, Comm: "sleep", State: "S"},
			{PID: 16032, PPID: 16028, Comm: "sleep", State: "S"},
		}},
		{16028, []procs.Proc{{PID: 16031, PPID: 16028, Comm: "sleep", State: "S"}, {PID: 16032, PPID: 16028, Comm: "sleep", State: "S"}}},
		{16031, nil},
		{99999, nil},
	}
	for _, c := range cases {
		t.Run(fmt.Sprint(c.pid), func(t *testing.T) {
			got, err := r.Descendants(c.pid)
			if err != nil || !slices.Equal(got, c.want) {
				t.Errorf("got %+v %v, want %+v", got, err, c.want)
			}
		})
	}
	// The comm "x) S 16011 (y" must not make 16070 a child of 16011.
	one, _ := r.Descendants(1)
	i := slices.IndexFunc(one, func(p procs.Proc) bool { return p.PID == 16070 })
	if i < 0 || one[i].PPID != 1 || one[i].Comm != "x) S 16011 (y" {
		t.Errorf("16070 should be a child of 1 named %q, got %+v", "x) S 16011 (y", one)
	}
}

// TestDescendantsLoop: stat lines are read one process at a time, so a reused pid can
// make two processes each other's parent; the walk must end.
func TestDescendantsLoop(t *testing.T) {
	root := t.TempDir()
	for _, p := range [][2]int{{10, 20}, {20, 10}, {30, 20}} {
		dir := filepath.Join(root, fmt.Sprint(p[0]))
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		// A real stat line (sleep, nsys 2022.4 tree) with pid and parent replaced.
		line := fmt.Sprintf("%d (sleep) S %d 16028 16028 0 -1 4194304 1015 0 0 0 0 0 0 0 20 0 4 0 33542 396832768 3075 "+
			"18446744073709551615 94905168310272 94905168328201 140729168466176 0 0 0 0 6 0 0 0 0 17 1 0 0 0 0 0 "+
			"94905168342288 94905168343552 94905442402304 140729168472233 140729168472242 140729168472242 140729168474089 0\n", p[0], p[1])
		if err := os.WriteFile(filepath.Join(dir, "stat"), []byte(line), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	r, err := procs.New(root)
	if err != nil {
		t.Fatal(err)
	}
	got, err := r.Descendants(10)
	want := []procs.Proc{{PID: 20, PPID: 10, Comm: "sleep", State: "S"}, {PID: 30, PPID: 20, Comm: "sleep", State: "S"}}
	if err != nil || !slices.Equal(got, want) {
		t.Errorf("got %+v %v, want %+v", got, err, want)
	}
}

// TestRealProc reads the real /proc: this test's own process, and a shell it starts that
// starts a sleep (a child and a grandchild, with an environment of our choosing).
func TestRealProc(t *testing.T) {
	r := procs.Default
	self := os.Getpid()
	if args, err := r.Cmdline(self); err != nil || !slices.Equal(args, os.Args) {
		t.Errorf("own command line: got %q %v, want %q", args, err, os.Args)
	}
	if env, err := r.Environ(self); err != nil || !slices.ContainsFunc(env, func(kv string) bool { return strings.HasPrefix(kv, "PATH=") }) {
		t.Errorf("own environment has no PATH: %d entries, %v", len(env), err)
	}

	marker := fmt.Sprintf("procs-test-%d-%d", self, time.Now().UnixNano())
	cmd := exec.Command("/bin/sh", "-c", "sleep 30 & wait", marker) // marker becomes $0
	cmd.Env = append(os.Environ(), "NSYS_PROFILING_SESSION_ID="+marker)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	child := cmd.Process.Pid
	t.Cleanup(func() {
		_ = syscall.Kill(-child, syscall.SIGKILL) // the shell's group: the shell and its sleep
		_ = cmd.Wait()
	})

	// Until the fork has exec'd the shell and the shell has started sleep, /proc shows
	// the fork's copy of this test binary, then a shell with no child.
	var found []int
	var below []procs.Proc
	deadline := time.Now().Add(10 * time.Second)
	for {
		found, _ = r.Find(func(args []string) bool { return slices.Contains(args, marker) })
		below, _ = r.Descendants(self)
		if len(found) == 1 && len(below) >= 2 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !slices.Equal(found, []int{child}) {
		t.Fatalf("Find by command line: got %v, want [%d]", found, child)
	}
	if args, err := r.Cmdline(child); err != nil || !slices.Equal(args, []string{"/bin/sh", "-c", "sleep 30 & wait", marker}) {
		t.Errorf("child's command line: got %q %v", args, err)
	}
	if v, ok, err := r.LookupEnv(child, "NSYS_PROFILING_SESSION_ID"); err != nil || !ok || v != marker {
		t.Errorf("child's environment: got %q %v %v, want %q", v, ok, err, marker)
	}
	i := slices.IndexFunc(below, func(p procs.Proc) bool { return p.PID == child })
	if i < 0 || below[i].PPID != self || below[i].Comm != "sh" {
		t.Fatalf("the shell (pid %d) should be a child of %d named sh: %+v", child, self, below)
	}
	j := slices.IndexFunc(below, func(p procs.Proc) bool { return p.PPID == child })
	if j < 0 || below[j].Comm != "sleep" || j < i {
		t.Fatalf("the sleep should be a grandchild listed after its parent: %+v", below)
	}
	if v, ok, _ := r.LookupEnv(below[j].PID, "NSYS_PROFILING_SESSION_ID"); !ok || v != marker {
		t.Errorf("the grandchild inherits the environment: got %q %v", v, ok)
	}
}

func TestMaps(t *testing.T) {
	r, err := procs.New("")
	if err != nil {
		t.Fatal(err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// This test binary maps itself, and no CUDA driver (the CPU machine has none).
	if ok, err := r.Maps(os.Getpid(), filepath.Base(exe)); !ok || err != nil {
		t.Errorf("Maps(self, %s) = %v, %v", filepath.Base(exe), ok, err)
	}
	if ok, err := r.Maps(os.Getpid(), "libcuda.so"); ok || err != nil {
		t.Errorf("Maps(self, libcuda.so) = %v, %v", ok, err)
	}
	if _, err := r.Maps(1<<30, "x"); err == nil {
		t.Error("a process that does not exist has no maps")
	}
}

// TestOpenFiles: this process's own open file is among its fd targets, by its path.
func TestOpenFiles(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "capture-*.qdstrm")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	files, err := procs.Default.OpenFiles(os.Getpid())
	if err != nil || !slices.Contains(files, f.Name()) {
		t.Errorf("open files of this process: %v %v, want %s among them", files, err, f.Name())
	}
	if _, err := procs.Default.OpenFiles(1 << 30); err == nil {
		t.Error("a process that does not exist has no open files: want an error")
	}
}

func TestWithEnv(t *testing.T) {
	r := fake(t)
	got, err := r.WithEnv("NSYS_PROFILING_SESSION_ID", "1016019")
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, p := range got {
		pids = append(pids, p.PID)
	}
	// The target's shell and its two sleeps; not nsys-launcher (16027), whose environment
	// lacks the id, nor a process whose environ file is missing (1).
	if !slices.Equal(pids, []int{16028, 16031, 16032}) || got[0].Comm != "sh" || got[1].PPID != 16028 {
		t.Errorf("got %+v", got)
	}
	if got, _ := r.WithEnv("NSYS_PROFILING_SESSION_ID", "101601"); len(got) != 0 {
		t.Errorf("a prefix of the value matched: %+v", got)
	}
	if got, _ := r.WithEnv("NSYS_PROFILING_SESSION", "1016019"); len(got) != 0 {
		t.Errorf("a prefix of the name matched: %+v", got)
	}
}

func TestDescribe(t *testing.T) {
	r := fake(t)
	if d := r.Describe(16031); !strings.HasPrefix(d, "pid 16031 (sleep), state S") {
		t.Errorf("got %q", d)
	}
	if d := r.Describe(999999); d != "pid 999999 (gone)" {
		t.Errorf("got %q", d)
	}
	if d := procs.Default.Describe(os.Getpid()); !strings.HasPrefix(d, fmt.Sprintf("pid %d (", os.Getpid())) {
		t.Errorf("own process: %q", d)
	}
}
