package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nsys-agent/nsys-agent/nsys/procs"
	"golang.org/x/sys/unix"

	"github.com/nsys-agent/nsys-agent/internal/hostclock"
	"github.com/nsys-agent/nsys-agent/nsys"
	"github.com/nsys-agent/nsys-agent/nsys/nsystest"
)

// A fleet of real `nsys-agent run` processes on loopback for the group-window tests
// (issue 14): each launches the built-in demo target under the real nsys, with the torch
// plugin, and its own clock shift (the test hook), like hosts whose clocks disagree.

// fleetAgent is one agent process of a fleet.
type fleetAgent struct {
	url     string
	shift   time.Duration
	session string
	ready   string // the file the agent writes its URL into once it serves
	cmd     *exec.Cmd
	out     *nsystest.Buffer
	done    chan struct{} // closed once the process was waited for
}

// fleetBinaries builds what a fleet runs: the agent without the race detector (under it
// each of the 64 processes of 16 agents, their demo targets and plugins, would take
// 5–10× the memory and 2–20× the CPU, Go's documented costs, on a machine that is the
// bound already; the race detector covers the coordinator in agent/fleet's tests and
// the group CLI's) and the real torch plugin, in a plugin folder of its own.
func fleetBinaries(t *testing.T) (bin, plugins string) {
	t.Helper()
	if _, err := exec.LookPath("go"); err != nil {
		nsystest.Missing(t, "the go tool, to build the agent and its torch plugin (%v)", err)
	}
	dir := t.TempDir()
	bin = buildInto(t, filepath.Join(dir, "nsys-agent"), ".")
	plugins = filepath.Join(dir, "plugins")
	if err := os.Mkdir(plugins, 0o755); err != nil {
		t.Fatal(err)
	}
	torch := buildInto(t, filepath.Join(plugins, "nsys-agent-backend-torch"), "../nsys-agent-backend-torch")
	// 0755 whatever the umask: the plugin host skips a plugin others may write.
	if err := os.Chmod(torch, 0o755); err != nil {
		t.Fatal(err)
	}
	return bin, plugins
}

