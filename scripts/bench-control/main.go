// Command bench-control measures the agent's control overhead against bare nsys on the
// same machine (`make bench`):
//
//   - start: from invoking `nsys-agent start` until `nsys sessions list` shows the
//     session in Collection, next to the same for a bare `nsys start` (same options) on
//     the same session while the agent is idle, as a ratio;
//   - stop: how long `POST /v1/windows/{id}/stop` takes to answer (finalizing continues
//     in the background), and the whole `nsys-agent stop --no-wait` command.
//
// Iterations alternate between the two so load changes hit both alike; medians are
// reported. It needs a real nsys and the built binary.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/nsys-agent/nsys-agent/nsys"
)

var target = []string{"/bin/sh", "-c", "while :; do i=0; while [ $i -lt 2000 ]; do i=$((i+1)); done; sleep 0.05; done"}

func main() {
	bin := flag.String("bin", "bin/nsys-agent", "the nsys-agent binary")
	n := flag.Int("n", 30, "windows per side")
	flag.Parse()
	if err := run(*bin, *n); err != nil {
		fmt.Fprintln(os.Stderr, "bench-control:", err)
		os.Exit(1)
	}
}

func run(bin string, n int) error {
	ctx := context.Background()
	path, err := nsys.Locate("")
	if err != nil {
		return err
	}
	runner := nsys.NewExecRunner(path)
	info, err := nsys.Probe(ctx, runner)
	if err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "nsys-agent-bench-control-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)

	// One target under `nsys-agent run` in launch mode. The bare side drives the same
	// session with nsys commands while the agent is idle, so both measure one session.
	agentSession := fmt.Sprintf("benchagent%d", os.Getpid())
	bareSession := agentSession
	bareCtl := &nsys.Controller{Runner: runner, Info: info, Session: bareSession, Mode: nsys.ModeLaunch}
	ready := filepath.Join(work, "ready")
	agentCmd := exec.Command(bin, append([]string{"run", "--listen", "127.0.0.1:0", "--ready-file", ready, "--data-dir", filepath.Join(work, "data"),
		"--arm", "launch", "--session", agentSession, "--log-level", "warn", "--"}, target...)...)
	agentLog, _ := os.Create(filepath.Join(work, "agent.log"))
	agentCmd.Stdout, agentCmd.Stderr = agentLog, agentLog
	if err := agentCmd.Start(); err != nil {
		return err
	}
	defer func() {
		_ = agentCmd.Process.Signal(os.Interrupt)
		_ = agentCmd.Wait()
	}()
	url, err := waitFile(ready, 2*time.Minute)
	if err != nil {
		return err
	}

	var bareStart, agentStart, apiStart, apiStop, cliStop []time.Duration
	for i := 0; i < n; i++ {
		// Bare: nsys start, until Collection is listed.
		dir := filepath.Join(work, fmt.Sprintf("bare%d", i))
		_ = os.MkdirAll(dir, 0o700)
		startArgs := nsys.StartArgs(info.Caps, nsys.ModeLaunch, bareSession, filepath.Join(dir, "report"), false)
		d, err := timeToCollection(ctx, runner, bareSession, exec.Command(path, startArgs...))
		if err != nil {
			return fmt.Errorf("bare nsys start: %w", err)
		}
		bareStart = append(bareStart, d)
		if _, err := bareCtl.Stop(ctx, nsys.Window{Dir: dir}); err != nil {
			return fmt.Errorf("bare stop: %w", err)
		}

		// Agent through the CLI, until Collection is listed.
		// The agent refreshes its view of the session every 2 s; give it one refresh after
		// the bare window, as a user's windows are not preceded by someone else's.
		time.Sleep(2500 * time.Millisecond)
		d, err = timeToCollection(ctx, runner, agentSession, exec.Command(bin, "start", "--agent", url))
		if err != nil {
			return fmt.Errorf("nsys-agent start: %w", err)
		}
		agentStart = append(agentStart, d)
		t0 := time.Now()
		if out, err := exec.Command(bin, "stop", "--agent", url, "--no-wait").CombinedOutput(); err != nil {
			return fmt.Errorf("nsys-agent stop: %v: %s", err, out)
		}
		cliStop = append(cliStop, time.Since(t0))
		if err := waitIdle(url); err != nil {
			return err
		}

		// Agent through the API alone (no CLI process), start and stop answer times.
		t0 = time.Now()
		id, err := post(url+"/v1/windows", http.StatusCreated)
		if err != nil {
			return err
		}
		apiStart = append(apiStart, time.Since(t0))
		t0 = time.Now()
		if _, err := post(url+"/v1/windows/"+id+"/stop", http.StatusAccepted); err != nil {
			return err
		}
		apiStop = append(apiStop, time.Since(t0))
		if err := waitIdle(url); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "\rwindow %d/%d", i+1, n)
	}
	fmt.Fprintln(os.Stderr)

	host, _ := os.Hostname()
	ratio := float64(median(agentStart)) / float64(median(bareStart))
	fmt.Printf("nsys %s (%s), one session, %d windows per side, machine %s, %s\n\n", info.Version, path, n, host, cpuModel())
	fmt.Printf("| measure | median | min | max |\n|---|---|---|---|\n")
	row := func(name string, d []time.Duration) {
		fmt.Printf("| %s | %s | %s | %s |\n", name, ms(median(d)), ms(minD(d)), ms(maxD(d)))
	}
	row("bare `nsys start` → Collection listed", bareStart)
	row("`nsys-agent start` (CLI) → Collection listed", agentStart)
	row("`POST /v1/windows` answered (capturing, checked)", apiStart)
	row("`POST /v1/windows/{id}/stop` answered", apiStop)
	row("`nsys-agent stop --no-wait` (CLI)", cliStop)
	fmt.Printf("\nstart ratio agent/bare: %.3f (target ≤ 1.10)\n", ratio)
	fmt.Printf("stop answer median: %s (target < 100 ms)\n", ms(median(apiStop)))
	return nil
}

