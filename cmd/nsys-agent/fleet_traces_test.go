package main

import (
	"encoding/json"
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nsys-agent/nsys-agent/internal/gztest"
)

// Reading the traces of a pulled group, independently of torchprof, to check what the
// merge did: where each host's first event lies before and after.

// chromeTrace is the part of a Kineto rank trace or a merged trace the checks read.
// Kineto writes ts in µs and baseTimeNanoseconds such that ts×1000 + baseTimeNanoseconds
// is the writing host's wall clock (ns); the merged trace's ts count from its reference
// rank's base. Merged pids are labels, "[host:TP00] 1234"; Kineto's are numbers.
type chromeTrace struct {
	BaseTimeNanoseconds int64 `json:"baseTimeNanoseconds"`
	TraceEvents         []struct {
		Ph  string          `json:"ph"`
		Ts  float64         `json:"ts"`
		Pid json.RawMessage `json:"pid"`
	} `json:"traceEvents"`
}

func readChromeTrace(t *testing.T, path string) chromeTrace {
	t.Helper()
	return gztest.ReadJSON[chromeTrace](t, path)
}

// firstRawEventNs is the host wall-clock time (ns) of the earliest complete event ("X")
// of the one rank trace in a pulled host folder.
func firstRawEventNs(t *testing.T, hostDir string) float64 {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(hostDir, "*-TP-0.trace.json.gz"))
	if len(files) != 1 {
		t.Fatalf("%s: want one rank trace, found %v", hostDir, files)
	}
	tr := readChromeTrace(t, files[0])
	first := math.Inf(1)
	for _, e := range tr.TraceEvents {
		if e.Ph == "X" {
			first = min(first, e.Ts)
		}
	}
	if math.IsInf(first, 1) {
		t.Fatalf("%s: no complete event", files[0])
	}
	return first*1000 + float64(tr.BaseTimeNanoseconds)
}

// firstMergedEventNs is, per host, the time (ns on the merged trace's axis) of the
// earliest complete event of that host's ranks.
func firstMergedEventNs(t *testing.T, path string) map[string]float64 {
	t.Helper()
	tr := readChromeTrace(t, path)
	first := map[string]float64{}
	for _, e := range tr.TraceEvents {
		if e.Ph != "X" {
			continue
		}
		var label string
		if err := json.Unmarshal(e.Pid, &label); err != nil || !strings.HasPrefix(label, "[") {
			t.Fatalf("%s: pid %s is not a host-qualified label", path, e.Pid)
		}
		host, _, ok := strings.Cut(label[1:], ":")
		if !ok {
			t.Fatalf("%s: pid %q names no host", path, label)
		}
		if v, seen := first[host]; !seen || e.Ts*1000 < v {
			first[host] = e.Ts * 1000
		}
	}
	return first
}

// spread is the largest minus the smallest value.
func spreadOf(vals []float64) float64 {
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, v := range vals {
		lo, hi = min(lo, v), max(hi, v)
	}
	return hi - lo
}
