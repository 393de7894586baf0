package windows

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// TestSpeaksNeitherHTTPNorNsys: the state machine knows backends and the target through
// interfaces only. HTTP codes belong to the API, nsys to its backend, analysis to
// torchprof; an import of any of them here is a wall a new backend would hit.
func TestSpeaksNeitherHTTPNorNsys(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	deps := strings.Fields(string(out))
	for _, banned := range []string{
		"net/http",
		"github.com/nsys-agent/nsys-agent/nsys",
		"github.com/nsys-agent/nsys-agent/torchprof",
		"github.com/nsys-agent/nsys-agent/agent",
	} {
		if slices.Contains(deps, banned) {
			t.Errorf("agent/windows depends on %s", banned)
		}
	}
	if !slices.Contains(deps, "github.com/nsys-agent/nsys-agent/plugins/shared") {
		t.Error("agent/windows should know backends through plugins/shared")
	}
}
