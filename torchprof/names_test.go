package torchprof

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseName(t *testing.T) {
	for _, tc := range []struct {
		name      string
		ok        bool
		framework string
		label     string
		prefix    string
		id, stage string
	}{
		{"1763900000.123456-TP-0.trace.json.gz", true, "sglang", "[TP00]", "", "1763900000.123456", ""},
		{"1763900000.123456-TP-3-DP-1.trace.json.gz", true, "sglang", "[TP03-DP01]", "", "1763900000.123456", ""},
		{"1763.5-TP-1-DP-2-PP-3-EP-4.trace.json.gz", true, "sglang", "[TP01-DP02-PP03-EP04]", "", "1763.5", ""},
		{"my-run-1763.5-TP-12-EP-2-DECODE.trace.json.gz", true, "sglang", "[TP12-EP02]", "my-run", "1763.5", "DECODE"},
		{"pre-1763.5-TP-0-EXTEND.trace.json", true, "sglang", "[TP00]", "pre", "1763.5", "EXTEND"},
		{"merged-1763.5.trace.json.gz", false, "", "", "", "", ""},
		{"dp0_pp0_tp1_dcp0_ep0_rank1.1763900000123456789.pt.trace.json.gz", true, "vllm", "[TP01]", "", "1763900000123456789", ""},
		{"myprefix_dp1_pp0_tp2_dcp0_ep3_rank9.17.pt.trace.json.gz", true, "vllm", "[TP02-DP01-EP03]", "myprefix", "17", ""},
		{"host-a_dp0_pp1_tp0_rank4.99.pt.trace.json", true, "vllm", "[TP00-PP01]", "host-a", "99", ""},
		{"worker-0-rank-3.1763900000123.pt.trace.json.gz", true, "vllm", "[RANK03]", "worker-0", "1763900000123", ""},
		{"trace.json.gz", false, "", "", "", "", ""},
		{"1763-TP-x.trace.json.gz", false, "", "", "", "", ""},
		{"notes.txt", false, "", "", "", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rf, ok := ParseName(filepath.Join("/some/dir", tc.name))
			if ok != tc.ok {
				t.Fatalf("ok = %v, want %v (%+v)", ok, tc.ok, rf)
			}
			if !ok {
				return
			}
			if rf.Framework != tc.framework || rf.Label() != tc.label || rf.Prefix != tc.prefix || rf.ProfileID != tc.id || rf.Stage != tc.stage {
				t.Errorf("got %s %s prefix %q id %q stage %q, want %s %s prefix %q id %q stage %q",
					rf.Framework, rf.Label(), rf.Prefix, rf.ProfileID, rf.Stage, tc.framework, tc.label, tc.prefix, tc.id, tc.stage)
			}
		})
	}
}

func TestSortIndexMatchesSGLang(t *testing.T) {
	rf, _ := ParseName("x-TP-3-DP-1-PP-2-EP-4.trace.json.gz")
	if got, want := rf.sortIndex(7), int64(1*100000000+4*1000000+2*10000+3*100+7); got != want {
		t.Errorf("sortIndex = %d, want %d", got, want)
	}
}

func touch(t *testing.T, dir string, names ...string) {
	t.Helper()
	for _, n := range names {
		if err := os.WriteFile(filepath.Join(dir, n), []byte("{}"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestDiscover(t *testing.T) {
	t.Run("sorted by dp, ep, pp, tp; merged output and strangers skipped", func(t *testing.T) {
		dir := t.TempDir()
		touch(t, dir, "p-1.5-TP-1-DP-0.trace.json.gz", "p-1.5-TP-0-DP-1.trace.json.gz", "p-1.5-TP-0-DP-0.trace.json.gz",
			"merged-1.5.trace.json.gz", "p-1.5-TP-0-memory.pickle", "README")
		files, err := Discover(dir)
		if err != nil {
			t.Fatal(err)
		}
		var labels []string
		for _, f := range files {
			labels = append(labels, f.Label())
		}
		if got := strings.Join(labels, " "); got != "[TP00-DP00] [TP01-DP00] [TP00-DP01]" {
			t.Errorf("order %s", got)
		}
	})
	t.Run("vllm ranks", func(t *testing.T) {
		dir := t.TempDir()
		touch(t, dir, "dp0_pp0_tp1_dcp0_ep0_rank1.200.pt.trace.json.gz", "dp0_pp0_tp0_dcp0_ep0_rank0.100.pt.trace.json.gz")
		files, err := Discover(dir)
		if err != nil || len(files) != 2 || files[0].TP != 0 {
			t.Fatalf("%v %+v", err, files)
		}
	})
	for name, names := range map[string][]string{
		"two captures":    {"1.5-TP-0.trace.json.gz", "2.5-TP-0.trace.json.gz"},
		"two stages":      {"1.5-TP-0-EXTEND.trace.json.gz", "1.5-TP-0-DECODE.trace.json.gz"},
		"rank twice vllm": {"dp0_pp0_tp0_dcp0_ep0_rank0.100.pt.trace.json.gz", "dp0_pp0_tp0_dcp0_ep0_rank0.200.pt.trace.json.gz"},
		"nothing":         {"notes.txt"},
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			touch(t, dir, names...)
			if files, err := Discover(dir); err == nil {
				t.Errorf("Discover succeeded: %+v", files)
			}
		})
	}
}

func FuzzParseName(f *testing.F) {
	for _, s := range []string{"1763900000.123456-TP-0.trace.json.gz", "a-b-TP-1-DP-2-PP-3-EP-4-DECODE.trace.json",
		"x_dp0_pp0_tp1_dcp0_ep0_rank1.17.pt.trace.json.gz", "w-rank-3.5.pt.trace.json.gz", "merged-1.trace.json.gz"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		rf, ok := ParseName(name)
		l := rf.Label()
		if !strings.HasPrefix(l, "[") || !strings.HasSuffix(l, "]") {
			t.Errorf("label %q", l)
		}
		if ok && rf.TP < 0 && rf.Rank < 0 {
			t.Errorf("recognised %q without a rank", name)
		}
	})
}
