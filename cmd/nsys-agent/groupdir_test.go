package main

import (
	"archive/tar"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nsys-agent/nsys-agent/internal/gztest"

	"github.com/nsys-agent/nsys-agent/agent/windows"
	"github.com/nsys-agent/nsys-agent/internal/golden"
)

// The pulled group folder of these tests, built from the real H100 Kineto fixture as if
// its two ranks had run on two hosts whose clocks disagree with the coordinator's:
// gpu-1_7477 (rank 0) has a wall clock 0.4 s behind; gpu-2_7477 (rank 1) one 7.25 s ahead,
// and it booted 3 s later, so its monotonic clock (Kineto's ts) reads 3 s less. Their
// traces are rewritten accordingly and group.json holds the offsets the coordinator
// measured. Merged on the coordinator's clock, each rank must land where the original
// capture has it.
const (
	groupID      = "g-test1"
	hostA        = "gpu-1_7477"
	hostB        = "gpu-2_7477"
	hostAOffset  = -400_000_000
	hostBOffset  = 7_250_000_000
	hostBBootLag = 3_000_000_000
	tp0          = "1763900000.123456-TP-0.trace.json.gz"
	tp1          = "1763900000.123456-TP-1.trace.json.gz"
)

var (
	tsRe   = regexp.MustCompile(`"ts": (-?\d+)\.(\d{3})\b`)
	baseRe = regexp.MustCompile(`"baseTimeNanoseconds": (\d+)`)
)

// tsNs reads a Kineto ts with three decimals ("4589780676192.716") as integer ns.
func tsNs(t *testing.T, s string) int64 {
	t.Helper()
	whole, frac, _ := strings.Cut(s, ".")
	w, err1 := strconv.ParseInt(whole, 10, 64)
	f, err2 := strconv.ParseInt(frac, 10, 64)
	if err1 != nil || err2 != nil || len(frac) != 3 {
		t.Fatalf("ts %q", s)
	}
	return w*1000 + f
}

func readGunzip(t *testing.T, path string) []byte {
	t.Helper()
	return gztest.Read(t, path)
}

