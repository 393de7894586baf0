package torchprof

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// malformedTrace is one rank whose events carry each kind of malformed field once or
// twice, between good kernels; marks are unique texts to find each event's offset.
func malformedTrace() (text string, marks map[string]string) {
	kernel := func(name, fields string) string {
		return `{"ph": "X", "cat": "kernel", "name": "` + name + `", "tid": 7, ` + fields + `}`
	}
	evs := []string{
		kernel("good1", `"pid": 0, "ts": 100, "dur": 10`),
		kernel("ts-string", `"pid": 0, "ts": "110", "dur": 10`),
		kernel("ts-null", `"pid": 0, "ts": null, "dur": 10`),
		kernel("dur-object", `"pid": 0, "ts": 120, "dur": {"us": 10}`),
		kernel("dur-negative", `"pid": 0, "ts": 130, "dur": -5`),
		kernel("no-pid", `"ts": 140, "dur": 10`),
		`{"ph": "i", "name": "instant-no-pid", "ts": 145, "s": "g"}`,
		kernel("dur-minus-zero", `"pid": 0, "ts": 150, "dur": -0.0`),
		kernel("ts-bool", `"pid": 0, "ts": true, "dur": 10`),
		kernel("no-dur", `"pid": 0, "ts": 160`),
		kernel("ts-huge", `"pid": 0, "ts": 1e300, "dur": 10`),
		kernel("good2", `"pid": 0, "ts": 200, "dur": 10`),
	}
	text = `{"traceEvents": [` + strings.Join(evs, ", ") + `], "baseTimeNanoseconds": 0}`
	marks = map[string]string{}
	for _, n := range []string{"ts-string", "dur-object", "dur-negative", "no-pid", "ts-bool", "no-dur", "ts-huge", "ts-null", "instant-no-pid"} {
		marks[n] = `"name": "` + n + `"`
	}
	return text, marks
}

// offsetOf is the offset of the '{' of the event holding mark.
func offsetOf(t *testing.T, text, mark string) int64 {
	t.Helper()
	i := strings.Index(text, mark)
	if i < 0 {
		t.Fatalf("no %s in the trace", mark)
	}
	return int64(strings.LastIndexByte(text[:i], '{'))
}

