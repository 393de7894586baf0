package serverprof

import (
	"testing"
)

func TestParseVLLMName(t *testing.T) {
	const ns = 1763900000123456789
	for _, tc := range []struct {
		name string
		ok   bool
		want VLLMName
	}{
		{"dp0_pp0_tp1_dcp0_ep0_rank1.1763900000123456789.pt.trace.json.gz", true,
			VLLMName{DP: 0, PP: 0, TP: 1, DCP: 0, EP: 0, Rank: 1, TimeNS: ns, Gzip: true}},
		{"exp_7_dp1_pp0_tp3_dcp0_ep3_rank7.1763900000123456789.pt.trace.json", true,
			VLLMName{Prefix: "exp_7", DP: 1, PP: 0, TP: 3, DCP: 0, EP: 3, Rank: 7, TimeNS: ns}},
		{"run_dp0_pp0_tp2.1763900000123456789.pt.trace.json.gz", true, // the older docs' <prefix>_dp<X>_pp<Y>_tp<Z>
			VLLMName{Prefix: "run", DP: 0, PP: 0, TP: 2, DCP: -1, EP: -1, Rank: -1, TimeNS: ns, Gzip: true}},
		{"rank5.1763900000123456789.pt.trace.json.gz", true, // parallel state not up
			VLLMName{DP: -1, PP: -1, TP: -1, DCP: -1, EP: -1, Rank: 5, TimeNS: ns, Gzip: true}},
		{"exp_ep3_dp0_pp0_tp0_dcp0_ep0_rank0.1.pt.trace.json.gz", true, // a prefix ending in a part out of order
			VLLMName{Prefix: "exp_ep3", DP: 0, PP: 0, TP: 0, DCP: 0, EP: 0, Rank: 0, TimeNS: 1, Gzip: true}},
		{"9f3c2a1e-rank-3.1763900000123456789.pt.trace.json.gz", true,
			VLLMName{Prefix: "9f3c2a1e", DP: -1, PP: -1, TP: -1, DCP: -1, EP: -1, Rank: 3, TimeNS: ns, Gzip: true, Legacy: true}},
		{"gpu-node.example_4242.async_llm.1763900000123456789.pt.trace.json.gz", true,
			VLLMName{Prefix: "gpu-node.example_4242", DP: -1, PP: -1, TP: -1, DCP: -1, EP: -1, Rank: -1, TimeNS: ns, Gzip: true, Frontend: true}},
		{"tp1_dp0.5.pt.trace.json.gz", false, VLLMName{}},             // out of order
		{"pp0.5.pt.trace.json.gz", false, VLLMName{}},                 // no tp, no rank
		{"_tp1.5.pt.trace.json.gz", false, VLLMName{}},                // empty prefix
		{"tp1.pt.trace.json.gz", false, VLLMName{}},                   // no time
		{"tp1.12345678901234567890.pt.trace.json", false, VLLMName{}}, // time past int64
		{"tp1.5.trace.json.gz", false, VLLMName{}},                    // SGLang's suffix
		{"tp9999999999.5.pt.trace.json.gz", false, VLLMName{}},        // rank too large
		{"x-rank-.5.pt.trace.json.gz", false, VLLMName{}},
		{".async_llm.5.pt.trace.json.gz", false, VLLMName{}},
		{"1763900000.1-TP-0.trace.json.gz", false, VLLMName{}},
	} {
		got, ok := ParseVLLMName(tc.name)
		if ok != tc.ok || (ok && got != tc.want) {
			t.Errorf("ParseVLLMName(%q) = %+v, %v; want %+v, %v", tc.name, got, ok, tc.want, tc.ok)
			continue
		}
		if ok && got.String() != tc.name {
			t.Errorf("%q formats back as %q", tc.name, got.String())
		}
	}
}

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		name      string
		kind      FileKind
		tp, rank  int
		framework string
	}{
		{"/d/exp-1763900000.1-TP-1-DP-0.trace.json.gz", RankTrace, 1, -1, "sglang"},
		{"/d/1763900000.1-TP-0-DECODE.trace.json.gz", RankTrace, 0, -1, "sglang"},
		{"/d/1763900000.1-TP-0-EXTEND.part0.trace.json.gz", OtherFile, 0, 0, ""}, // SGLang's by-stage part, merged away later
		{"/d/merged-1763900000.1.trace.json.gz", MergedTrace, 0, 0, ""},
		{"/d/1763900000.1-TP-0-memory.pickle", OtherFile, 0, 0, ""},
		{"/d/dp0_pp0_tp1_dcp0_ep0_rank1.5.pt.trace.json.gz", RankTrace, 1, 1, "vllm"},
		{"/d/h_1.async_llm.5.pt.trace.json.gz", FrontendTrace, 0, 0, ""},
		{"/d/profiler_out_0.txt", OtherFile, 0, 0, ""},
		{"/d/trace-rank-3.json", RankTrace, -1, 3, ""},
		{"/d/notes.json", OtherFile, 0, 0, ""},
	} {
		kind, rf := Classify(tc.name)
		if kind != tc.kind {
			t.Errorf("%s: %s, want %s", tc.name, kind, tc.kind)
			continue
		}
		if kind == RankTrace && (rf.TP != tc.tp || rf.Rank != tc.rank || rf.Framework != tc.framework || rf.Path != tc.name) {
			t.Errorf("%s: %+v", tc.name, rf)
		}
	}
}

// FuzzParseVLLMName: no name crashes the parser; a name it reads has a rank (or is the
// API process's); and what it reads formats to a name it reads the same way.
func FuzzParseVLLMName(f *testing.F) {
	for _, s := range []string{
		"dp0_pp0_tp1_dcp0_ep0_rank1.1763900000123456789.pt.trace.json.gz",
		"exp_dp1_pp0_tp3_dcp0_ep3_rank7.17.pt.trace.json",
		"run_tp3_rank5.1.pt.trace.json.gz",
		"rank0.1.pt.trace.json.gz",
		"9f3c2a1e-rank-3.17.pt.trace.json.gz",
		"host_1.async_llm.17.pt.trace.json.gz",
		"tp01.0017.pt.trace.json.gz",
		"a.b_tp1.2.pt.trace.json",
		"_.1.pt.trace.json",
		"1763900000.1-TP-0.trace.json.gz",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		n, ok := ParseVLLMName(name)
		if !ok {
			return
		}
		if !n.Frontend && n.TP < 0 && n.Rank < 0 {
			t.Fatalf("%q read without a rank: %+v", name, n)
		}
		for _, v := range []int{n.DP, n.PP, n.TP, n.DCP, n.EP, n.Rank} {
			if v < -1 || v > 1<<30 {
				t.Fatalf("%q: rank %d out of range: %+v", name, v, n)
			}
		}
		again, ok := ParseVLLMName(n.String())
		if !ok || again != n {
			t.Fatalf("%q read as %+v formats as %q, read back as %+v (%v)", name, n, n.String(), again, ok)
		}
		if kind, rf := Classify("/d/" + name); (kind == RankTrace) == n.Frontend || (kind == RankTrace && rf.Rank != n.Rank) {
			t.Fatalf("%q: Classify says %s %+v, ParseVLLMName %+v", name, kind, rf, n)
		}
	})
}
