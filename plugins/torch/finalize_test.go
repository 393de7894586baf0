package torch

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/nsys-agent/nsys-agent/plugins/shared"
	"github.com/nsys-agent/nsys-agent/torchprof"
)

// The real two-rank H100 Kineto capture in torchprof's testdata, and what SGLang's own
// ProfileMerger made of it (torchprof/testdata/kineto-h100-2rank/README.md).
const (
	fixtureDir    = "../../torchprof/testdata/kineto-h100-2rank"
	fixtureID     = "1763900000.123456"
	sglangMerged  = fixtureDir + "/sglang-merged/merged-" + fixtureID + ".trace.json.gz"
	fixtureMerged = "merged-" + fixtureID + ".trace.json.gz"
)

func fixtureRank(tp string) string { return fixtureID + "-TP-" + tp + ".trace.json.gz" }

// plant copies files into the window's server folder, as the server writes them.
func plant(t *testing.T, w shared.Window, files map[string][]byte) {
	t.Helper()
	dir := filepath.Join(w.Dir, w.ID)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func fixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(fixtureDir, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// eventsByLabel groups the canonical text of each event by the rank label of its pid;
// numbers decode to float64 on both sides, so 10038.560 and 10038.56 compare equal.
func eventsByLabel(t *testing.T, m map[string]any) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, e := range m["traceEvents"].([]any) {
		pid, _ := e.(map[string]any)["pid"].(string)
		label, _, _ := strings.Cut(pid, " ")
		b, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		out[label] = append(out[label], string(b))
	}
	for _, evs := range out {
		sort.Strings(evs)
	}
	return out
}

// TestFinalizeMatchesSGLangMerge is the golden test of the merge through the backend: the
// fixture's rank traces planted where the server writes them, Finalize's merged trace
// holds the same events under the same labels, and the same top-level keys, as SGLang's
// own merge of the same files (order within a rank aside). The summary names the rank the
// fixture made slow.
func TestFinalizeMatchesSGLangMerge(t *testing.T) {
	w := newWindow(t, "golden")
	plant(t, w, map[string][]byte{fixtureRank("0"): fixture(t, fixtureRank("0")), fixtureRank("1"): fixture(t, fixtureRank("1"))})
	b := New("test")
	res, err := b.Finalize(context.Background(), w, shared.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Warnings) > 0 {
		t.Errorf("warnings: %v", res.Warnings)
	}
	want := []string{fixtureRank("0"), fixtureRank("1"), fixtureMerged, SummaryFile, SummaryPage}
	if !slices.Equal(res.Artifacts, want) {
		t.Errorf("artifacts = %v, want %v", res.Artifacts, want)
	}
	// The server's folder is emptied and gone; nothing else is left.
	folder := append([]string{"manifest.json"}, want...)
	slices.Sort(folder)
	if names := topFiles(t, w.Dir); !slices.Equal(names, folder) {
		t.Errorf("window folder = %v, want %v", names, folder)
	}

	got, exp := readTrace(t, filepath.Join(w.Dir, fixtureMerged)), readTrace(t, sglangMerged)
	g, e := eventsByLabel(t, got), eventsByLabel(t, exp)
	if len(g) != len(e) {
		t.Fatalf("labels: got %d, SGLang %d", len(g), len(e))
	}
	total := 0
	for label, wev := range e {
		gev := g[label]
		total += len(gev)
		if len(gev) != len(wev) {
			t.Errorf("%s: %d events, SGLang %d", label, len(gev), len(wev))
			continue
		}
		for i := range wev {
			if gev[i] != wev[i] {
				t.Errorf("%s: first event that differs:\n got %s\nwant %s", label, gev[i], wev[i])
				break
			}
		}
	}
	if total != 9115 {
		t.Errorf("%d events, SGLang's merge has 9115", total)
	}
	delete(got, "traceEvents")
	delete(exp, "traceEvents")
	if !reflect.DeepEqual(got, exp) {
		t.Errorf("top-level keys differ from SGLang's:\n got %v\nwant %v", got, exp)
	}

	var s torchprof.Summary
	if err := json.Unmarshal(res.Summary, &s); err != nil {
		t.Fatal(err)
	}
	if s.SlowestRank != "TP01" || s.FastestRank != "TP00" || s.Reason == "" {
		t.Errorf("summary: slowest %q, fastest %q, reason %q; the fixture's rank 1 runs the longer sequence", s.SlowestRank, s.FastestRank, s.Reason)
	}
	if !slices.Equal(s.Inputs, []string{fixtureRank("0"), fixtureRank("1")}) {
		t.Errorf("summary inputs = %v, want the file names", s.Inputs)
	}
}

func gz(t *testing.T, text string) []byte {
	t.Helper()
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	if _, err := io.WriteString(zw, text); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// TestFinalizeLeavesOutMalformedRanks: a rank trace that does not parse is named in a
// warning and left out; the rest are merged and analyzed. With none readable, or none at
// all, the window fails.
func TestFinalizeLeavesOutMalformedRanks(t *testing.T) {
	good := fixture(t, fixtureRank("0"))
	truncated := fixture(t, fixtureRank("1"))
	truncated = truncated[:len(truncated)/2]
	for _, tc := range []struct {
		name     string
		files    map[string][]byte
		wantErr  string
		wantWarn []string // substrings, each in some warning
		ranks    int
	}{
		{name: "truncated gzip", files: map[string][]byte{fixtureRank("0"): good, fixtureRank("1"): truncated},
			wantWarn: []string{fixtureRank("1"), "[TP01]", "malformed"}, ranks: 1},
		{name: "not JSON", files: map[string][]byte{fixtureRank("0"): good, fixtureRank("1"): gz(t, `{"traceEvents": [{"ph" "X"}]}`)},
			wantWarn: []string{fixtureRank("1"), "malformed"}, ranks: 1},
		{name: "malformed event kept", files: map[string][]byte{"p-TP-0.trace.json.gz": gz(t, `{"traceEvents": [{"ph":"X","cat":"kernel","name":"k","pid":0,"tid":7,"ts":"x","dur":1}, {"ph":"X","cat":"kernel","name":"k","pid":0,"tid":7,"ts":1,"dur":2}]}`)},
			wantWarn: []string{"p-TP-0.trace.json.gz: 1 event"}, ranks: 1},
		{name: "all malformed", files: map[string][]byte{fixtureRank("0"): truncated}, wantErr: "every one is malformed"},
		{name: "no traces", files: map[string][]byte{"notes.txt": []byte("x")}, wantErr: "no rank trace"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWindow(t, "w")
			plant(t, w, tc.files)
			res, err := New("test").Finalize(context.Background(), w, shared.Discard)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Finalize = %v, want an error with %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, want := range tc.wantWarn {
				if !slices.ContainsFunc(res.Warnings, func(s string) bool { return strings.Contains(s, want) }) {
					t.Errorf("warnings %q lack %q", res.Warnings, want)
				}
			}
			s := readSummary(t, w.Dir)
			if len(s.Ranks) != tc.ranks {
				t.Errorf("summary has %d ranks, want %d", len(s.Ranks), tc.ranks)
			}
		})
	}
}