func waitFile(p string, d time.Duration) (string, error) {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if raw, err := os.ReadFile(p); err == nil && len(bytes.TrimSpace(raw)) > 0 {
			return strings.TrimSpace(string(raw)), nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return "", fmt.Errorf("the agent did not come up within %s", d)
}

// timeToCollection runs cmd and, at the same time, lists sessions back to back until
// the session shows Collection: the time from invoking the command to the state, whatever
// the command does after reaching it. Both sides are observed the same way.
func timeToCollection(ctx context.Context, r nsys.Runner, session string, cmd *exec.Cmd) (time.Duration, error) {
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	cmdErr := make(chan error, 1)
	go func() { cmdErr <- cmd.Wait() }()
	deadline := t0.Add(30 * time.Second)
	var seen time.Duration
	for seen == 0 && time.Now().Before(deadline) {
		list, err := nsys.ListSessions(ctx, r)
		if err != nil {
			return 0, err
		}
		if s, ok := nsys.Lookup(list, session); ok && s.State == nsys.StateCollection {
			seen = time.Since(t0)
		}
	}
	if err := <-cmdErr; err != nil {
		return 0, fmt.Errorf("%v: %s", err, out.String())
	}
	if seen == 0 {
		return 0, fmt.Errorf("session %s never reached Collection", session)
	}
	return seen, nil
}

// waitIdle waits until the agent has no active window and the last one is terminal.
func waitIdle(url string) error {
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		resp, err := http.Get(url + "/v1/windows")
		if err != nil {
			return err
		}
		var ws []struct {
			State string `json:"state"`
		}
		err = json.NewDecoder(resp.Body).Decode(&ws)
		resp.Body.Close()
		if err != nil {
			return err
		}
		busy := false
		for _, w := range ws {
			if w.State != "ready" && w.State != "failed" && w.State != "cancelled" {
				busy = true
			}
		}
		if !busy {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("windows did not finish")
}

func post(url string, want int) (string, error) {
	resp, err := http.Post(url, "application/json", strings.NewReader("{}"))
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var m struct {
		ID string `json:"id"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&m)
	if resp.StatusCode != want {
		return "", fmt.Errorf("POST %s: %s", url, resp.Status)
	}
	return m.ID, nil
}

func median(d []time.Duration) time.Duration {
	s := append([]time.Duration(nil), d...)
	slices.Sort(s)
	return s[len(s)/2]
}

func minD(d []time.Duration) time.Duration {
	m := d[0]
	for _, v := range d {
		if v < m {
			m = v
		}
	}
	return m
}

func maxD(d []time.Duration) time.Duration {
	m := d[0]
	for _, v := range d {
		if v > m {
			m = v
		}
	}
	return m
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }

func cpuModel() string {
	raw, _ := os.ReadFile("/proc/cpuinfo")
	for _, line := range strings.Split(string(raw), "\n") {
		if strings.HasPrefix(line, "model name") {
			if i := strings.IndexByte(line, ':'); i >= 0 {
				return strings.TrimSpace(line[i+1:]) + fmt.Sprintf(" (%d CPUs)", countCPU(raw))
			}
		}
	}
	return "unknown CPU"
}

func countCPU(cpuinfo []byte) int { return bytes.Count(cpuinfo, []byte("\nprocessor")) + 1 }
