package torchprof

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
)

const kinetoFixture = "testdata/kineto-h100-2rank"

// readTrace decodes a whole (small) trace for comparison.
func readTrace(t *testing.T, path string) map[string]any {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var r io.Reader = f
	if strings.HasSuffix(path, ".gz") {
		zr, err := gzip.NewReader(f)
		if err != nil {
			t.Fatal(err)
		}
		r = zr
	}
	var m map[string]any
	if err := json.NewDecoder(r).Decode(&m); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return m
}

// eventsByRank groups canonical event texts by the rank label in their pid. Numbers
// decode to float64 on both sides, so "10038.560" and "10038.56" compare equal.
func eventsByRank(t *testing.T, m map[string]any) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, e := range m["traceEvents"].([]any) {
		ev := e.(map[string]any)
		pid, _ := ev["pid"].(string)
		label, _, _ := strings.Cut(pid, " ")
		b, err := json.Marshal(ev)
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

func TestMergeMatchesSGLang(t *testing.T) {
	files, err := Discover(kinetoFixture)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 2 {
		t.Fatalf("Discover found %d files, want 2 (the merged file must be skipped)", len(files))
	}
	out := filepath.Join(t.TempDir(), "merged.trace.json.gz")
	st, err := Merge(context.Background(), files, out, MergeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if st.Events != 9115 {
		t.Errorf("merged %d events, want 9115", st.Events)
	}
	got := readTrace(t, out)
	want := readTrace(t, filepath.Join(kinetoFixture, "sglang-merged/merged-1763900000.123456.trace.json.gz"))

	g, w := eventsByRank(t, got), eventsByRank(t, want)
	if len(g) != len(w) {
		t.Fatalf("ranks: got %d labels, want %d", len(g), len(w))
	}
	for label, wev := range w {
		gev := g[label]
		if len(gev) != len(wev) {
			t.Errorf("%s: %d events, want %d", label, len(gev), len(wev))
			continue
		}
		for i := range wev {
			if gev[i] != wev[i] {
				t.Errorf("%s: first differing event:\n got %s\nwant %s", label, gev[i], wev[i])
				break
			}
		}
	}
	delete(got, "traceEvents")
	delete(want, "traceEvents")
	if !reflect.DeepEqual(got, want) {
		for k := range want {
			if !reflect.DeepEqual(got[k], want[k]) {
				t.Errorf("top-level %q: got %v, want %v", k, got[k], want[k])
			}
		}
		for k := range got {
			if _, ok := want[k]; !ok {
				t.Errorf("top-level %q: not in SGLang's output", k)
			}
		}
	}
}

// writeGz writes a gzipped file for a test.
func writeGz(t *testing.T, path, text string) {
	t.Helper()
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	zw.Write([]byte(text))
	zw.Close()
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestMergeAlignsClocks(t *testing.T) {
	dir := t.TempDir()
	writeGz(t, filepath.Join(dir, "p-TP-0.trace.json.gz"),
		`{"baseTimeNanoseconds": 1000000000, "traceEvents": [{"ph":"X","pid":1,"tid":1,"ts":10.5,"dur":1}]}`)
	// Rank 1's clock starts 2.000250 ms later: its ts 10.5 is 2010.750 µs on rank 0's.
	writeGz(t, filepath.Join(dir, "p-TP-1.trace.json.gz"),
		`{"traceEvents": [{"ph":"X","pid":1,"tid":1,"ts":10.5,"dur":1}], "baseTimeNanoseconds": 1002000250}`)
	files, err := Discover(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "m.json.gz")
	st, err := Merge(context.Background(), files, out, MergeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if st.Ranks[1].ShiftNs != 2000250 {
		t.Errorf("shift = %d, want 2000250", st.Ranks[1].ShiftNs)
	}
	m := readTrace(t, out)
	ts := map[string]float64{}
	for _, e := range m["traceEvents"].([]any) {
		ev := e.(map[string]any)
		ts[ev["pid"].(string)] = ev["ts"].(float64)
	}
	if ts["[TP00] 1"] != 10.5 || ts["[TP01] 1"] != 2010.75 {
		t.Errorf("ts = %v, want [TP00] 1: 10.5, [TP01] 1: 2010.75", ts)
	}
	if m["baseTimeNanoseconds"].(float64) != 1e9 {
		t.Errorf("baseTimeNanoseconds = %v, want the first rank's", m["baseTimeNanoseconds"])
	}
}

func TestMergeFailsOnBadRank(t *testing.T) {
	for name, text := range map[string]string{
		"truncated": `{"traceEvents": [{"ph":"X","pid":1,"ts":1},{"ph":"X","pid":`,
		"garbage":   `{"traceEvents": [{"ph":"X","pid":1,"ts":1},{"ph" "X"}]}`,
		"not-event": `{"traceEvents": [1, 2]}`,
		"trailing":  `{"traceEvents": []} x`,
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			writeGz(t, filepath.Join(dir, "p-TP-0.trace.json.gz"), `{"traceEvents": [{"ph":"X","pid":1,"ts":1}]}`)
			bad := filepath.Join(dir, "p-TP-1.trace.json.gz")
			writeGz(t, bad, text)
			files, err := Discover(dir)
			if err != nil {
				t.Fatal(err)
			}
			out := filepath.Join(dir, "m.json.gz")
			_, err = Merge(context.Background(), files, out, MergeOptions{})
			if err == nil {
				t.Fatal("merge of a broken rank succeeded")
			}
			var se *SyntaxError
			if !strings.Contains(err.Error(), bad) || (!errors.As(err, &se) && !errors.Is(err, io.ErrUnexpectedEOF)) {
				t.Errorf("error %q should name %s and an offset", err, bad)
			}
			if _, err := os.Stat(out); !os.IsNotExist(err) {
				t.Errorf("a failed merge left %s behind", out)
			}
		})
	}
}

func TestRewriteEvent(t *testing.T) {
	tp1dp2 := RankFile{Framework: FrameworkSGLang, TP: 1, DP: 2, PP: -1, EP: -1, DCP: -1, Rank: -1}
	for _, tc := range []struct {
		name, in, want string
		shift          int64
	}{
		{"int pid", `{"pid": 435, "tid": 1}`, `{"pid": "[TP01-DP02] 435", "tid": 1}`, 0},
		{"string pid", `{"pid":"Spans","tid":0}`, `{"pid":"[TP01-DP02] Spans","tid":0}`, 0},
		{"empty pid", `{"pid":""}`, `{"pid":"[TP01-DP02] "}`, 0},
		{"float pid", `{"pid":2.0}`, `{"pid":"[TP01-DP02] 2.0"}`, 0},
		{"null pid", `{"pid":null}`, `{"pid":"[TP01-DP02] None"}`, 0},
		{"negative zero", `{"pid":-0}`, `{"pid":"[TP01-DP02] 0"}`, 0},
		{"no pid", `{"ph":"i"}`, `{"ph":"i"}`, 0},
		{"sort index device", `{"name": "process_sort_index", "pid": 3, "args": {"sort_index": 5000003}}`,
			`{"name": "process_sort_index", "pid": "[TP01-DP02] 3", "args": {"sort_index": 200000103}}`, 0},
		{"sort index string pid", `{"name":"process_sort_index","pid":"7","args":{}}`,
			`{"name":"process_sort_index","pid":"[TP01-DP02] 7","args":{"sort_index": 200000107}}`, 0},
		{"sort index cpu pid", `{"name":"process_sort_index","pid":4350,"args":{"sort_index":4350}}`,
			`{"name":"process_sort_index","pid":"[TP01-DP02] 4350","args":{"sort_index":4350}}`, 0},
		{"sort index named pid", `{"name":"process_sort_index","pid":"Spans","args":{"sort_index":1}}`,
			`{"name":"process_sort_index","pid":"[TP01-DP02] Spans","args":{"sort_index":1}}`, 0},
		{"thread sort index untouched", `{"name":"thread_sort_index","pid":1,"args":{"sort_index":9}}`,
			`{"name":"thread_sort_index","pid":"[TP01-DP02] 1","args":{"sort_index":9}}`, 0},
		{"shift", `{"ts": 4589780676192.716, "pid": 1}`, `{"ts": 4589780678193.966, "pid": "[TP01-DP02] 1"}`, 2001250},
		{"shift integer ts", `{"pid":1,"ts":10}`, `{"pid":"[TP01-DP02] 1","ts":9.999}`, -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var f eventFields
			end, err := parseEvent([]byte(tc.in), 0, &f)
			if err != nil || end != len(tc.in) {
				t.Fatalf("parseEvent: %d, %v", end, err)
			}
			got := string(rewriteEvent(nil, []byte(tc.in), &f, tp1dp2, tp1dp2.Label(), tc.shift))
			if got != tc.want {
				t.Errorf("got  %s\nwant %s", got, tc.want)
			}
		})
	}
}

func TestMergeProgressAndCancel(t *testing.T) {
	dir := t.TempDir()
	var b strings.Builder
	b.WriteString(`{"traceEvents": [`)
	for i := range 20000 {
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString(`{"ph":"X","cat":"kernel","name":"k","pid":0,"tid":7,"ts":1.5,"dur":2,"args":{"correlation":12345}}`)
	}
	b.WriteString(`]}`)
	for r := range 3 {
		writeGz(t, filepath.Join(dir, "p-TP-"+string(rune('0'+r))+".trace.json.gz"), b.String())
	}
	files, err := Discover(dir)
	if err != nil {
		t.Fatal(err)
	}
	var last, total int64
	st, err := Merge(context.Background(), files, filepath.Join(dir, "m.json.gz"), MergeOptions{
		Level:    6,
		Progress: func(d, tot int64) { last, total = d, tot },
	})
	if err != nil {
		t.Fatal(err)
	}
	if st.Events != 60000 || last != total || total != st.InputBytes {
		t.Errorf("events %d, progress %d/%d, input %d", st.Events, last, total, st.InputBytes)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	out := filepath.Join(dir, "c.json.gz")
	if _, err := Merge(ctx, files, out, MergeOptions{}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled merge: %v", err)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("a cancelled merge left %s", out)
	}
}
