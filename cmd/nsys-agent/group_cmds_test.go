package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/nsys-agent/nsys-agent/agent/fleet"
	"github.com/nsys-agent/nsys-agent/agent/windows"
)

// Commands of testdata/script/group*.txtar (issue 14: group windows on real agents).

// build-plugin NAME DIR: build the real backend plugin nsys-agent-backend-NAME into DIR
// (made 0755, as the plugin host wants its folder), as `make build` puts it beside the
// agent. Built per script: the go build cache makes it a link.
func cmdBuildPlugin(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: build-plugin NAME DIR")
	}
	dir := ts.MkAbs(args[1])
	ts.Check(os.MkdirAll(dir, 0o755))
	ts.Check(os.Chmod(dir, 0o755))
	name := "nsys-agent-backend-" + args[0]
	// The test runs in cmd/nsys-agent; the plugin's main is a sibling.
	out, err := exec.Command("go", "build", "-o", filepath.Join(dir, name), "../"+name).CombinedOutput()
	if err != nil {
		ts.Fatalf("building %s: %v\n%s", name, err, out)
	}
}

// group-window AGENT GROUP STATE[|STATE...] [TIMEOUT]: wait until AGENT's window of GROUP
// is in one of the STATEs (read over its API, GET /v1/windows/GROUP), then print it as
// JSON.
func cmdGroupWindow(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 3 {
		ts.Fatalf("usage: group-window AGENT GROUP STATE [TIMEOUT]")
	}
	timeout := optDuration(ts, args, 3, 30*time.Second)
	var last string
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		m, err := getWindow(args[0], args[1])
		if err != nil {
			last = err.Error()
			continue
		}
		last = string(m.State)
		if slices.Contains(strings.Split(args[2], "|"), last) {
			b, _ := json.MarshalIndent(m, "", "  ")
			fmt.Fprintf(ts.Stdout(), "%s\n", b)
			return
		}
	}
	ts.Fatalf("%s: window of %s not %s within %s (last: %s)", args[0], args[1], args[2], timeout, last)
}

// getWindow reads one window from an agent's API.
func getWindow(agentURL, ref string) (*windows.Manifest, error) {
	var m windows.Manifest
	if err := apiGet(agentURL+"/v1/windows/"+url.PathEscape(ref), &m); err != nil {
		return nil, err
	}
	return &m, nil
}

// apiGet decodes the JSON answer of GET u (200 only) into v.
func apiGet(u string, v any) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// check-group DIR N [AGENT=SHIFT...]: DIR is a pulled group of N hosts: DIR/group.json
// lists N members, each with a measured offset (rtt_ns > 0) and a folder DIR/<host>/
// holding its window's manifest.json (the member's window, state ready, with files);
// for each AGENT=SHIFT, that agent's offset is its clock-shift test hook, within the
// offset's uncertainty plus 1 ms (the hook shifts an agent's wall clock by exactly
// SHIFT; the millisecond leaves room for the wall clock being slewed between readings).
func cmdCheckGroup(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 2 {
		ts.Fatalf("usage: check-group DIR N [AGENT=SHIFT...]")
	}
	dir := ts.MkAbs(args[0])
	var want int
	_, err := fmt.Sscan(args[1], &want)
	ts.Check(err)
	raw, err := os.ReadFile(filepath.Join(dir, groupFileName))
	ts.Check(err)
	var rec windows.GroupRecord
	ts.Check(json.Unmarshal(raw, &rec))
	if len(rec.Members) != want {
		ts.Fatalf("%s lists %d members, want %d", groupFileName, len(rec.Members), want)
	}
	for _, m := range rec.Members {
		if m.RTTNs <= 0 || m.Host != fleet.HostDir(m.Agent) {
			ts.Fatalf("member %s: rtt %d, host %q (want a measured offset and folder %s)", m.Agent, m.RTTNs, m.Host, fleet.HostDir(m.Agent))
		}
		mraw, err := os.ReadFile(filepath.Join(dir, m.Host, "manifest.json"))
		ts.Check(err)
		var w windows.Manifest
		ts.Check(json.Unmarshal(mraw, &w))
		if w.ID != m.Window || w.Group != rec.ID || w.State != windows.StateReady || len(w.Artifacts) == 0 {
			ts.Fatalf("%s/manifest.json: window %s of group %q, %s, %d files; want window %s of %s, ready, with files",
				m.Host, w.ID, w.Group, w.State, len(w.Artifacts), m.Window, rec.ID)
		}
		for _, a := range w.Artifacts {
			if _, err := os.Stat(filepath.Join(dir, m.Host, a.Name)); err != nil {
				ts.Fatalf("%s: %v", m.Host, err)
			}
		}
	}
	for _, pair := range args[2:] {
		agentURL, shiftText, ok := strings.Cut(pair, "=")
		shift, err := time.ParseDuration(shiftText)
		if !ok || err != nil {
			ts.Fatalf("check-group: %q: want AGENT=SHIFT", pair)
		}
		found := false
		for _, m := range rec.Members {
			if m.Agent != agentURL {
				continue
			}
			found = true
			off := time.Duration(m.OffsetNs)
			if diff := (off - shift).Abs(); diff > time.Duration(m.UncertaintyNs)+time.Millisecond {
				ts.Fatalf("%s: offset %s, shifted by %s: %s apart, more than its uncertainty ±%s + 1ms", agentURL, off, shift, diff, time.Duration(m.UncertaintyNs))
			}
			ts.Logf("%s: offset %s ±%s, shifted by %s", agentURL, off, time.Duration(m.UncertaintyNs), shift)
		}
		if !found {
			ts.Fatalf("%s is not a member of %s", agentURL, rec.ID)
		}
	}
}
