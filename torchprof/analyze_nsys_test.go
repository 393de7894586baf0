package torchprof

import (
	"context"
	"database/sql"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/nsys-agent/nsys-agent/torchprof/nsysdb/nsysdbtest"
)

// hostExport copies the H100 fixture to dir/name.sqlite and runs each statement on the
// copy (a host whose clock runs ahead, a rank with fewer kernels).
func hostExport(t *testing.T, dir, name string, stmts ...string) string {
	t.Helper()
	return nsysdbtest.Copy(t, nsysFixture, dir, name+".sqlite", stmts...)
}

const (
	clockAhead   = 3_000_000_000 // host b's clock runs 3 s ahead of the coordinator's
	fewerKernels = `DELETE FROM CUPTI_ACTIVITY_KIND_KERNEL WHERE ((globalPid >> 24) & 16777215) = 628 AND rowid % 2 = 0`
)

// Two hosts' nsys windows of the same moment: host b's clock is 3 s ahead (its export's
// start says so, and the group record measured it), host a's pid 628 lost half its
// kernels. Ranks are labelled with their host, compared across hosts, and put on one clock.
func TestAnalyzeNsysHosts(t *testing.T) {
	dir := t.TempDir()
	a := hostExport(t, dir, "a", fewerKernels)
	b := hostExport(t, dir, "b", `UPDATE TARGET_INFO_SESSION_START_TIME SET utcEpochNs = utcEpochNs + 3000000000`)
	one, err := AnalyzeNsysSQLite(context.Background(), nsysFixture)
	if err != nil {
		t.Fatal(err)
	}
	s, err := AnalyzeNsysHosts(context.Background(), []NsysInput{
		{Path: a, Host: "gpu-a", HostOffsetKnown: true},
		{Path: b, Host: "gpu-b", HostOffsetNs: clockAhead, HostOffsetKnown: true},
	})
	if err != nil {
		t.Fatal(err)
	}
	var labels, hosts []string
	for _, r := range s.Ranks {
		labels, hosts = append(labels, r.Label), append(hosts, r.Host)
	}
	if !slices.Equal(labels, []string{"gpu-a:pid 627", "gpu-a:pid 628", "gpu-b:pid 627", "gpu-b:pid 628"}) ||
		!slices.Equal(hosts, []string{"gpu-a", "gpu-a", "gpu-b", "gpu-b"}) {
		t.Fatalf("ranks %q hosts %q", labels, hosts)
	}
	if s.SlowestRank != "gpu-b:pid 628" {
		t.Errorf("slowest %q: host a's pid 628 lost half its kernels, so host b's is the slowest", s.SlowestRank)
	}
	// Host b's ranks are exactly the single export's (same rows, same clock once aligned).
	for i := range 2 {
		if got, want := s.Ranks[2+i], one.Ranks[i]; got.Kernels != want.Kernels || got.KernelNs != want.KernelNs || got.BusyNs != want.BusyNs {
			t.Errorf("%s: %d kernels %d ns busy %d; alone: %d %d %d", got.Label, got.Kernels, got.KernelNs, got.BusyNs, want.Kernels, want.KernelNs, want.BusyNs)
		}
	}
	if len(s.UnalignedHosts) != 0 {
		t.Errorf("unaligned %q", s.UnalignedHosts)
	}
	// Aligned: the same moment on both hosts is the same time; rank 627 did not change.
	if sa, sb := s.Ranks[0].Steps[0].StartNs, s.Ranks[2].Steps[0].StartNs; sa != sb {
		t.Errorf("first step of pid 627: host a %d, host b %d; want equal once aligned", sa, sb)
	}
	if s.StartNs != one.StartNs || s.EndNs != one.EndNs {
		t.Errorf("range [%d, %d], want the single export's [%d, %d]", s.StartNs, s.EndNs, one.StartNs, one.EndNs)
	}

	// Without host b's offset, its ranks stay on its own clock (3 s late) and it is named.
	s, err = AnalyzeNsysHosts(context.Background(), []NsysInput{
		{Path: a, Host: "gpu-a", HostOffsetKnown: true},
		{Path: b, Host: "gpu-b"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(s.UnalignedHosts, []string{"gpu-b"}) {
		t.Errorf("unaligned %q, want gpu-b", s.UnalignedHosts)
	}
	if d := s.Ranks[2].Steps[0].StartNs - s.Ranks[0].Steps[0].StartNs; d != clockAhead {
		t.Errorf("host b's first step %d ns after host a's, want its clock's %d", d, clockAhead)
	}
	if s.SlowestRank != "gpu-b:pid 628" || s.Ranks[3].KernelNs != one.Ranks[1].KernelNs {
		t.Errorf("per-rank totals must not depend on alignment: slowest %q, %d ns", s.SlowestRank, s.Ranks[3].KernelNs)
	}

	// A host whose export has no kernels table is named in the error.
	empty := filepath.Join(dir, "empty.sqlite")
	db, _ := sql.Open("sqlite", "file:"+empty)
	_, _ = db.Exec("CREATE TABLE StringIds (id INTEGER, value TEXT)")
	db.Close()
	if _, err := AnalyzeNsysHosts(context.Background(), []NsysInput{{Path: a, Host: "gpu-a"}, {Path: empty, Host: "gpu-c"}}); err == nil || !strings.Contains(err.Error(), "host gpu-c: ") {
		t.Errorf("want an error naming host gpu-c, got %v", err)
	}
}
