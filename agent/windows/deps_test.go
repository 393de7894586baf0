package windows

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const sharedPkg = "github.com/nsys-agent/nsys-agent/plugins/shared"

func deps(t *testing.T, pkg string) []string {
	t.Helper()
	out, err := exec.Command("go", "list", "-deps", pkg).Output()
	if err != nil {
		t.Fatalf("go list -deps %s: %v", pkg, err)
	}
	return strings.Fields(string(out))
}

// TestSpeaksNeitherHTTPNorNsys: the state machine knows backends and the target through
// interfaces only. HTTP codes belong to the API, nsys to its backend, analysis to
// torchprof; an import of any of them here is a wall a new backend would hit.
// plugins/shared holds the contract and, by design, its go-plugin gRPC wire (which
// brings net/http along): what counts is what this package brings in itself.
func TestSpeaksNeitherHTTPNorNsys(t *testing.T) {
	all := deps(t, ".")
	if !slices.Contains(all, sharedPkg) {
		t.Fatal("agent/windows should know backends through plugins/shared")
	}
	viaShared := deps(t, sharedPkg)
	own := slices.DeleteFunc(slices.Clone(all), func(p string) bool { return slices.Contains(viaShared, p) })
	if slices.Contains(own, "net/http") {
		t.Error("agent/windows depends on net/http (other than through plugins/shared's wire)")
	}
	for _, banned := range []string{
		"github.com/nsys-agent/nsys-agent/nsys",
		"github.com/nsys-agent/nsys-agent/torchprof",
		"github.com/nsys-agent/nsys-agent/agent",
	} {
		if slices.Contains(all, banned) {
			t.Errorf("agent/windows depends on %s", banned)
		}
	}
}
