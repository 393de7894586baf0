// Command bench-fleet measures group windows (issue 14) on a fleet of real agents on
// this machine (`make bench-fleet`): for each -n, N `nsys-agent run` processes on
// loopback, each running the built-in demo target (one rank) under the real nsys with the
// torch plugin, their clocks shifted by the test hook. Over -reps group windows it
// times the start through agent/fleet over HTTP — split into its phases: the clock
// probes, the schedule (one create per agent), the acknowledgements after the start time
// T, storing the record — then `nsys-agent stop GROUP` (until every window is ready),
// `pull GROUP` and `merge` of the pulled folder, and reports the start skew, the fire
// skew and the offsets' worst error against the true shifts. Medians over the reps.
//
// The demo targets run at nice 19 (see niceTargets): on this machine they stand for
// servers that have hosts of their own.
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nsys-agent/nsys-agent/agent/fleet"
	"github.com/nsys-agent/nsys-agent/agent/windows"
)

func main() {
	bin := flag.String("bin", "bin/nsys-agent", "the nsys-agent binary")
	plugins := flag.String("plugin-dir", "", "where nsys-agent-backend-torch is (default: the binary's folder, as make build puts it)")
	sizes := flag.String("n", "16,32,64", "fleet sizes, comma-separated")
	reps := flag.Int("reps", 3, "group windows per fleet size")
	conc := flag.Int("concurrency", fleet.DefaultConcurrency, "the coordinator's fan-out bound (agents talked to at once)")
	capture := flag.Duration("capture", 2*time.Second, "how long each window captures before the stop")
	flag.Parse()
	abs, err := filepath.Abs(*bin)
	if err != nil {
		fail(err)
	}
	if *plugins == "" {
		*plugins = filepath.Dir(abs)
	}
	fmt.Printf("bench-fleet: %s, torch plugin from %s, fan-out %d, %d reps, windows of %s; %d CPUs\n\n",
		abs, *plugins, *conc, *reps, *capture, numCPU())
	fmt.Printf("%6s %9s %8s | %8s %7s %7s %8s %8s %7s %9s | %9s %9s %9s | %8s %8s %8s %9s\n",
		"agents", "ready", "memory", "start", "lead", "clocks", "schedule", "ack>T", "record", "rec.bytes",
		"skew", "fire skew", "off.err", "stop", "pull", "merge", "merge RSS")
	for _, f := range strings.Split(*sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 2 {
			fail(fmt.Errorf("-n %q: want sizes of 2 or more", f))
		}
		if err := benchSize(abs, *plugins, n, *reps, *conc, *capture); err != nil {
			fail(fmt.Errorf("%d agents: %w", n, err))
		}
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "bench-fleet:", err)
	os.Exit(1)
}

// sample is one group window's figures.
type sample struct {
	start, lead, clocks, schedule, ack, record time.Duration
	skew, fireSkew, offErr                     time.Duration
	stop, pull, merge                          time.Duration
	mergeRSS                                   int64
	recordBytes                                int64 // the group records sent, in all
}

