package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nsys-agent/nsys-agent/agent/windows"
	"github.com/nsys-agent/nsys-agent/torchprof/nsysdb/nsysdbtest"
)

// makeNsysGroupFolder is a pulled group of two nsys windows built from the real H100
// export: each host's copy says its collection started at the same moment on the
// coordinator's clock, read on the host's own clock (hostAOffset, hostBOffset), as
// group.json measured.
func makeNsysGroupFolder(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	start := time.Date(2026, 11, 30, 10, 15, 0, 0, time.UTC)
	var members []windows.GroupMember
	for _, h := range []struct {
		host, window string
		offset       int64
	}{{hostA, "w20261130-101500-aaaaaa", hostAOffset}, {hostB, "w20261130-101507-bbbbbb", hostBOffset}} {
		hd := filepath.Join(dir, h.host)
		if err := os.Mkdir(hd, 0o755); err != nil {
			t.Fatal(err)
		}
		nsysdbtest.Copy(t, nsysFixture, hd, "window.sqlite",
			fmt.Sprintf("UPDATE TARGET_INFO_SESSION_START_TIME SET utcEpochNs = utcEpochNs + %d", h.offset))
		m := windows.Manifest{ID: h.window, Backend: "nsys", State: windows.StateReady, Group: groupID, CreatedAt: start, Artifacts: []windows.Artifact{}}
		writeJSONFile(t, filepath.Join(hd, "manifest.json"), m)
		members = append(members, windows.GroupMember{Agent: "http://" + h.host, Host: h.host, Window: h.window, OffsetNs: h.offset,
			UncertaintyNs: 40_000, RTTNs: 80_000, State: "capturing"})
	}
	writeJSONFile(t, filepath.Join(dir, groupRecordName), windows.GroupRecord{ID: groupID, Coordinator: "laptop", StartAt: start, State: "capturing", Members: members})
	return dir
}

// A group of nsys windows (the nsys backend's reports, pulled with `pull GROUP`) is
// analyzed across hosts like a group of torch windows: ranks labelled with their host,
// one slowest rank, each host's clock offset applied.
func TestAnalyzeNsysGroupFolder(t *testing.T) {
	dir := makeNsysGroupFolder(t)
	r := runCLI(t, "analyze", dir, "-o", "json").must(t, exitOK)
	var s struct {
		SlowestRank string `json:"slowest_rank"`
		Ranks       []struct {
			Label string `json:"label"`
			Host  string `json:"host"`
			Steps []struct {
				StartNs int64 `json:"start_ns"`
			} `json:"steps"`
		} `json:"ranks"`
		Group *groupInfo `json:"group"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &s); err != nil {
		t.Fatal(err)
	}
	var labels []string
	for _, rk := range s.Ranks {
		labels = append(labels, rk.Label)
	}
	want := []string{hostA + ":pid 627", hostA + ":pid 628", hostB + ":pid 627", hostB + ":pid 628"}
	if !slices.Equal(labels, want) {
		t.Fatalf("ranks %q, want %q", labels, want)
	}
	if s.SlowestRank != hostA+":pid 628" && s.SlowestRank != hostB+":pid 628" {
		t.Errorf("slowest %q: rank 1 (pid 628) of either host", s.SlowestRank)
	}
	if s.Group == nil || !s.Group.Aligned || len(s.Group.Hosts) != 2 || s.Group.Hosts[0].Ranks != 2 || s.Group.Hosts[1].Ranks != 2 {
		t.Errorf("group %+v", s.Group)
	}
	// The same moment on both hosts lands on the same time once their offsets are applied
	// (raw, their starts are 7.65 s apart).
	if a, b := s.Ranks[0].Steps[0].StartNs, s.Ranks[2].Steps[0].StartNs; a != b {
		t.Errorf("first step of pid 627: %s at %d, %s at %d", hostA, a, hostB, b)
	}

	r = runCLI(t, "analyze", dir).must(t, exitOK)
	for _, want := range []string{hostA + ":pid 627", "slowest rank: ", "timeline: aligned on the coordinator's clock", "group " + groupID, "CHECKS"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("table output lacks %q:\n%s", want, r.stdout)
		}
	}

	// merge cannot make one trace file of nsys reports, and says what to do instead.
	r = runCLI(t, "merge", dir).must(t, exitFailed)
	if !strings.Contains(r.stderr, "holds nsys reports, which do not merge") || !strings.Contains(r.stderr, "nsys-agent analyze "+dir) {
		t.Errorf("merge of an nsys group:\n%s", r.stderr)
	}

	// A folder mixing torch traces and nsys reports is refused, naming the hosts.
	mixed := makeGroupFolder(t, true)
	if err := os.Remove(filepath.Join(mixed, hostB, tp1)); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(nsysFixture)
	if err := os.WriteFile(filepath.Join(mixed, hostB, "w.sqlite"), raw, 0o600); err != nil {
		t.Fatal(err)
	}
	r = runCLI(t, "analyze", mixed).must(t, exitFailed)
	if !strings.Contains(r.stderr, "mixes backends: "+hostA+" hold torch traces, "+hostB+" nsys reports") {
		t.Errorf("mixed folder:\n%s", r.stderr)
	}
}