// rewriteHostClock writes the fixture trace src to dst as the host with these clocks
// would have written it: ts moved by tsDelta, baseTimeNanoseconds by baseDelta (ns).
func rewriteHostClock(t *testing.T, src, dst string, tsDelta, baseDelta int64) {
	t.Helper()
	text := readGunzip(t, src)
	text = tsRe.ReplaceAllFunc(text, func(m []byte) []byte {
		ns := tsNs(t, string(m[len(`"ts": `):])) + tsDelta
		return fmt.Appendf(nil, `"ts": %d.%03d`, ns/1000, ns%1000)
	})
	text = baseRe.ReplaceAllFunc(text, func(m []byte) []byte {
		n, err := strconv.ParseInt(string(m[len(`"baseTimeNanoseconds": `):]), 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		return fmt.Appendf(nil, `"baseTimeNanoseconds": %d`, n+baseDelta)
	})
	f, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	zw := gzip.NewWriter(f)
	zw.Write(text)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// makeGroupFolder lays the two-host group folder out in a new temporary folder: each
// host's window (rank trace and manifest.json), and group.json when withRecord.
func makeGroupFolder(t *testing.T, withRecord bool) string {
	t.Helper()
	dir := t.TempDir()
	start := time.Date(2026, 11, 30, 10, 15, 0, 0, time.UTC)
	for _, h := range []struct {
		host, window, trace string
		tsDelta, baseDelta  int64
	}{
		// A wall clock off by d moves baseTimeNanoseconds (wall minus monotonic) by d; a
		// later boot moves ts back and baseTimeNanoseconds forward by as much.
		{hostA, "w20261130-101500-aaaaaa", tp0, 0, hostAOffset},
		{hostB, "w20261130-101507-bbbbbb", tp1, -hostBBootLag, hostBOffset + hostBBootLag},
	} {
		hd := filepath.Join(dir, h.host)
		if err := os.Mkdir(hd, 0o755); err != nil {
			t.Fatal(err)
		}
		rewriteHostClock(t, filepath.Join(kinetoFixture, h.trace), filepath.Join(hd, h.trace), h.tsDelta, h.baseDelta)
		m := windows.Manifest{ID: h.window, Backend: "torch", State: windows.StateReady, Group: groupID, CreatedAt: start, Artifacts: []windows.Artifact{}}
		writeJSONFile(t, filepath.Join(hd, "manifest.json"), m)
	}
	if withRecord {
		fired := start.Add(time.Millisecond)
		writeJSONFile(t, filepath.Join(dir, groupRecordName), windows.GroupRecord{
			ID: groupID, Coordinator: "laptop", StartAt: start, State: "capturing", SkewNs: 2_100_000, FireSkewNs: 90_000,
			Members: []windows.GroupMember{
				{Agent: "http://gpu-1:7477", Host: hostA, Window: "w20261130-101500-aaaaaa", OffsetNs: hostAOffset,
					UncertaintyNs: 40_000, RTTNs: 80_000, FiredAt: &fired, StartedAt: &fired, State: "capturing"},
				{Agent: "http://gpu-2:7477", Host: hostB, Window: "w20261130-101507-bbbbbb", OffsetNs: hostBOffset,
					UncertaintyNs: 52_000, RTTNs: 104_000, FiredAt: &fired, StartedAt: &fired, State: "capturing"},
			},
		})
	}
	return dir
}

func writeJSONFile(t *testing.T, path string, v any) {
	t.Helper()
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// firstByHost returns the earliest ts (µs) of each host's events in a merged trace.
func firstByHost(t *testing.T, path string) map[string]float64 {
	t.Helper()
	var m struct {
		TraceEvents []struct {
			Pid any      `json:"pid"`
			Ts  *float64 `json:"ts"`
		} `json:"traceEvents"`
	}
	if err := json.Unmarshal(readGunzip(t, path), &m); err != nil {
		t.Fatal(err)
	}
	first := map[string]float64{}
	for _, e := range m.TraceEvents {
		pid, _ := e.Pid.(string)
		host, _, ok := strings.Cut(strings.TrimPrefix(pid, "["), ":")
		if !ok || e.Ts == nil {
			continue
		}
		if v, seen := first[host]; !seen || *e.Ts < v {
			first[host] = *e.Ts
		}
	}
	return first
}

// fixtureFirst is the earliest ts (µs) of a fixture rank as captured, both ranks on one
// host and clock.
func fixtureFirst(t *testing.T, name string) float64 {
	t.Helper()
	first := int64(math.MaxInt64)
	for _, m := range tsRe.FindAll(readGunzip(t, filepath.Join(kinetoFixture, name)), -1) {
		first = min(first, tsNs(t, string(m[len(`"ts": `):])))
	}
	return float64(first) / 1e3
}

type mergeOut struct {
	Events         int64    `json:"events"`
	Aligned        bool     `json:"aligned"`
	Hosts          []string `json:"hosts"`
	UnalignedHosts []string `json:"unaligned_hosts"`
	Ranks          []struct {
		Label   string `json:"label"`
		Host    string `json:"host"`
		ShiftNs int64  `json:"shift_ns"`
	} `json:"ranks"`
	Perfetto *struct {
		Output    string `json:"output"`
		Reference string `json:"reference"`
		Files     []struct {
			Member   string `json:"member"`
			OffsetNs int64  `json:"offset_ns"`
		} `json:"files"`
	} `json:"perfetto"`
	Group *groupInfo `json:"group"`
}

// TestMergeGroupFolder: the pulled group merges onto the coordinator's clock: both hosts'
// first events lie where the capture has them (1.227 ms apart), although the hosts'
// traces were written 7.65 s apart; the Perfetto bundle beside it pins host B's file at
// the same shift.
func TestMergeGroupFolder(t *testing.T) {
	dir := makeGroupFolder(t, true)
	r := runCLI(t, "merge", dir, "-o", "json").must(t, exitOK)
	var st mergeOut
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil {
		t.Fatalf("%v\n%s", err, r.stdout)
	}
	if st.Events != 9115 || !st.Aligned || st.UnalignedHosts != nil || !slices.Equal(st.Hosts, []string{hostA, hostB}) ||
		st.Ranks[0].Label != "[gpu-1_7477:TP00]" || st.Ranks[1].Label != "[gpu-2_7477:TP01]" || st.Ranks[1].ShiftNs != hostBBootLag {
		t.Errorf("stats %+v", st)
	}
	if g := st.Group; g == nil || g.ID != groupID || !g.Aligned || len(g.Hosts) != 2 || g.Hosts[1].OffsetNs != hostBOffset || !g.Hosts[1].OffsetKnown {
		t.Errorf("group %+v", st.Group)
	}
	merged := filepath.Join(dir, "merged.trace.json.gz")
	first := firstByHost(t, merged)
	wantA, wantB := fixtureFirst(t, tp0), fixtureFirst(t, tp1)
	if math.Abs(first[hostA]-wantA) > 0.001 || math.Abs(first[hostB]-wantB) > 0.001 {
		t.Errorf("first events %v, want %s at %.3f and %s at %.3f", first, hostA, wantA, hostB, wantB)
	}
	if gap := first[hostB] - first[hostA]; math.Abs(gap) > 5e3 {
		t.Errorf("hosts' first events %.3f µs apart, want the capture's 1.227 ms", gap)
	}

	bundle := filepath.Join(dir, "merged.perfetto.tar")
	if st.Perfetto == nil || st.Perfetto.Output != bundle || st.Perfetto.Reference != hostA+"/"+strings.TrimSuffix(tp0, ".gz") ||
		len(st.Perfetto.Files) != 2 || st.Perfetto.Files[1].OffsetNs != hostBBootLag {
		t.Fatalf("perfetto %+v", st.Perfetto)
	}
	members := tarMembers(t, bundle)
	var man struct {
		M struct {
			Files []struct {
				Path    string            `json:"path"`
				Machine map[string]string `json:"machine"`
				Clocks  *struct {
					SyncTo   map[string]string `json:"sync_to"`
					OffsetNs int64             `json:"offset_ns"`
				} `json:"clocks"`
			} `json:"files"`
			Attributes map[string]string `json:"attributes"`
		} `json:"perfetto_manifest"`
	}
	if err := json.Unmarshal(members["perfetto_manifest.json"], &man); err != nil {
		t.Fatal(err)
	}
	f := man.M.Files
	if len(members) != 3 || len(f) != 2 || f[1].Machine["name"] != hostB || f[1].Clocks == nil ||
		f[1].Clocks.SyncTo["file"] != f[0].Path || f[1].Clocks.OffsetNs != hostBBootLag ||
		man.M.Attributes["nsys_agent.group"] != groupID || man.M.Attributes["nsys_agent.coordinator"] != "laptop" {
		t.Errorf("bundle members %d, manifest %+v", len(members), man.M)
	}
	// Host B's file as stored, moved by its offset_ns, starts where the capture's rank 1 does.
	var firstB int64 = math.MaxInt64
	for _, m := range tsRe.FindAll(members[f[1].Path], -1) {
		firstB = min(firstB, tsNs(t, string(m[len(`"ts": `):])))
	}
	if got := float64(firstB+f[1].Clocks.OffsetNs) / 1e3; math.Abs(got-wantB) > 0.001 {
		t.Errorf("bundle: host B starts at %.3f µs on the reference's clock, want %.3f", got, wantB)
	}

	// The table says the same for people.
	r = runCLI(t, "merge", dir, "--out", filepath.Join(dir, "again.trace.json.gz")).must(t, exitOK)
	for _, want := range []string{"[gpu-2_7477:TP01]", "group g-test1 (coordinator laptop): 2 hosts",
		"gpu-2_7477 1 rank clock +7.25s from the coordinator's (±52µs)", "timeline: aligned on the coordinator's clock",
		"Perfetto bundle: " + filepath.Join(dir, "again.perfetto.tar")} {
		if !strings.Contains(squash(r.stdout), want) {
			t.Errorf("table output lacks %q:\n%s", want, r.stdout)
		}
	}
}

// squash makes runs of spaces one, for checking lines of a table.
func squash(s string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		lines[i] = strings.Join(strings.Fields(l), " ")
	}
	return strings.Join(lines, "\n")
}

func tarMembers(t *testing.T, path string) map[string][]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string][]byte{}
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		if out[hdr.Name], err = io.ReadAll(tr); err != nil {
			t.Fatal(err)
		}
	}
}

