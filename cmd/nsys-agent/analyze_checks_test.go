package main

import (
	"database/sql"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	_ "modernc.org/sqlite"
)

// brokenExport is a copy of the real H100 export with pid 628's kernels deleted: what
// a window where only rank 0 has kernels looks like.
func brokenExport(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	p := filepath.Join(dir, "window1.sqlite")
	in, err := os.Open(nsysFixture)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	out.Close()
	db, err := sql.Open("sqlite", p)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`DELETE FROM CUPTI_ACTIVITY_KIND_KERNEL WHERE ((globalPid >> 24) & 16777215) = 628`); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestAnalyzeChecks(t *testing.T) {
	broken := brokenExport(t)
	stream := t.TempDir()
	if err := os.WriteFile(filepath.Join(stream, "window1.qdstrm"), []byte("QDSTRM raw stream"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		code int
		want []string // in stdout, in order
	}{
		{"ok with every expectation", []string{"analyze", nsysFixture, "--expect-ranks", "2", "--expect-pids", "627,628", "--expect-nvtx"}, exitOK,
			[]string{"slowest rank: pid 628", "CHECKS", "no problem found", "not checked: report size", "verdict: ok (0 findings)"}},
		{"nothing expected says so", []string{"analyze", nsysFixture}, exitOK,
			[]string{"CHECKS", "not checked: expected ranks: none given", "not checked: NVTX: not expected", "verdict: ok"}},
		{"rank without kernels", []string{"analyze", broken, "--expect-ranks", "2"}, exitOK,
			[]string{"CHECKS", "BROKEN   launches-without-kernels [window1.sqlite]: pid 628 made 762 launches", "fix: ", "verdict: broken (1 finding)"}},
		{"more ranks expected than the window has", []string{"analyze", nsysFixture, "--expect-ranks", "3"}, exitOK,
			[]string{"BROKEN   rank-missing", "only 2 of 3 expected ranks", "verdict: broken"}},
		{"kineto ranks missing", []string{"analyze", kinetoFixture, "--expect-ranks", "4"}, exitOK,
			[]string{"found 2 of 4 expected rank traces (TP00, TP01): TP02, TP03 missing", "verdict: broken"}},
		{"size budget", []string{"analyze", nsysFixture, "--size-budget", "1KiB"}, exitOK,
			[]string{"not checked: report size: the report's size is not known"}},
		// analyze cannot read a lone stream, and the verdict says how to import it.
		{"lone stream", []string{"analyze", stream}, exitFailed,
			[]string{"CHECKS", "BROKEN   report-missing [window1.qdstrm]", "-i " + filepath.Join(stream, "window1.qdstrm"), "verdict: broken"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := runCLI(t, tc.args...).must(t, tc.code)
			rest := r.stdout
			for _, w := range tc.want {
				i := strings.Index(rest, w)
				if i < 0 {
					t.Fatalf("stdout lacks %q (in order):\n%s", w, r.stdout)
				}
				rest = rest[i+len(w):]
			}
		})
	}
}

func TestAnalyzeChecksJSON(t *testing.T) {
	var out struct {
		SlowestRank string `json:"slowest_rank"`
		Verdict     struct {
			Level    string `json:"level"`
			Findings []struct {
				ID    string `json:"id"`
				Level string `json:"level"`
				PID   int    `json:"pid"`
				Fix   string `json:"fix"`
			} `json:"findings"`
		} `json:"verdict"`
	}
	r := runCLI(t, "analyze", "-o", "json", brokenExport(t), "--expect-pids", "627,628").must(t, exitOK)
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, r.stdout)
	}
	v := out.Verdict
	if out.SlowestRank == "" || v.Level != "broken" || len(v.Findings) != 1 || v.Findings[0].ID != "launches-without-kernels" ||
		v.Findings[0].PID != 628 || v.Findings[0].Level != "broken" || v.Findings[0].Fix == "" {
		t.Errorf("want the summary and a broken verdict naming pid 628: %+v", out)
	}
}

func TestAnalyzeChecksUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		msg  string
	}{
		{[]string{"analyze", nsysFixture, "--expect-pids", "627,x"}, "want process ids"},
		{[]string{"analyze", nsysFixture, "--expect-ranks", "-1"}, "want a count of ranks"},
		{[]string{"analyze", nsysFixture, "--size-budget", "lots"}, "want a size such as 50MiB"},
	} {
		r := runCLI(t, tc.args...).must(t, exitUsage)
		if !strings.Contains(r.stderr, tc.msg) {
			t.Errorf("%v: stderr %q, want %q", tc.args, r.stderr, tc.msg)
		}
	}
}