// TestMalformedFieldsWarn: a non-numeric ts or dur, a negative dur or a missing pid
// used to be read as nothing (the kernel silently dropped, or counted when only its pid
// was missing). Now each kind is counted per file with the first offset: analyze skips
// those events and says so, merge keeps them unchanged and says so.
func TestMalformedFieldsWarn(t *testing.T) {
	dir := t.TempDir()
	text, marks := malformedTrace()
	bad := filepath.Join(dir, "w-TP-0.trace.json.gz")
	writeGz(t, bad, text)
	good := filepath.Join(dir, "w-TP-1.trace.json.gz")
	writeGz(t, good, `{"traceEvents": [{"ph": "X", "cat": "kernel", "name": "good1", "pid": 0, "tid": 7, "ts": 100, "dur": 10}]}`)
	files, err := Discover(dir)
	if err != nil {
		t.Fatal(err)
	}
	at := func(mark string) int64 { return offsetOf(t, text, marks[mark]) }
	w := func(p problem, n int64, mark, action string) Warning {
		return Warning{Input: bad, Problem: problemText[p], Action: action, Events: n, FirstOffset: at(mark)}
	}
	common := func(action string) []Warning {
		return []Warning{
			w(probTsNotNumber, 3, "ts-string", action),
			w(probDurNotNumber, 1, "dur-object", action),
			w(probDurNegative, 1, "dur-negative", action),
			w(probNoPid, 2, "no-pid", action),
		}
	}

	s, err := AnalyzeKineto(context.Background(), files)
	if err != nil {
		t.Fatal(err)
	}
	want := append(common("skipped"), w(probNoTsDur, 1, "no-dur", "skipped"), w(probTsRange, 1, "ts-huge", "skipped"))
	if !reflect.DeepEqual(s.Warnings, want) {
		t.Errorf("analyze warnings:\n got %+v\nwant %+v", s.Warnings, want)
	}
	r := s.Ranks[0]
	if r.Kernels != 3 || r.KernelNs != 20000 {
		t.Errorf("%s: %d kernels, %d ns; want the 3 well-formed ones (good1, good2, dur -0.0), 20000 ns", r.Label, r.Kernels, r.KernelNs)
	}
	// The warnings reach the manifest's compact summary, the JSON and the HTML report.
	if c := s.Compact(); !reflect.DeepEqual(c.Warnings, s.Warnings) {
		t.Errorf("compact summary dropped the warnings")
	}
	b, _ := json.Marshal(s)
	if !bytes.Contains(b, []byte(`"warnings":[{"input":`)) {
		t.Errorf("JSON lacks warnings: %s", b)
	}
	var page bytes.Buffer
	if err := s.WriteHTML(&page); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(page.String(), "3 events: ts is not a number") {
		t.Errorf("HTML report lacks the warnings")
	}

	out := filepath.Join(dir, "merged.trace.json.gz")
	st, err := Merge(context.Background(), files, out, MergeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if want := common("kept unchanged"); !reflect.DeepEqual(st.Warnings, want) {
		t.Errorf("merge warnings:\n got %+v\nwant %+v", st.Warnings, want)
	}
	// Kept unchanged (but for the pid label), as SGLang keeps them.
	merged := readTrace(t, out)
	var names []string
	for _, e := range merged["traceEvents"].([]any) {
		ev := e.(map[string]any)
		names = append(names, ev["name"].(string))
		if ev["name"] == "ts-string" && ev["ts"] != "110" {
			t.Errorf("merge changed ts \"110\" to %v", ev["ts"])
		}
	}
	if len(names) != 13 {
		t.Errorf("merge kept %d events, want all 13: %v", len(names), names)
	}

	// Well-formed traces give no warnings: the field stays out of the JSON.
	fixture, err := Discover(kinetoFixture)
	if err != nil {
		t.Fatal(err)
	}
	if s, err := AnalyzeKineto(context.Background(), fixture); err != nil || s.Warnings != nil {
		t.Errorf("fixture: %v, warnings %+v", err, s.Warnings)
	}
}

// TestKernelNamesBounded: a rank keeps per-name figures for maxKernelNames names; a
// trace with more (only a hostile one) has the rest counted under catch-alls, and says
// so, instead of growing a map with every kernel.
func TestKernelNamesBounded(t *testing.T) {
	dir := t.TempDir()
	var b strings.Builder
	b.WriteString(`{"traceEvents": [`)
	const extra = 10
	for i := range maxKernelNames + extra {
		if i > 0 {
			b.WriteString(",")
		}
		name := fmt.Sprintf("k%d", i)
		if i >= maxKernelNames && i%2 == 0 {
			name = fmt.Sprintf("ncclKernel%d", i)
		}
		fmt.Fprintf(&b, `{"ph":"X","cat":"kernel","name":"%s","pid":0,"tid":7,"ts":%d,"dur":1}`, name, i)
	}
	b.WriteString(`]}`)
	p := filepath.Join(dir, "n-TP-0.trace.json.gz")
	writeGz(t, p, b.String())
	s, err := AnalyzeKineto(context.Background(), RankFilesFromPaths([]string{p}))
	if err != nil {
		t.Fatal(err)
	}
	r := s.Ranks[0]
	if r.Kernels != maxKernelNames+extra || r.CommNs != extra/2*1000 {
		t.Errorf("%d kernels, comm %d ns; want all %d, %d ns", r.Kernels, r.CommNs, maxKernelNames+extra, extra/2*1000)
	}
	first := offsetOf(t, b.String(), fmt.Sprintf(`"ncclKernel%d"`, maxKernelNames))
	want := []Warning{{Input: p, Problem: problemText[probManyNames], Events: extra, FirstOffset: first,
		Action: `counted as "(other kernels)" or "(other communication kernels)"`}}
	if !reflect.DeepEqual(s.Warnings, want) {
		t.Errorf("warnings\n got %+v\nwant %+v", s.Warnings, want)
	}
}

// TestNsysRowsEndBeforeStart: rows that end before they start are skipped and counted
// (they used to count as negative time).
func TestNsysRowsEndBeforeStart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bad.sqlite")
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		`CREATE TABLE StringIds (id INTEGER PRIMARY KEY, value TEXT NOT NULL)`,
		`CREATE TABLE CUPTI_ACTIVITY_KIND_KERNEL (start INTEGER NOT NULL, end INTEGER NOT NULL, globalPid INTEGER, demangledName INTEGER, shortName INTEGER)`,
		`CREATE TABLE CUPTI_ACTIVITY_KIND_MEMSET (start INTEGER NOT NULL, end INTEGER NOT NULL, globalPid INTEGER)`,
		`INSERT INTO StringIds VALUES (1, 'gemm')`,
		`INSERT INTO CUPTI_ACTIVITY_KIND_KERNEL VALUES (100, 150, 7 << 24, 1, 1), (300, 200, 7 << 24, 1, 1), (400, 399, 7 << 24, 1, 1)`,
		`INSERT INTO CUPTI_ACTIVITY_KIND_MEMSET VALUES (10, 5, 7 << 24), (160, 170, 7 << 24)`,
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()
	s, err := AnalyzeNsysSQLite(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	if r := s.Ranks[0]; r.Kernels != 1 || r.KernelNs != 50 || r.BusyNs != 60 || r.SpanNs != 70 {
		t.Errorf("%+v: want 1 kernel of 50 ns, 60 ns busy over 70 ns", r)
	}
	want := []Warning{
		{Input: path, Problem: "end before start in CUPTI_ACTIVITY_KIND_KERNEL", Action: "skipped", Events: 2},
		{Input: path, Problem: "end before start in CUPTI_ACTIVITY_KIND_MEMSET", Action: "skipped", Events: 1},
	}
	if !reflect.DeepEqual(s.Warnings, want) {
		t.Errorf("warnings\n got %+v\nwant %+v", s.Warnings, want)
	}
}