// TestMergeGroupFolderUnaligned: without group.json nothing says how the hosts' clocks
// relate: the merge still works, host B lands 7.65 s late (its clock's lead over host
// A's), and both outputs say the timeline is unaligned.
func TestMergeGroupFolderUnaligned(t *testing.T) {
	dir := makeGroupFolder(t, false)
	r := runCLI(t, "merge", dir, "-o", "json", "--no-perfetto").must(t, exitOK)
	var st mergeOut
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil {
		t.Fatal(err)
	}
	if st.Aligned || !slices.Equal(st.UnalignedHosts, []string{hostA, hostB}) || st.Perfetto != nil || st.Group == nil || st.Group.Aligned {
		t.Errorf("stats %+v", st)
	}
	if !strings.Contains(r.stderr, "UNALIGNED: the clock offsets of gpu-1_7477, gpu-2_7477 are unknown (no group.json in") {
		t.Errorf("stderr %q", r.stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, "merged.perfetto.tar")); !os.IsNotExist(err) {
		t.Errorf("--no-perfetto wrote a bundle: %v", err)
	}
	first := firstByHost(t, filepath.Join(dir, "merged.trace.json.gz"))
	gap := first[hostB] - first[hostA]
	want := fixtureFirst(t, tp1) - fixtureFirst(t, tp0) + (hostBOffset-hostAOffset)/1e3
	if math.Abs(gap-want) > 0.001 {
		t.Errorf("unaligned hosts %.3f µs apart, want %.3f (the clocks' disagreement)", gap, want)
	}
	r = runCLI(t, "merge", dir).must(t, exitOK)
	if !strings.Contains(r.stdout, "timeline: UNALIGNED") || !strings.Contains(r.stdout, "clock offset unknown") {
		t.Errorf("table output:\n%s", r.stdout)
	}
}

