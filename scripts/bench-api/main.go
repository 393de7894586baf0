// Command bench-api measures the agent's read routes under load (`make bench`): the agent
// runs the demo target under the real nsys with a window capturing and a data dir of
// -windows ready windows, and each route gets -rate requests a second for -for, sent on
// schedule (open loop: a slow answer does not slow the sender, so queueing shows in the
// latencies). It reports p50, p99 and max per route, and any non-200 answer.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nsys-agent/nsys-agent/agent/windows"
)

func main() {
	bin := flag.String("bin", "bin/nsys-agent", "the nsys-agent binary")
	nWindows := flag.Int("windows", 232, "ready windows in the data dir")
	rate := flag.Int("rate", 1000, "requests per second per route")
	dur := flag.Duration("for", 10*time.Second, "load duration per route")
	target := flag.String("target", "", "server command instead of the demo target (e.g. \"sleep 3600\": no CPU of its own)")
	flag.Parse()
	if err := run(*bin, *nWindows, *rate, *dur, strings.Fields(*target)); err != nil {
		fmt.Fprintln(os.Stderr, "bench-api:", err)
		os.Exit(1)
	}
}

func run(bin string, nWindows, rate int, dur time.Duration, target []string) error {
	work, err := os.MkdirTemp("", "nsys-agent-bench-api-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	data := filepath.Join(work, "data")
	if err := seed(data, nWindows); err != nil {
		return err
	}
	ready := filepath.Join(work, "ready")
	args := []string{"run", "--listen", "127.0.0.1:0", "--ready-file", ready, "--data-dir", data, "--log-level", "warn"}
	if len(target) == 0 {
		args = append(args, "--demo-ranks", "2")
	} else {
		args = append(append(args, "--"), target...)
	}
	agent := exec.Command(bin, args...)
	agent.Stderr = os.Stderr
	if err := agent.Start(); err != nil {
		return err
	}
	defer func() {
		_ = agent.Process.Signal(os.Interrupt)
		_ = agent.Wait()
	}()
	url, err := waitReady(ready, time.Minute)
	if err != nil {
		return err
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256, MaxConnsPerHost: 256}, Timeout: 10 * time.Second}
	// A window capturing while the load runs, as the issue asks.
	resp, err := client.Post(url+"/v1/windows", "application/json", strings.NewReader(`{"name":"under-load"}`))
	if err != nil {
		return err
	}
	var w windows.Manifest
	_ = json.NewDecoder(resp.Body).Decode(&w)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		return fmt.Errorf("opening the window: HTTP %d", resp.StatusCode)
	}
	fmt.Printf("agent %s, %d ready windows + 1 capturing, %d req/s per route for %s\n\n", url, nWindows, rate, dur)
	fmt.Printf("%-26s %8s %9s %9s %9s %7s\n", "route", "requests", "p50", "p99", "max", "errors")
	for _, route := range []string{"/v1/health", "/v1/status", "/v1/windows", "/v1/windows/" + w.ID} {
		lat, errs := load(client, url+route, rate, dur)
		slices.Sort(lat)
		q := func(p float64) time.Duration { return lat[min(len(lat)-1, int(p*float64(len(lat))))] }
		name := route
		if strings.HasPrefix(route, "/v1/windows/w") {
			name = "/v1/windows/{id}"
		}
		fmt.Printf("%-26s %8d %9s %9s %9s %7d\n", name, len(lat), round(q(0.5)), round(q(0.99)), round(lat[len(lat)-1]), errs)
	}
	resp, err = client.Post(url+"/v1/windows/"+w.ID+"/stop", "application/json", nil)
	if err == nil {
		resp.Body.Close()
	}
	return nil
}

func round(d time.Duration) string { return d.Round(10 * time.Microsecond).String() }

// load sends GET url rate times a second for dur, each at its scheduled time, and returns
// the latencies of the answers and the number of failures (errors and non-200s).
func load(client *http.Client, url string, rate int, dur time.Duration) ([]time.Duration, int) {
	n := int(dur.Seconds() * float64(rate))
	interval := time.Second / time.Duration(rate)
	lat := make([]time.Duration, 0, n)
	var mu sync.Mutex
	var wg sync.WaitGroup
	errs := 0
	begin := time.Now()
	for i := 0; i < n; i++ {
		if d := time.Until(begin.Add(time.Duration(i) * interval)); d > 0 {
			time.Sleep(d)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			t0 := time.Now()
			resp, err := client.Get(url)
			ok := err == nil && resp.StatusCode == http.StatusOK
			if err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			d := time.Since(t0)
			mu.Lock()
			lat = append(lat, d)
			if !ok {
				errs++
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	return lat, errs
}

// seed writes n ready windows, each with a small report, as a long-lived agent would
// have them.
func seed(data string, n int) error {
	store, err := windows.NewStore(data)
	if err != nil {
		return err
	}
	base := time.Now().Add(-time.Duration(n) * time.Minute)
	for i := 0; i < n; i++ {
		at := base.Add(time.Duration(i) * time.Minute).UTC()
		id := windows.NewID(at)
		dir, _ := store.WindowDir(id)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return err
		}
		rep := filepath.Join(dir, "report.nsys-rep")
		if err := os.WriteFile(rep, []byte(strings.Repeat("x", 4096)), 0o600); err != nil {
			return err
		}
		a, err := windows.Describe(rep, "nsys-rep", nil)
		if err != nil {
			return err
		}
		m := &windows.Manifest{ID: id, Name: fmt.Sprintf("w%d", i), Backend: "nsys", State: windows.StateReady, Trigger: windows.TriggerAPI,
			RequestedBy: windows.Requester{Remote: "127.0.0.1:1", Trigger: windows.TriggerAPI}, CreatedAt: at, StartedAt: &at, StoppedAt: &at, FinishedAt: &at,
			Artifacts: []windows.Artifact{a}, Summary: json.RawMessage(`{"ranks":2,"slowest_rank":"pid 628","imbalance":1.464,"reason":"pid 628 computes 393.976 ms on the GPU, 124.824 ms more than pid 627 (1.46×)"}`)}
		if err := store.Save(m); err != nil {
			return err
		}
	}
	return nil
}

func waitReady(file string, within time.Duration) (string, error) {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if raw, err := os.ReadFile(file); err == nil && len(strings.TrimSpace(string(raw))) > 0 {
			return strings.TrimSpace(string(raw)), nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return "", fmt.Errorf("the agent did not write %s within %s", file, within)
}
