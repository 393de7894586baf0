package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/nsys-agent/nsys-agent/agent/triggers"
	"github.com/nsys-agent/nsys-agent/agent/windows"
)

// metrics-server FILE: serve /metrics with one gauge, demo_gen_throughput, whose value
// is FILE's content at each scrape (a script moves it with cp); $METRICS is the URL.
// The demo target exports no metrics, and a metric trigger needs a real HTTP scrape.
func cmdMetricsServer(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: metrics-server FILE")
	}
	file := ts.MkAbs(args[0])
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, err := os.ReadFile(file)
		if err != nil || r.URL.Path != "/metrics" {
			http.Error(w, "no value", http.StatusNotFound)
			return
		}
		fmt.Fprintf(w, "# HELP demo_gen_throughput Generation throughput (token/s).\n# TYPE demo_gen_throughput gauge\ndemo_gen_throughput %s\n", strings.TrimSpace(string(raw)))
	}))
	ts.Defer(srv.Close)
	ts.Setenv("METRICS", srv.URL)
}

// trigger-fires NAME N MINGAP TIMEOUT: wait until the agent's trigger NAME opened N
// windows (more is a failure), then check that consecutive fires are at least MINGAP
// apart (its cooldown), that the agent's windows opened by it are exactly those N, each
// recording the trigger and the value that fired it, and that each ends ready with a
// report.
func cmdTriggerFires(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 4 {
		ts.Fatalf("usage: trigger-fires NAME N MINGAP TIMEOUT")
	}
	name := args[0]
	n, err := strconv.Atoi(args[1])
	ts.Check(err)
	gap, err := time.ParseDuration(args[2])
	ts.Check(err)
	timeout, err := time.ParseDuration(args[3])
	ts.Check(err)
	base := ts.Getenv("AGENT")
	var st triggers.Status
	for deadline := time.Now().Add(timeout); ; time.Sleep(200 * time.Millisecond) {
		var list []triggers.Status
		getJSON(ts, base+"/v1/triggers", &list)
		i := slices.IndexFunc(list, func(s triggers.Status) bool { return s.Name == name })
		if i < 0 {
			ts.Fatalf("no trigger %q in %+v", name, list)
		}
		st = list[i]
		if st.Fired > n {
			ts.Fatalf("trigger %s opened %d windows, want %d: %+v", name, st.Fired, n, st.Fires)
		}
		if st.Fired == n {
			break
		}
		if time.Now().After(deadline) {
			ts.Fatalf("trigger %s opened %d of %d windows within %s; status %+v", name, st.Fired, n, timeout, st)
		}
	}
	var ids []string
	for i, f := range st.Fires {
		ids = append(ids, f.Window)
		if i > 0 && f.At.Sub(st.Fires[i-1].At) < gap {
			ts.Fatalf("fires %d and %d of %s are %s apart; the cooldown is %s", i, i+1, name, f.At.Sub(st.Fires[i-1].At), gap)
		}
	}
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(200 * time.Millisecond) {
		var ws []windows.Manifest
		getJSON(ts, base+"/v1/windows", &ws)
		var opened []string
		settled := true
		for _, w := range ws {
			if w.Trigger != windows.Fired(name) {
				continue
			}
			opened = append(opened, w.ID)
			settled = settled && w.State.Terminal()
			if w.Labels["trigger"] != name || w.Labels["trigger_condition"] == "" || w.RequestedBy.Trigger != windows.Fired(name) {
				ts.Fatalf("window %s does not record its trigger: labels %v, requested by %+v", w.ID, w.Labels, w.RequestedBy)
			}
			if w.State.Terminal() && (w.State != windows.StateReady || !slices.ContainsFunc(w.Artifacts, func(a windows.Artifact) bool { return a.Kind == "nsys-rep" })) {
				ts.Fatalf("window %s ended %s (%s) with %v; want ready with a report", w.ID, w.State, w.Error, w.Artifacts)
			}
		}
		slices.Sort(opened)
		slices.Sort(ids)
		if !slices.Equal(opened, ids) {
			ts.Fatalf("windows opened by trigger %s: %v; the trigger says %v", name, opened, ids)
		}
		if settled {
			break
		}
		if time.Now().After(deadline) {
			ts.Fatalf("the windows of trigger %s did not settle within 2m", name)
		}
	}
	for _, f := range st.Fires {
		ts.Logf("trigger %s fired at %s (value %s): window %s", name, f.At.Format(time.RFC3339Nano), valueOf(f.Value), f.Window)
	}
}

func getJSON(ts *testscript.TestScript, url string, v any) {
	resp, err := http.Get(url)
	ts.Check(err)
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		ts.Fatalf("GET %s: %s", url, resp.Status)
	}
	ts.Check(json.NewDecoder(resp.Body).Decode(v))
}

func valueOf(v *float64) string {
	if v == nil {
		return "none"
	}
	return strconv.FormatFloat(*v, 'g', -1, 64)
}