// startFleet launches one agent per shift and waits until every one serves. Every
// process runs in a process group of its own; the test's cleanup interrupts the agents
// still running (each stops its target through nsys), kills what is left of their groups
// and ends every nsys session named after prefix, so a failing test leaves nothing behind.
func startFleet(t *testing.T, bin, plugins, prefix string, shifts []time.Duration) []*fleetAgent {
	t.Helper()
	t.Cleanup(func() { cleanupSessions(prefix) }) // runs last
	dir := t.TempDir()
	fleet := make([]*fleetAgent, len(shifts))
	for i, shift := range shifts {
		a := &fleetAgent{shift: shift, session: fmt.Sprintf("%s-%02d", prefix, i), out: &nsystest.Buffer{}, done: make(chan struct{})}
		ready := filepath.Join(dir, fmt.Sprintf("ready-%02d", i))
		a.cmd = exec.Command(bin, "run", "--listen", "127.0.0.1:0", "--ready-file", ready,
			"--data-dir", filepath.Join(dir, fmt.Sprintf("data-%02d", i)), "--session", a.session,
			"--demo-ranks", "1", "--plugin-dir", plugins, "--trace", "osrt,nvtx", "--log-level", "warn")
		a.cmd.Env = append(os.Environ(), "TMPDIR="+os.TempDir(), hostclock.ShiftEnv+"="+shift.String())
		a.cmd.Stdout, a.cmd.Stderr = a.out, a.out
		// Pdeathsig: should this test's process die without its cleanup (a go test
		// timeout panics past it), each agent still shuts down as on Ctrl-C.
		a.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGINT}
		if err := a.cmd.Start(); err != nil {
			t.Fatalf("starting agent %d: %v", i, err)
		}
		go func() {
			_ = a.cmd.Wait()
			close(a.done)
		}()
		fleet[i], a.ready = a, ready
	}
	t.Cleanup(func() { stopFleet(t, fleet, 60*time.Second) })
	// Until every agent serves and every demo target (a server and its one rank worker
	// per agent) is niced, each as it appears: at full priority the targets slow every
	// launch after them.
	niced := map[int]bool{}
	deadline := time.Now().Add(3 * time.Minute)
	for {
		serving := 0
		for i, a := range fleet {
			if a.url == "" {
				if raw, err := os.ReadFile(a.ready); err == nil && strings.TrimSpace(string(raw)) != "" {
					a.url = strings.TrimSpace(string(raw))
				}
			}
			if a.url != "" {
				serving++
				continue
			}
			select {
			case <-a.done:
				t.Fatalf("agent %d ended before it served: %v\n%s", i, a.cmd.ProcessState, a.out)
			default:
			}
		}
		niceTargets(t, bin, niced)
		if serving == len(fleet) && len(niced) >= 2*len(fleet) {
			return fleet
		}
		if time.Now().After(deadline) {
			t.Fatalf("within 3 minutes, %d of %d agents serve and %d of %d demo target processes showed", serving, len(fleet), len(niced), 2*len(fleet))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// niceTargets puts the demo targets not in niced yet below everything else, and adds
// them to niced: nice 19 for their scheduling autogroups (nsys's launcher starts each
// target in a session of its own, so with sched_autogroup on, each target gets as much
// CPU as the whole rest of the machine put together, whatever its threads' nice), and
// for every thread of theirs (for a kernel without autogroups; threads made later
// inherit it). On real hosts each server has CPUs of its own; here 16 demo targets share
// two vCPUs, and their rank workers alone keep both busy (measured: CPU pressure 98 %,
// about 30 runnable threads), which made the agents' start timers up to 1.6 s late and
// the client commands 5-200× slower. Below them, the servers still step (their traces
// have events) on the CPU left over.
func niceTargets(t *testing.T, bin string, niced map[int]bool) {
	t.Helper()
	pids, err := procs.Default.Find(func(argv []string) bool {
		return len(argv) > 1 && argv[0] == bin && (argv[1] == "demo-server" || argv[1] == "demo-worker")
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, pid := range pids {
		if niced[pid] {
			continue
		}
		ag := fmt.Sprintf("/proc/%d/autogroup", pid)
		if _, err := os.Stat(ag); err == nil {
			if err := os.WriteFile(ag, []byte("19"), 0); err != nil {
				t.Fatalf("nice 19 for the autogroup of demo target %d: %v", pid, err)
			}
		}
		tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
		if err != nil {
			continue // it ended
		}
		for _, task := range tasks {
			tid, err := strconv.Atoi(task.Name())
			if err != nil {
				continue
			}
			if err := unix.Setpriority(unix.PRIO_PROCESS, tid, 19); err != nil && !errors.Is(err, unix.ESRCH) {
				t.Fatalf("nice 19 for thread %d of demo target %d: %v", tid, pid, err)
			}
		}
		niced[pid] = true
	}
}

// stopFleet interrupts every agent still running, as Ctrl-C would (each finishes its
// window and stops its target through nsys), waits up to within for all, then kills the
// process group of any left. It reports an agent that had to be killed or that ended
// with an error.
func stopFleet(t *testing.T, fleet []*fleetAgent, within time.Duration) {
	t.Helper()
	for _, a := range fleet {
		if a.running() {
			_ = a.cmd.Process.Signal(os.Interrupt)
		}
	}
	deadline := time.After(within)
	for i, a := range fleet {
		select {
		case <-a.done:
		case <-deadline:
		}
		if a.running() {
			t.Errorf("agent %d (%s) still ran %s after Ctrl-C: killed\n%s", i, a.url, within, a.out)
			_ = syscall.Kill(-a.cmd.Process.Pid, syscall.SIGKILL)
			<-a.done
		}
	}
}

// kill ends the agent process at once, as a host that dies would: its server keeps
// running under nsys (an agent started again on its data dir would adopt it).
func (a *fleetAgent) kill(t *testing.T) {
	t.Helper()
	if err := a.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-a.done
}

func (a *fleetAgent) running() bool {
	select {
	case <-a.done:
		return false
	default:
		return true
	}
}

// liveSessions lists the nsys sessions named after prefix that are not shut down.
func liveSessions(t *testing.T, prefix string) []nsys.Session {
	t.Helper()
	path := nsystest.Require(t)
	list, err := nsys.ListSessions(context.Background(), nsys.NewExecRunner(path))
	if err != nil {
		t.Fatalf("nsys sessions list: %v", err)
	}
	var out []nsys.Session
	for _, s := range list {
		if strings.HasPrefix(s.Name, prefix) && s.State != nsys.StateShutdown {
			out = append(out, s)
		}
	}
	return out
}

// agentsFlag is the fleet's --agent value.
func agentsFlag(fleet []*fleetAgent) string {
	urls := make([]string, len(fleet))
	for i, a := range fleet {
		urls[i] = a.url
	}
	return strings.Join(urls, ",")
}

// each runs fn for every agent at once and waits.
func eachAgent(fleet []*fleetAgent, fn func(i int, a *fleetAgent)) {
	var wg sync.WaitGroup
	for i, a := range fleet {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fn(i, a)
		}()
	}
	wg.Wait()
}
