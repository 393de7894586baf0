package verdict

import (
	"encoding/json"
	"maps"
	"slices"
	"testing"
)

func TestLevelText(t *testing.T) {
	for _, tc := range []struct {
		l    Level
		text string
	}{{OK, "ok"}, {Warning, "warning"}, {Broken, "broken"}} {
		b, err := json.Marshal(tc.l)
		if err != nil || string(b) != `"`+tc.text+`"` {
			t.Errorf("%d: %s %v, want %q", tc.l, b, err, tc.text)
		}
		var back Level
		if err := json.Unmarshal(b, &back); err != nil || back != tc.l {
			t.Errorf("%s: back %d %v", b, back, err)
		}
	}
	var l Level
	if err := json.Unmarshal([]byte(`"fine"`), &l); err == nil {
		t.Error(`"fine" is not a level`)
	}
	if _, err := json.Marshal(Level(7)); err == nil {
		t.Error("Level(7) marshalled")
	}
}

func TestVerdictAddMerge(t *testing.T) {
	var v Verdict
	v.Add(Finding{ID: IDNVTXMissing, Level: Warning, PID: 2})
	v.Add(Finding{ID: IDRankMissing, Level: Broken, PID: 1}, Finding{ID: IDNVTXMissing, Level: Warning, PID: 1})
	var w Verdict
	w.Add(Finding{ID: IDReportSize, Level: Warning})
	w.skip("NVTX: not expected")
	v.Merge(w)
	v.Merge(w) // the same skipped check is said once
	if v.Level != Broken {
		t.Errorf("level %s, want the worst finding's", v.Level)
	}
	got := ids(v)
	want := []string{"broken rank-missing pid 1", "warning nvtx-missing pid 1", "warning nvtx-missing pid 2", "warning report-size", "warning report-size"}
	if !slices.Equal(got, want) {
		t.Errorf("order %q, want worst first, then by id and pid: %q", got, want)
	}
	if !slices.Equal(v.Skipped, []string{"NVTX: not expected"}) {
		t.Errorf("skipped %q", v.Skipped)
	}
	if c := v.Count(); !maps.Equal(c, map[string]int{IDRankMissing: 1, IDNVTXMissing: 2, IDReportSize: 2}) {
		t.Errorf("count %v", c)
	}
	if b, _ := json.Marshal(Verdict{}.done()); string(b) != `{"level":"ok","findings":[]}` {
		t.Errorf("an empty verdict: %s", b)
	}
}

func TestIDsUnique(t *testing.T) {
	seen := map[string]bool{}
	for _, id := range IDs {
		if seen[id] || id == "" {
			t.Errorf("ID %q repeated or empty", id)
		}
		seen[id] = true
	}
}
