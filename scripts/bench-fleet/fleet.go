package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nsys-agent/nsys-agent/internal/hostclock"
	"github.com/nsys-agent/nsys-agent/nsys"
	"github.com/nsys-agent/nsys-agent/nsys/procs"
)

// agentProc is one `nsys-agent run` of the fleet.
type agentProc struct {
	url   string
	shift time.Duration
	cmd   *exec.Cmd
	ready string
	log   string
	done  chan struct{}
}

// launch starts n agents, each on the demo target (one rank) under the real nsys with
// the torch plugin, agent i's clock shifted by (i - n/2) × 250 ms, and waits until all
// serve. At most launchBatch agents are starting at once, and every demo target is put
// at nice 19 as soon as it appears: 32 agents launched at once, their targets at full
// priority, left one still not serving after 10 minutes here (the agents' nsys launches
// take turns under a lock, each slower the busier the machine).
func launch(bin, plugins, work, prefix string, n int) ([]*agentProc, error) {
	const launchBatch = 8
	var fleet []*agentProc
	niced := map[int]bool{}
	deadline := time.Now().Add(10 * time.Minute)
	// waitServing waits until at most limit of the agents launched are not serving yet.
	waitServing := func(limit int) error {
		for {
			starting := 0
			for i, a := range fleet {
				if a.url != "" {
					continue
				}
				if raw, err := os.ReadFile(a.ready); err == nil && strings.TrimSpace(string(raw)) != "" {
					a.url = strings.TrimSpace(string(raw))
					continue
				}
				select {
				case <-a.done:
					return fmt.Errorf("agent %d ended before it served (see %s)", i, a.log)
				default:
				}
				starting++
			}
			if err := niceTargets(bin, niced); err != nil {
				return err
			}
			if starting <= limit {
				return nil
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%d agents did not serve within 10 minutes (see the logs in %s)", starting, work)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	for i := range n {
		if err := waitServing(launchBatch - 1); err != nil {
			return fleet, err
		}
		a := &agentProc{shift: time.Duration(i-n/2) * 250 * time.Millisecond, done: make(chan struct{}),
			ready: filepath.Join(work, fmt.Sprintf("ready-%03d", i)), log: filepath.Join(work, fmt.Sprintf("agent-%03d.log", i))}
		logf, err := os.Create(a.log)
		if err != nil {
			return fleet, err
		}
		a.cmd = exec.Command(bin, "run", "--listen", "127.0.0.1:0", "--ready-file", a.ready,
			"--data-dir", filepath.Join(work, fmt.Sprintf("data-%03d", i)), "--session", fmt.Sprintf("%s-%03d", prefix, i),
			"--demo-ranks", "1", "--plugin-dir", plugins, "--trace", "osrt,nvtx", "--log-level", "warn")
		a.cmd.Env = append(os.Environ(), hostclock.ShiftEnv+"="+a.shift.String())
		a.cmd.Stdout, a.cmd.Stderr = logf, logf
		// Pdeathsig: if the bench dies, each agent still shuts down as on Ctrl-C.
		a.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGINT}
		if err := a.cmd.Start(); err != nil {
			logf.Close()
			return fleet, err
		}
		go func() {
			_ = a.cmd.Wait()
			logf.Close()
			close(a.done)
		}()
		fleet = append(fleet, a)
	}
	if err := waitServing(0); err != nil {
		return fleet, err
	}
	// Every target has its rank worker: nice those started since the last look.
	for deadline := time.Now().Add(time.Minute); len(niced) < 2*n; time.Sleep(200 * time.Millisecond) {
		if err := niceTargets(bin, niced); err != nil {
			return fleet, err
		}
		if time.Now().After(deadline) {
			return fleet, fmt.Errorf("%d demo target processes, want %d", len(niced), 2*n)
		}
	}
	return fleet, nil
}

// shutdown interrupts every agent (each stops its target through nsys), kills what is
// left after within, and ends every session named after prefix.
func shutdown(fleet []*agentProc, prefix string, within time.Duration) {
	for _, a := range fleet {
		if a != nil {
			_ = a.cmd.Process.Signal(os.Interrupt)
		}
	}
	deadline := time.After(within)
	for _, a := range fleet {
		if a == nil {
			continue
		}
		select {
		case <-a.done:
		case <-deadline:
			_ = syscall.Kill(-a.cmd.Process.Pid, syscall.SIGKILL)
			<-a.done
		}
	}
	if path, err := nsys.Locate(""); err == nil {
		r := nsys.NewExecRunner(path)
		if list, err := nsys.ListSessions(context.Background(), r); err == nil {
			for _, s := range list {
				if strings.HasPrefix(s.Name, prefix) && s.State != nsys.StateShutdown {
					(&nsys.Controller{Runner: r, Session: s.Name}).Kill(context.Background())
				}
			}
		}
	}
}

// niceTargets puts the demo targets not in niced yet below the agents and the
// coordinator, and adds them to niced: nice 19 for their scheduling autogroups (nsys's
// launcher starts each in a session of its own, and with sched_autogroup each session
// gets as much CPU as everything else together) and for every thread. On real hosts each
// server has CPUs of its own; here they share the machine, and from 16 on their rank
// workers alone keep two vCPUs busy (cmd/nsys-agent/fleet_agents_test.go measured what
// that does to the agents' timers).
func niceTargets(bin string, niced map[int]bool) error {
	pids, err := procs.Default.Find(func(argv []string) bool {
		return len(argv) > 1 && argv[0] == bin && (argv[1] == "demo-server" || argv[1] == "demo-worker")
	})
	if err != nil {
		return err
	}
	for _, pid := range pids {
		if niced[pid] {
			continue
		}
		if ag := fmt.Sprintf("/proc/%d/autogroup", pid); fileExists(ag) {
			if err := os.WriteFile(ag, []byte("19"), 0); err != nil {
				return fmt.Errorf("autogroup of %d: %w", pid, err)
			}
		}
		tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
		if err != nil {
			continue // it ended
		}
		for _, task := range tasks {
			if tid, err := strconv.Atoi(task.Name()); err == nil {
				if err := unix.Setpriority(unix.PRIO_PROCESS, tid, 19); err != nil && !errors.Is(err, unix.ESRCH) {
					return err
				}
			}
		}
		niced[pid] = true
	}
	return nil
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// fleetPss is the proportional set size of every process of the fleet, in bytes: the
// agents, their plugins and demo targets (this binary or the plugin folder's), and nsys's
// own processes (the bench assumes no other nsys runs meanwhile).
func fleetPss(bin, plugins string) int64 {
	pids, err := procs.Default.Find(func(argv []string) bool {
		return len(argv) > 0 && (argv[0] == bin || strings.HasPrefix(argv[0], plugins+"/") ||
			strings.Contains(argv[0], "nsight-systems") || filepath.Base(argv[0]) == "nsys")
	})
	if err != nil {
		return 0
	}
	var total int64
	for _, pid := range pids {
		f, err := os.Open(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if rest, ok := strings.CutPrefix(sc.Text(), "Pss:"); ok {
				kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
				total += kb << 10
			}
		}
		f.Close()
	}
	return total
}
