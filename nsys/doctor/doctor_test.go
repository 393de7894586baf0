package doctor

import (
	"context"
	"strings"
	"testing"

	"github.com/nsys-agent/nsys-agent/nsys/nsystest"
)

// TestRunRealNsys runs every check on this host with the real nsys: the nsys checks pass
// and each check reports in the registry's order.
func TestRunRealNsys(t *testing.T) {
	path := nsystest.Require(t)
	rs := Run(context.Background(), Config{Nsys: path, DataDir: t.TempDir(), Listen: "127.0.0.1:0"})
	byName := map[string]Result{}
	var order []string
	for _, r := range rs {
		byName[r.Check] = r
		order = append(order, r.Check)
	}
	for _, name := range []string{"nsys", "nsys capabilities", "importer", "port"} {
		if r := byName[name]; r.Status != OK {
			t.Errorf("%s on this host: %+v", name, r)
		}
	}
	if !strings.HasPrefix(byName["nsys"].Finding, "nsys 20") {
		t.Errorf("nsys finding %q does not give the version", byName["nsys"].Finding)
	}
	want := "nsys,nsys capabilities,nsys sessions,orphaned servers,importer,data dir,TMPDIR,cpu sampling,port,gpu"
	if got := strings.Join(order, ","); !strings.HasPrefix(got, want) {
		t.Errorf("checks ran as %s, want %s first", got, want)
	}
	for _, r := range rs {
		if r.Status != OK && r.Fix == "" && r.Check != "cpu sampling" {
			t.Errorf("%s is %s with no fix", r.Check, r.Status)
		}
	}
}

// TestRunNoNsys: without nsys only the nsys check fails (with the install hint), and the
// checks that need it are left out rather than failing again.
func TestRunNoNsys(t *testing.T) {
	rs := Run(context.Background(), Config{Nsys: "/nonexistent/nsys", DataDir: t.TempDir(), Listen: "127.0.0.1:0"})
	if got := strings.Join(Failed(rs), ","); got != "nsys" {
		t.Fatalf("failed: %s, want nsys only (%+v)", got, rs)
	}
	if !strings.Contains(rs[0].Finding, "/nonexistent/nsys") || !strings.Contains(rs[0].Fix, "install-nsys.sh") {
		t.Errorf("nsys result %+v does not say where it looked and how to install", rs[0])
	}
	for _, r := range rs {
		if r.Check == "importer" || r.Check == "nsys sessions" {
			t.Errorf("%s checked without nsys: %+v", r.Check, r)
		}
	}
}

func TestFailed(t *testing.T) {
	rs := []Result{{Check: "a", Status: OK}, {Check: "b", Status: Fail}, {Check: "c", Status: Warn}, {Check: "d", Status: Fail}}
	if got := strings.Join(Failed(rs), ","); got != "b,d" {
		t.Errorf("Failed = %s, want b,d", got)
	}
	if Failed(rs[:1]) != nil {
		t.Error("no failure, no names")
	}
}