func benchSize(bin, plugins string, n, reps, conc int, capture time.Duration) (err error) {
	work, err := os.MkdirTemp("", "nsys-agent-bench-fleet-")
	if err != nil {
		return err
	}
	defer func() {
		if err == nil {
			os.RemoveAll(work)
		} else {
			fmt.Fprintf(os.Stderr, "bench-fleet: the agents' logs and data are kept in %s\n", work)
		}
	}()
	prefix := fmt.Sprintf("bf%d", time.Now().UnixNano()%1_000_000)
	began := time.Now()
	agents, err := launch(bin, plugins, work, prefix, n)
	defer shutdown(agents, prefix, 2*time.Minute)
	if err != nil {
		return err
	}
	ready := time.Since(began)
	time.Sleep(5 * time.Second) // let the launch settle before memory is read
	mem := fleetPss(bin, plugins)

	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	defer client.CloseIdleConnections()
	urls := make([]string, n)
	for i, a := range agents {
		urls[i] = a.url
	}
	var samples []sample
	for r := range reps {
		s, err := oneGroup(bin, client, agents, urls, conc, capture, filepath.Join(work, fmt.Sprintf("rep%d", r)))
		if err != nil {
			return fmt.Errorf("group window %d: %w", r+1, err)
		}
		samples = append(samples, s)
	}
	med := func(get func(sample) time.Duration) string {
		var v []time.Duration
		for _, s := range samples {
			v = append(v, get(s))
		}
		slices.Sort(v)
		return short(v[len(v)/2])
	}
	var rss []int64
	for _, s := range samples {
		rss = append(rss, s.mergeRSS)
	}
	slices.Sort(rss)
	fmt.Printf("%6d %9s %6dMB | %8s %7s %7s %8s %8s %7s %7dkB | %9s %9s %9s | %8s %8s %8s %7dMB\n",
		n, short(ready), mem>>20,
		med(func(s sample) time.Duration { return s.start }), med(func(s sample) time.Duration { return s.lead }),
		med(func(s sample) time.Duration { return s.clocks }), med(func(s sample) time.Duration { return s.schedule }),
		med(func(s sample) time.Duration { return s.ack }), med(func(s sample) time.Duration { return s.record }), samples[len(samples)/2].recordBytes>>10,
		med(func(s sample) time.Duration { return s.skew }), med(func(s sample) time.Duration { return s.fireSkew }),
		med(func(s sample) time.Duration { return s.offErr }),
		med(func(s sample) time.Duration { return s.stop }), med(func(s sample) time.Duration { return s.pull }),
		med(func(s sample) time.Duration { return s.merge }), rss[len(rss)/2]>>20)
	return nil
}

// oneGroup opens one group window on every agent, lets it capture, stops, pulls and
// merges it.
func oneGroup(bin string, client *http.Client, agents []*agentProc, urls []string, conc int, capture time.Duration, dir string) (sample, error) {
	var s sample
	ph := newPhases()
	var recordBytes atomic.Int64
	ms := make([]fleet.Member, len(agents))
	for i, a := range agents {
		ms[i] = &member{base: a.url, client: client, ph: ph, recordBytes: &recordBytes}
	}
	began := time.Now()
	res, err := fleet.New(fleet.Options{Concurrency: conc}).Start(context.Background(), ms,
		fleet.Spec{Request: windows.CreateRequest{Backend: "torch"}})
	if err != nil {
		return s, err
	}
	s.start = time.Since(began)
	rec := res.Record
	s.lead = rec.StartAt.Sub(began)
	s.clocks, s.schedule, s.record = ph.took("clock"), ph.took("schedule"), ph.took("record")
	s.ack = ph.from(rec.StartAt, "ack")
	s.skew, s.fireSkew = time.Duration(rec.SkewNs), time.Duration(rec.FireSkewNs)
	s.recordBytes = recordBytes.Load()
	for i, m := range rec.Members {
		s.offErr = max(s.offErr, (time.Duration(m.OffsetNs) - agents[i].shift).Abs())
	}
	time.Sleep(capture)
	all := strings.Join(urls, ",")
	var err2 error
	if s.stop, _, err2 = runCLI(bin, "stop", rec.ID, "--agent", all); err2 != nil {
		return s, err2
	}
	if s.pull, _, err2 = runCLI(bin, "pull", rec.ID, "--agent", all, "--dir", dir); err2 != nil {
		return s, err2
	}
	if s.merge, s.mergeRSS, err2 = runCLI(bin, "merge", dir); err2 != nil {
		return s, err2
	}
	return s, nil
}

// runCLI runs the binary as a client and returns its wall time and peak RSS.
func runCLI(bin string, args ...string) (time.Duration, int64, error) {
	cmd := exec.Command(bin, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	began := time.Now()
	err := cmd.Run()
	took := time.Since(began)
	if err != nil {
		return took, 0, fmt.Errorf("nsys-agent %s: %v\n%s", args[0], err, out.String())
	}
	var rss int64
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		rss = ru.Maxrss << 10
	}
	return took, rss, nil
}

// short rounds a duration for the table.
func short(d time.Duration) string {
	switch {
	case d >= 10*time.Second:
		return d.Round(100 * time.Millisecond).String()
	case d >= time.Second:
		return d.Round(10 * time.Millisecond).String()
	case d >= 10*time.Millisecond:
		return d.Round(100 * time.Microsecond).String()
	default:
		return d.Round(time.Microsecond).String()
	}
}

func numCPU() int {
	raw, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return 0
	}
	return bytes.Count(raw, []byte("\nprocessor")) + 1
}
