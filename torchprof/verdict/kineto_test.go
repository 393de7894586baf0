package verdict

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/nsys-agent/nsys-agent/torchprof"
)

const (
	tp0Name    = "1763900000.123456-TP-0.trace.json.gz"
	tp1Name    = "1763900000.123456-TP-1.trace.json.gz"
	mergedName = "merged-1763900000.123456.trace.json.gz"
)

// kinetoWindow is a folder with copies of the real H100 rank traces (tp0, tp1 to copy
// or not) and SGLang's own merge of them (merged).
func kinetoWindow(t *testing.T, tp0, tp1, merged bool) string {
	t.Helper()
	dir := t.TempDir()
	if tp0 {
		copyFile(t, filepath.Join(kinetoFixture, tp0Name), dir, tp0Name)
	}
	if tp1 {
		copyFile(t, filepath.Join(kinetoFixture, tp1Name), dir, tp1Name)
	}
	if merged {
		copyFile(t, kinetoMerged, dir, mergedName)
	}
	return dir
}

// rewriteTrace rewrites a real rank trace through edit, which gets its events.
func rewriteTrace(t *testing.T, path string, edit func(events []any) []any) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(zr)
	dec.UseNumber()
	var trace map[string]any
	if err := dec.Decode(&trace); err != nil {
		t.Fatal(err)
	}
	f.Close()
	trace["traceEvents"] = edit(trace["traceEvents"].([]any))
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if err := json.NewEncoder(zw).Encode(trace); err != nil {
		t.Fatal(err)
	}
	zw.Close()
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

func isKernel(ev any) bool {
	m, ok := ev.(map[string]any)
	return ok && m["cat"] == "kernel"
}

// truncate keeps the first third of a file, as a writer stopped mid-way leaves it.
func truncate(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b[:len(b)/3], 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestCheckKinetoDir(t *testing.T) {
	two := Expect{RankCount: 2}
	for _, tc := range []struct {
		name     string
		tp0, tp1 bool
		merged   bool
		change   func(t *testing.T, dir string)
		expect   Expect
		want     []string
	}{
		{"untouched with SGLang's merge", true, true, true, nil, two, nil},
		{"untouched, nothing expected", true, true, false, nil, Expect{}, nil},
		{"rank 1 trace truncated", true, true, true, func(t *testing.T, dir string) { truncate(t, filepath.Join(dir, tp1Name)) },
			two, []string{"broken trace-unreadable TP01"}},
		{"rank 1 trace not JSON", true, true, false, func(t *testing.T, dir string) {
			var buf bytes.Buffer
			zw := gzip.NewWriter(&buf)
			zw.Write([]byte(`{"traceEvents": [{"ph": "X", "cat": "kernel", "name": "gemm", "ts": 1, "dur": 2},`))
			zw.Close()
			os.WriteFile(filepath.Join(dir, tp1Name), buf.Bytes(), 0o644)
		}, two, []string{"broken trace-unreadable TP01"}},
		{"rank 1 trace missing", true, false, false, nil, two, []string{"broken rank-missing"}},
		{"rank 1 trace missing, nothing expected", true, false, false, nil, Expect{}, nil},
		{"rank 1 without kernels", true, true, false, func(t *testing.T, dir string) {
			rewriteTrace(t, filepath.Join(dir, tp1Name), func(evs []any) []any {
				return slices.DeleteFunc(evs, isKernel)
			})
		}, two, []string{"broken no-kernels TP01"}},
		{"rank 1 kernel with a string ts", true, true, false, func(t *testing.T, dir string) {
			rewriteTrace(t, filepath.Join(dir, tp1Name), func(evs []any) []any {
				i := slices.IndexFunc(evs, isKernel)
				evs[i].(map[string]any)["ts"] = "soon"
				return evs
			})
		}, two, []string{"warning events-skipped TP01"}},
		{"merged trace truncated", true, true, true, func(t *testing.T, dir string) { truncate(t, filepath.Join(dir, mergedName)) },
			two, []string{"broken merged-trace-invalid"}},
		{"merged trace of rank 0 alone", true, true, false, func(t *testing.T, dir string) {
			// A real merge that left a rank out.
			files := torchprof.RankFilesFromPaths([]string{filepath.Join(dir, tp0Name)})
			if _, err := torchprof.Merge(context.Background(), files, filepath.Join(dir, mergedName), torchprof.MergeOptions{}); err != nil {
				t.Fatal(err)
			}
		}, two, []string{"broken merged-trace-invalid"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := kinetoWindow(t, tc.tp0, tc.tp1, tc.merged)
			if tc.change != nil {
				tc.change(t, dir)
			}
			v, err := CheckDir(context.Background(), dir, Tools{}, tc.expect)
			if err != nil {
				t.Fatal(err)
			}
			if got := ids(v); !slices.Equal(got, tc.want) {
				t.Errorf("findings %q, want %q\n%+v", got, tc.want, v.Findings)
			}
			for _, f := range v.Findings {
				if f.Message == "" || f.Fix == "" {
					t.Errorf("finding without message or fix: %+v", f)
				}
			}
			checkGolden(t, "kineto-"+tc.name, dir, v)
		})
	}
}

// A rank file that is named but absent (given explicitly, as analyze FILES does).
func TestCheckKinetoMissingFile(t *testing.T) {
	dir := kinetoWindow(t, true, false, false)
	files := torchprof.RankFilesFromPaths([]string{filepath.Join(dir, tp0Name), filepath.Join(dir, tp1Name)})
	v, err := CheckKineto(context.Background(), files, "", Expect{RankCount: 2})
	if err != nil {
		t.Fatal(err)
	}
	if got := ids(v); !slices.Equal(got, []string{"broken trace-unreadable TP01"}) {
		t.Errorf("findings %q, want the absent TP01 trace", got)
	}
	checkGolden(t, "kineto-named-file-absent", dir, v)
}
