package torchprof

import (
	"context"
	"maps"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/nsys-agent/nsys-agent/internal/gztest"
)

// The two-host setup of these tests, made from the real H100 fixture: host gpu-1_7477
// runs rank 0 as captured; host gpu-2_7477 runs rank 1 on a machine whose wall clock is
// hostBAheadNs ahead of the coordinator's and which booted hostBBootNs later (its
// monotonic clock, Kineto's ts, reads that much less). Its trace is rewritten
// accordingly: every ts minus hostBBootNs, baseTimeNanoseconds plus both.
const (
	hostA        = "gpu-1_7477"
	hostB        = "gpu-2_7477"
	hostBAheadNs = 7_250_000_000
	hostBBootNs  = 3_000_000_000
)

var (
	tsField   = regexp.MustCompile(`"ts": (-?\d+)\.(\d{3})\b`)
	baseField = regexp.MustCompile(`"baseTimeNanoseconds": (\d+)`)
)

// rewriteClock copies the gzipped Kineto trace src to dst as if it had been written on a
// host whose clocks differ: ts moved by tsDeltaNs, baseTimeNanoseconds by baseDeltaNs.
func rewriteClock(t *testing.T, src, dst string, tsDeltaNs, baseDeltaNs int64) {
	t.Helper()
	text := gztest.Read(t, src)
	text = tsField.ReplaceAllFunc(text, func(m []byte) []byte {
		ns, ok := tsNanos(m[len(`"ts": `):])
		if !ok {
			t.Fatalf("ts %s", m)
		}
		return appendMicros([]byte(`"ts": `), ns+tsDeltaNs)
	})
	text = baseField.ReplaceAllFunc(text, func(m []byte) []byte {
		n, err := strconv.ParseInt(string(m[len(`"baseTimeNanoseconds": `):]), 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		return strconv.AppendInt([]byte(`"baseTimeNanoseconds": `), n+baseDeltaNs, 10)
	})
	writeGz(t, dst, string(text))
}

// twoHosts lays out the two hosts' rank traces under dir and returns them as a group
// folder would: hosts' offsets known or not.
func twoHosts(t *testing.T, dir string, offsetsKnown bool) []RankFile {
	t.Helper()
	const tp0, tp1 = "1763900000.123456-TP-0.trace.json.gz", "1763900000.123456-TP-1.trace.json.gz"
	for _, h := range []string{hostA, hostB} {
		if err := os.MkdirAll(filepath.Join(dir, h), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	a, b := filepath.Join(dir, hostA, tp0), filepath.Join(dir, hostB, tp1)
	raw, err := os.ReadFile(filepath.Join(kinetoFixture, tp0))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(a, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	rewriteClock(t, filepath.Join(kinetoFixture, tp1), b, -hostBBootNs, hostBAheadNs+hostBBootNs)
	ra, _ := ParseName(a)
	rb, _ := ParseName(b)
	ra.Host, rb.Host = hostA, hostB
	if offsetsKnown {
		ra.HostOffsetKnown, rb.HostOffsetNs, rb.HostOffsetKnown = true, hostBAheadNs, true
	}
	return []RankFile{ra, rb}
}

func TestLabels(t *testing.T) {
	tp := func(host string, tp, dp int) RankFile {
		return RankFile{Framework: FrameworkSGLang, Host: host, TP: tp, DP: dp, PP: -1, EP: -1, DCP: -1, Rank: -1}
	}
	for _, tc := range []struct {
		name  string
		files []RankFile
		want  []string
	}{
		{"no host", []RankFile{tp("", 0, -1), tp("", 1, -1)}, []string{"[TP00]", "[TP01]"}},
		{"one host keeps SGLang's labels", []RankFile{tp(hostA, 0, 0), tp(hostA, 1, 0)}, []string{"[TP00-DP00]", "[TP01-DP00]"}},
		{"two hosts", []RankFile{tp(hostA, 0, 0), tp(hostB, 0, 0)}, []string{"[gpu-1_7477:TP00-DP00]", "[gpu-2_7477:TP00-DP00]"}},
		{"a file without host among hosts", []RankFile{tp(hostA, 0, -1), tp("", 1, -1)}, []string{"[gpu-1_7477:TP00]", "[TP01]"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Labels(tc.files); !slices.Equal(got, tc.want) {
				t.Errorf("Labels = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestClockShifts(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		writeGz(t, p, text)
		return p
	}
	noBase := write("nobase.json.gz", `{"traceEvents": []}`)
	base1 := write("b1.json.gz", `{"baseTimeNanoseconds": 1000, "traceEvents": []}`)
	base5 := write("b5.json.gz", `{"traceEvents": [], "baseTimeNanoseconds": 5000}`) // key after the events
	rf := func(path, host string, off int64, known bool) RankFile {
		return RankFile{Path: path, Host: host, HostOffsetNs: off, HostOffsetKnown: known}
	}
	for _, tc := range []struct {
		name    string
		files   []RankFile
		want    []int64
		wantRef int
	}{
		{"one host, bases differ", []RankFile{rf(base1, "", 0, false), rf(base5, "", 0, false)}, []int64{0, 4000}, 0},
		{"host offsets subtract", []RankFile{rf(base1, "a", 100, true), rf(base5, "b", 3000, true)}, []int64{0, 1100}, 0},
		{"unknown offset counts as 0", []RankFile{rf(base1, "a", 100, true), rf(base5, "b", 3000, false)}, []int64{0, 4100}, 0},
		{"reference is the first with a base", []RankFile{rf(noBase, "a", 0, true), rf(base5, "a", 0, true)}, []int64{0, 0}, 1},
		{"no base: the reference's, then the host offset", []RankFile{rf(base1, "a", 0, true), rf(noBase, "b", -250, true)}, []int64{0, 250}, 0},
		{"no base anywhere", []RankFile{rf(noBase, "a", 10, true), rf(noBase, "b", 20, true)}, []int64{0, -10}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ref, err := clockShifts(context.Background(), tc.files)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tc.want) || ref != tc.wantRef {
				t.Errorf("shifts %v ref %d, want %v ref %d", got, ref, tc.want, tc.wantRef)
			}
		})
	}
}

// firstTs returns, per label prefix ("[gpu-1_7477:"), the earliest ts of a merged trace.
func firstTs(t *testing.T, m map[string]any) map[string]float64 {
	t.Helper()
	first := map[string]float64{}
	for _, e := range m["traceEvents"].([]any) {
		ev := e.(map[string]any)
		pid, _ := ev["pid"].(string)
		ts, ok := ev["ts"].(float64)
		label, _, _ := strings.Cut(pid, " ")
		if !ok || label == "" {
			continue
		}
		if v, seen := first[label]; !seen || ts < v {
			first[label] = ts
		}
	}
	return first
}

// TestMergeAcrossHosts: host gpu-2_7477's clocks are off (wall by 7.25 s, boot by 3 s);
// with its offset known, the merge puts its rank exactly where the same rank lies in
// SGLang's merge of the original capture, under host-qualified labels. Without the
// offset the ranks land 7.25 s apart and the statistics say the timeline is unaligned.
func TestMergeAcrossHosts(t *testing.T) {
	sglang := readTrace(t, filepath.Join(kinetoFixture, "sglang-merged/merged-1763900000.123456.trace.json.gz"))
	want := eventsByRank(t, sglang)
	wantFirst := firstTs(t, sglang)

	dir := t.TempDir()
	out := filepath.Join(dir, "merged.trace.json.gz")
	st, err := Merge(context.Background(), twoHosts(t, dir, true), out, MergeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !st.Aligned || st.UnalignedHosts != nil || !slices.Equal(st.Hosts, []string{hostA, hostB}) {
		t.Errorf("aligned %v, unaligned %v, hosts %v", st.Aligned, st.UnalignedHosts, st.Hosts)
	}
	r := st.Ranks[1]
	if r.Label != "[gpu-2_7477:TP01]" || r.Host != hostB || r.ShiftNs != hostBBootNs || r.HostOffsetNs != hostBAheadNs || !r.HostOffsetKnown {
		t.Errorf("rank 1 stats %+v", r)
	}
	got := readTrace(t, out)
	first := firstTs(t, got)
	// Same events once the host is dropped from the label: timestamps to the nanosecond.
	byRank := eventsByRank(t, got)
	if len(byRank) != 2 {
		t.Fatalf("merged labels %v, want one per host's rank", slices.Collect(maps.Keys(byRank)))
	}
	for label, evs := range byRank {
		sg := "[" + label[strings.Index(label, ":")+1:]
		for i, ev := range evs {
			evs[i] = strings.ReplaceAll(ev, label, sg)
		}
		slices.Sort(evs)
		if !slices.Equal(evs, want[sg]) {
			t.Errorf("%s: events differ from SGLang's %s", label, sg)
		}
	}
	if first["[gpu-1_7477:TP00]"] != wantFirst["[TP00]"] || first["[gpu-2_7477:TP01]"] != wantFirst["[TP01]"] {
		t.Errorf("first events %v, want those of the capture %v", first, wantFirst)
	}

	// No offsets: host B's rank is 7.25 s late, and the merge says why.
	st, err = Merge(context.Background(), twoHosts(t, t.TempDir(), false), out, MergeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if st.Aligned || !slices.Equal(st.UnalignedHosts, []string{hostA, hostB}) {
		t.Errorf("unaligned merge: aligned %v, unaligned hosts %v", st.Aligned, st.UnalignedHosts)
	}
	first = firstTs(t, readTrace(t, out))
	gap := first["[gpu-2_7477:TP01]"] - first["[gpu-1_7477:TP00]"]
	wantGap := wantFirst["[TP01]"] - wantFirst["[TP00]"] + hostBAheadNs/1e3
	if math.Abs(gap-wantGap) > 1 {
		t.Errorf("unaligned gap %.3f µs, want %.3f", gap, wantGap)
	}

	// NoClockAlign keeps the rewritten timestamps and says the clocks differ.
	st, err = Merge(context.Background(), twoHosts(t, t.TempDir(), true), out, MergeOptions{NoClockAlign: true})
	if err != nil || st.Aligned || st.Ranks[1].ShiftNs != 0 {
		t.Errorf("NoClockAlign: %v, aligned %v, shift %d", err, st.Aligned, st.Ranks[1].ShiftNs)
	}
}

// TestAnalyzeAcrossHosts: per-rank rows carry their host, the slowest rank is named with
// its host, and with known offsets the ranks' steps lie where the one-host capture has
// them.
func TestAnalyzeAcrossHosts(t *testing.T) {
	orig, err := Discover(kinetoFixture)
	if err != nil {
		t.Fatal(err)
	}
	one, err := AnalyzeKineto(context.Background(), orig)
	if err != nil {
		t.Fatal(err)
	}
	for _, known := range []bool{true, false} {
		s, err := AnalyzeKineto(context.Background(), twoHosts(t, t.TempDir(), known))
		if err != nil {
			t.Fatal(err)
		}
		if s.Ranks[0].Label != "gpu-1_7477:TP00" || s.Ranks[1].Host != hostB || s.SlowestRank != "gpu-2_7477:TP01" {
			t.Errorf("labels %q %q (host %q), slowest %q", s.Ranks[0].Label, s.Ranks[1].Label, s.Ranks[1].Host, s.SlowestRank)
		}
		if !strings.HasPrefix(s.Reason, "gpu-2_7477:TP01 computes") {
			t.Errorf("reason %q", s.Reason)
		}
		for i := range s.Ranks {
			if s.Ranks[i].ComputeNs != one.Ranks[i].ComputeNs || s.Ranks[i].BusyNs != one.Ranks[i].BusyNs {
				t.Errorf("rank %d totals differ from the one-host analysis", i)
			}
		}
		aligned := s.StartNs == one.StartNs && s.EndNs == one.EndNs &&
			s.Ranks[1].Steps[0].StartNs == one.Ranks[1].Steps[0].StartNs
		if known != aligned || known != (s.UnalignedHosts == nil) {
			t.Errorf("offsets known %v: range [%d, %d] vs [%d, %d], step %d vs %d, unaligned hosts %v", known,
				s.StartNs, s.EndNs, one.StartNs, one.EndNs, s.Ranks[1].Steps[0].StartNs, one.Ranks[1].Steps[0].StartNs, s.UnalignedHosts)
		}
	}
	if one.Ranks[0].Host != "" || one.UnalignedHosts != nil {
		t.Errorf("one host: host %q, unaligned %v", one.Ranks[0].Host, one.UnalignedHosts)
	}
}
