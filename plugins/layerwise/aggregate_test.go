package layerwise

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nsys-agent/nsys-agent/internal/golden"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/ from the current output")

func analyze(t *testing.T, paths ...string) *Analysis {
	t.Helper()
	a := NewAnalysis()
	for _, p := range paths {
		if err := a.AddSQLite(context.Background(), p); err != nil {
			t.Fatal(err)
		}
	}
	return a
}

// TestLayerTableGolden pins the summary and layers.csv of the H100 export extended with
// SGLang layer ranges. After an intended change: go test ./plugins/layerwise -run
// TestLayerTableGolden -update, and read the diff.
func TestLayerTableGolden(t *testing.T) {
	a := analyze(t, extendedExport(t, t.TempDir()))
	sum, err := json.MarshalIndent(a.Summary(DefaultTop, SortSelf), "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	var csv bytes.Buffer
	if err := a.WriteCSV(&csv, SortSelf); err != nil {
		t.Fatal(err)
	}
	golden.Check(t, "testdata/h100-layers.summary.golden.json", string(sum)+"\n", *update)
	golden.Check(t, "testdata/h100-layers.golden.csv", csv.String(), *update)
	var warn bytes.Buffer
	for _, w := range a.Warnings() {
		warn.WriteString(w + "\n")
	}
	golden.Check(t, "testdata/h100-layers.warnings.golden.txt", warn.String(), *update)
}

// TestLayerTableByHand checks the streaming attribution against a plain SQL computation
// over the same extended export: for each module, the kernels whose launching call
// started inside one of its ranges on the range's thread, summed; and the rank's kernel
// time from the kernel table alone. (Indexes make the join quick; they are added after
// the analysis read the file.)
func TestLayerTableByHand(t *testing.T) {
	path := extendedExport(t, t.TempDir())
	a := analyze(t, path)
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, q := range []string{
		`CREATE INDEX rt ON CUPTI_ACTIVITY_KIND_RUNTIME (globalTid, start)`,
		`CREATE INDEX kc ON CUPTI_ACTIVITY_KIND_KERNEL (correlationId)`,
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	byHand := func(module string, tid int64) (calls, kernels, total int64) {
		t.Helper()
		like := "{'Module': '" + module + "'%"
		if err := db.QueryRow(`SELECT COUNT(*) FROM NVTX_EVENTS WHERE globalTid = ? AND text LIKE ?`, tid, like).Scan(&calls); err != nil {
			t.Fatal(err)
		}
		err := db.QueryRow(`SELECT COUNT(*), IFNULL(SUM(dur), 0) FROM (
			SELECT DISTINCT k.rowid, k.end - k.start AS dur
			FROM NVTX_EVENTS n
			JOIN CUPTI_ACTIVITY_KIND_RUNTIME r ON r.globalTid = n.globalTid AND r.start >= n.start AND r.start < n.end
			JOIN CUPTI_ACTIVITY_KIND_KERNEL k ON k.correlationId = r.correlationId AND (k.globalPid >> 24) = (r.globalTid >> 24)
			WHERE n.globalTid = ? AND n.text LIKE ?)`, tid, like).Scan(&kernels, &total)
		if err != nil {
			t.Fatal(err)
		}
		return calls, kernels, total
	}
	rowOf := func(pid int, module string) Module {
		t.Helper()
		for _, m := range a.rows(a.ranks[pid], SortSelf) {
			if m.Module == module {
				return m
			}
		}
		t.Fatalf("pid %d has no row %q", pid, module)
		return Module{}
	}
	tests := []struct {
		pid    int
		tid    int64
		module string
		self   string // the module whose kernels are exactly the self time ("" = self is 0)
	}{
		{627, tid627, "model.model.layers.0.self_attn", "model.model.layers.0.self_attn"},
		{628, tid628, "model.model.layers.0.self_attn", "model.model.layers.0.self_attn"},
		{628, tid628, "model.model.layers.1.mlp.down_proj", "model.model.layers.1.mlp.down_proj"},
		{628, tid628, "model.model.layers.1.mlp", ""}, // its kernel is down_proj's
		{628, tid628, "model", ""},
		{627, tid627, "model.model.layers.1.mlp", ""}, // an empty slot: calls, no kernels
		{627, tid627, "model.lm_head", ""},
	}
	for _, tc := range tests {
		t.Run(tc.module, func(t *testing.T) {
			calls, kernels, total := byHand(tc.module, tc.tid)
			m := rowOf(tc.pid, tc.module)
			if m.Calls != calls || m.Kernels != kernels || m.TotalNs != total {
				t.Errorf("pid %d %s: calls %d kernels %d total %d ns; by hand %d, %d, %d", tc.pid, tc.module, m.Calls, m.Kernels, m.TotalNs, calls, kernels, total)
			}
			if calls == 0 {
				t.Errorf("pid %d %s: no ranges by hand either: the fixture extension is broken", tc.pid, tc.module)
			}
			if want := total / max(calls, 1); m.MeanNs != want {
				t.Errorf("mean %d, want %d", m.MeanNs, want)
			}
			var self int64
			if tc.self != "" {
				_, _, self = byHand(tc.self, tc.tid)
			}
			if m.SelfNs != self {
				t.Errorf("pid %d %s: self %d ns, want %d", tc.pid, tc.module, m.SelfNs, self)
			}
		})
	}
	// The rank's kernel time, and the model root holding all of it but the unwrapped steps'.
	for _, pid := range []int{627, 628} {
		var n, ns int64
		if err := db.QueryRow(`SELECT COUNT(*), SUM(end - start) FROM CUPTI_ACTIVITY_KIND_KERNEL WHERE (globalPid >> 24) & 16777215 = ?`, pid).Scan(&n, &ns); err != nil {
			t.Fatal(err)
		}
		rk := a.ranks[pid]
		if rk.kernels != n || rk.kernelNs != ns {
			t.Errorf("pid %d: %d kernels, %d ns; the kernel table has %d, %d", pid, rk.kernels, rk.kernelNs, n, ns)
		}
		root := rowOf(pid, "model")
		if got := root.TotalNs + rk.outside.total; pid == 628 && got != ns {
			t.Errorf("pid %d: model %d + outside %d = %d ns, want all %d", pid, root.TotalNs, rk.outside.total, got, ns)
		}
		// Self times partition what was launched.
		var self int64
		for _, m := range a.rows(rk, SortSelf) {
			self += m.SelfNs
		}
		if self != ns {
			t.Errorf("pid %d: self times add up to %d ns, want the rank's %d", pid, self, ns)
		}
	}
	// Shares: model.model.layers.0.self_attn of rank 627 over its kernel time.
	m := rowOf(627, "model.model.layers.0.self_attn")
	if want := round4(float64(m.TotalNs) / float64(a.ranks[627].kernelNs)); m.Share != want || m.Share <= 0 || m.Share >= 1 {
		t.Errorf("share %v, want %v (strictly between 0 and 1: the first steps are outside)", m.Share, want)
	}
}

// TestLayerTableWithoutRanges: the untouched fixture has NVTX ranges, none of them layer
// ranges: each rank is warned about, and all its kernels are outside layer ranges.
func TestLayerTableWithoutRanges(t *testing.T) {
	a := analyze(t, h100Export)
	warns := a.Warnings()
	if len(warns) != 2 {
		t.Fatalf("warnings %q, want one per rank", warns)
	}
	for i, pid := range []string{"pid 627", "pid 628"} {
		for _, want := range []string{pid, "no SGLang layer ranges", FlagLayerwise, FlagNoCUDAGraph} {
			if !strings.Contains(warns[i], want) {
				t.Errorf("warning %q lacks %q", warns[i], want)
			}
		}
	}
	s := a.Summary(DefaultTop, SortSelf)
	if len(s.Ranks) != 2 {
		t.Fatalf("ranks %+v", s.Ranks)
	}
	for _, r := range s.Ranks {
		if len(r.Modules) != 0 || r.LayerRanges != 0 || r.InLayersNs != 0 || r.KernelNs == 0 {
			t.Errorf("rank %+v: want kernels and no modules", r)
		}
		rows := a.rows(a.ranks[r.PID], SortSelf)
		if len(rows) != 1 || rows[0].Module != outsideLayers || rows[0].TotalNs != r.KernelNs || rows[0].Share != 1 {
			t.Errorf("pid %d rows %+v, want one: all outside layer ranges", r.PID, rows)
		}
	}
}

// TestLayerTableHostile: the hostile range texts of the extension are skipped and
// counted; the hostile module name is kept but cannot drive a spreadsheet or a terminal.
func TestLayerTableHostile(t *testing.T) {
	a := analyze(t, extendedExport(t, t.TempDir()))
	rk := a.ranks[627]
	if rk.badRanges != int64(len(hostileTexts)) {
		t.Errorf("%d unreadable ranges counted, want %d", rk.badRanges, len(hostileTexts))
	}
	if a.ranks[628].otherRange != 381+2 {
		t.Errorf("pid 628: %d ranges that are no layer range, want its 381 steps and 2 others", a.ranks[628].otherRange)
	}
	found := false
	for _, w := range a.Warnings() {
		found = found || strings.Contains(w, "pid 627") && strings.Contains(w, "could not be read")
	}
	if !found {
		t.Errorf("no warning about the unreadable ranges: %q", a.Warnings())
	}
	var csv bytes.Buffer
	if err := a.WriteCSV(&csv, SortSelf); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(csv.String(), `"'=HYPERLINK(""http://x"")\x1b[31mred"`) || strings.Contains(csv.String(), "\x1b") {
		t.Errorf("the hostile module is not defused in the CSV:\n%s", csv.String())
	}
	raw, err := marshalSummary(a.Summary(maxTop, SortSelf))
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if ok, err := WriteTable(&out, raw, 0); !ok || err != nil {
		t.Fatal(ok, err)
	}
	if strings.Contains(out.String(), "\x1b") || !strings.Contains(out.String(), `\x1b[31mred`) {
		t.Errorf("show prints the escape raw:\n%s", out.String())
	}
}

// TestLayerTableAcrossReports: two exports of one window (two capture ranges) add up.
func TestLayerTableAcrossReports(t *testing.T) {
	dir := t.TempDir()
	one := extendedExport(t, dir)
	two := filepath.Join(dir, "report.2.sqlite")
	if err := os.Link(one, two); err != nil {
		t.Fatal(err)
	}
	single := analyze(t, one)
	double := analyze(t, one, two)
	for pid, rk := range single.ranks {
		d := double.ranks[pid]
		if d.kernels != 2*rk.kernels || d.kernelNs != 2*rk.kernelNs || d.ranges != 2*rk.ranges {
			t.Errorf("pid %d: two reports give %d kernels %d ns %d ranges, want twice %d %d %d", pid, d.kernels, d.kernelNs, d.ranges, rk.kernels, rk.kernelNs, rk.ranges)
		}
	}
	if s := double.Summary(1, SortSelf); len(s.Reports) != 2 || s.Reports[1] != "report.2.sqlite" {
		t.Errorf("reports %q", s.Reports)
	}
}

func TestAddSQLiteErrors(t *testing.T) {
	dir := t.TempDir()
	notDB := filepath.Join(dir, "junk.sqlite")
	if err := os.WriteFile(notDB, []byte("not sqlite at all, just text of some length"), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty.sqlite")
	db, err := sql.Open("sqlite", "file:"+empty)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`CREATE TABLE NVTX_EVENTS (start INTEGER, end INTEGER, text TEXT, globalTid INTEGER)`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	link := filepath.Join(dir, "link.sqlite")
	if err := os.Symlink(h100Export, link); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, path, want string
		is               error
	}{
		{"not a database", notDB, "not an SQLite database", nil},
		{"no kernels", empty, "--trace=cuda", ErrNoKernels},
		{"missing", filepath.Join(dir, "none.sqlite"), "no such file", nil},
		{"symbolic link", link, "not a regular file", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := NewAnalysis().AddSQLite(context.Background(), tc.path)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one saying %q", err, tc.want)
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("error %v is not %v", err, tc.is)
			}
		})
	}
}

func TestAddSQLiteCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := NewAnalysis().AddSQLite(ctx, h100Export)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v, want context.Canceled", err)
	}
}