// TestAnalyzeGroupFolder: ranks of both hosts compared, rows labelled with their host,
// the slowest named across hosts, each host's window checked; pinned by a golden (the
// folder's path replaced by $GROUP).
func TestAnalyzeGroupFolder(t *testing.T) {
	dir := makeGroupFolder(t, true)
	r := runCLI(t, "analyze", dir, "-o", "json", "--expect-ranks", "1").must(t, exitOK)
	var s struct {
		SlowestRank string `json:"slowest_rank"`
		Ranks       []struct {
			Label string `json:"label"`
			Host  string `json:"host"`
		} `json:"ranks"`
		Group *groupInfo `json:"group"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &s); err != nil {
		t.Fatal(err)
	}
	if s.SlowestRank != "gpu-2_7477:TP01" || len(s.Ranks) != 2 || s.Ranks[0].Host != hostA || s.Group == nil || !s.Group.Aligned {
		t.Errorf("analysis %+v", s)
	}
	golden.Check(t, "testdata/analyze-group-2host.golden.json", strings.ReplaceAll(r.stdout, dir, "$GROUP"), *update)

	r = runCLI(t, "analyze", dir).must(t, exitOK)
	for _, want := range []string{"gpu-1_7477:TP00", "slowest rank: gpu-2_7477:TP01", "timeline: aligned", "CHECKS"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("table output lacks %q:\n%s", want, r.stdout)
		}
	}
	// A finding names its host: an expectation of 2 ranks per host fails on both.
	r = runCLI(t, "analyze", dir, "--expect-ranks", "2").must(t, exitOK)
	if !strings.Contains(r.stdout, "rank-missing ["+hostA+"]") || !strings.Contains(r.stdout, "rank-missing ["+hostB+"]") {
		t.Errorf("findings do not name their hosts:\n%s", r.stdout)
	}
}

// TestGroupFolderErrors: what a damaged or odd group folder does.
func TestGroupFolderErrors(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func(t *testing.T, dir string)
		code   int
		msg    string
	}{
		{"record not JSON", func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, groupRecordName), []byte("{"), 0o644)
		}, exitFailed, "group record"},
		{"bad group id", func(t *testing.T, dir string) {
			writeJSONFile(t, filepath.Join(dir, groupRecordName), windows.GroupRecord{ID: "w1"})
		}, exitFailed, `"w1" is no group id`},
		{"host escapes the folder", func(t *testing.T, dir string) {
			writeJSONFile(t, filepath.Join(dir, groupRecordName), windows.GroupRecord{ID: groupID, Members: []windows.GroupMember{{Agent: "a", Host: "../x"}}})
		}, exitFailed, `host "../x", which is no folder name`},
		{"host folder is a link", func(t *testing.T, dir string) {
			other := filepath.Join(t.TempDir(), "elsewhere")
			os.Rename(filepath.Join(dir, hostB), other)
			os.Symlink(other, filepath.Join(dir, hostB))
		}, exitFailed, "is not a folder"},
		{"trace is a link", func(t *testing.T, dir string) {
			p := filepath.Join(dir, hostB, tp1)
			other := filepath.Join(t.TempDir(), tp1)
			os.Rename(p, other)
			os.Symlink(other, p)
		}, exitFailed, "never links"},
		{"host without traces", func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, hostB, tp1))
		}, exitFailed, "host gpu-2_7477: " + "X/gpu-2_7477 holds no capture (per-rank *.trace.json.gz, or one .nsys-rep or .sqlite)"},
		{"two windows in a host folder", func(t *testing.T, dir string) {
			for _, w := range []string{"w1", "w2"} {
				os.MkdirAll(filepath.Join(dir, hostB, w), 0o755)
				os.Link(filepath.Join(dir, hostB, tp1), filepath.Join(dir, hostB, w, tp1))
			}
			os.Remove(filepath.Join(dir, hostB, tp1))
		}, exitFailed, "holds the captures of 2 windows (w1, w2)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := makeGroupFolder(t, true)
			tc.damage(t, dir)
			msg := strings.ReplaceAll(tc.msg, "X/", dir+"/")
			for _, cmd := range []string{"merge", "analyze"} {
				r := runCLI(t, cmd, dir)
				if r.code != tc.code || !strings.Contains(r.stderr, msg) {
					t.Errorf("%s: exit %d, stderr %q; want %d and %q", cmd, r.code, r.stderr, tc.code, msg)
				}
			}
			if _, err := os.Stat(filepath.Join(dir, "merged.trace.json.gz")); !os.IsNotExist(err) {
				t.Errorf("a refused merge wrote its output")
			}
		})
	}
}

// TestGroupFolderPartial: a member not pulled is named and left out; a folder group.json
// does not list is left out; a host folder holding one window folder (what `pull WINDOW
// --agent A,B` writes) is read through.
func TestGroupFolderPartial(t *testing.T) {
	dir := makeGroupFolder(t, true)
	os.Rename(filepath.Join(dir, hostB), filepath.Join(dir, "stray_7477"))
	r := runCLI(t, "merge", dir, "-o", "json").must(t, exitOK)
	var st mergeOut
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil {
		t.Fatal(err)
	}
	if st.Events != 4516 || st.Group == nil || !slices.Equal(st.Group.Missing, []string{hostB}) || !slices.Equal(st.Group.Ignored, []string{"stray_7477"}) ||
		st.Ranks[0].Label != "[TP00]" || !st.Aligned {
		t.Errorf("partial group: %+v", st)
	}
	r = runCLI(t, "merge", dir, "--no-perfetto").must(t, exitOK)
	if out := squash(r.stdout); !strings.Contains(out, "gpu-2_7477 not pulled: no folder") || !strings.Contains(out, "stray_7477 left out: group.json does not list it") {
		t.Errorf("table output:\n%s", r.stdout)
	}

	dir = makeGroupFolder(t, false)
	nested := filepath.Join(dir, hostA, "w20261130-101500-aaaaaa")
	os.Mkdir(nested, 0o755)
	os.Rename(filepath.Join(dir, hostA, tp0), filepath.Join(nested, tp0))
	r = runCLI(t, "merge", dir, "-o", "json", "--no-perfetto").must(t, exitOK)
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil {
		t.Fatal(err)
	}
	if st.Events != 9115 || st.Group.Hosts[0].Dir != nested {
		t.Errorf("nested window folder: %+v", st.Group)
	}
	// Window folders pulled from one agent (DIR/<window-id>/ with its manifest) are no
	// hosts: such a folder is not a group.
	windowsDir := t.TempDir()
	for _, w := range []string{"w20261130-101500-aaaaaa", "w20261130-101507-bbbbbb"} {
		wd := filepath.Join(windowsDir, w)
		os.Mkdir(wd, 0o755)
		os.Link(filepath.Join(dir, hostB, tp1), filepath.Join(wd, tp1))
		writeJSONFile(t, filepath.Join(wd, "manifest.json"), windows.Manifest{ID: w})
	}
	r = runCLI(t, "merge", windowsDir, "--out", filepath.Join(windowsDir, "m.trace.json.gz"))
	if r.code != exitFailed || !strings.Contains(r.stderr, "no SGLang or vLLM per-rank trace") {
		t.Errorf("a folder of window folders: exit %d, %q", r.code, r.stderr)
	}

	r = runCLI(t, "merge", dir, "--perfetto", filepath.Join(dir, "p.tar"), "--no-perfetto")
	if r.code != exitUsage || !strings.Contains(r.stderr, "give one") {
		t.Errorf("--perfetto with --no-perfetto: exit %d, %q", r.code, r.stderr)
	}
}

// A member a `start --min-members` went on without has no folder: analyze and merge say
// it was left out and why, not that it was not pulled.
func TestGroupFolderLeftOutMember(t *testing.T) {
	dir := makeGroupFolder(t, true)
	path := filepath.Join(dir, groupRecordName)
	rec, err := readGroupRecord(path)
	if err != nil {
		t.Fatal(err)
	}
	rec.Members = append(rec.Members, windows.GroupMember{Agent: "http://gpu-3:7477", Host: "gpu-3_7477", Window: "w1",
		RTTNs: 90_000, State: "failed", Error: "its capture did not start: window w1 failed: no GPU"})
	writeJSONFile(t, path, rec)
	for _, cmd := range [][]string{{"analyze", dir}, {"merge", dir}} {
		r := runCLI(t, cmd...).must(t, exitOK)
		if !regexp.MustCompile(`gpu-3_7477 +left out at the group's start: its capture did not start: window w1 failed: no GPU`).MatchString(r.stdout) || strings.Contains(r.stdout, "not pulled") {
			t.Errorf("%s:\n%s", cmd[0], r.stdout)
		}
	}
	r := runCLI(t, "analyze", dir, "-o", "json").must(t, exitOK)
	if !strings.Contains(r.stdout, `"left_out_hosts": [`) {
		t.Errorf("analyze -o json:\n%s", r.stdout)
	}
}
