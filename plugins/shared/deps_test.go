package shared_test

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestOnlySharedImportsProto: the generated wire types stay behind plugins/shared
// (terraform-plugin-go's rule), so the contract's Go types are all a backend or the agent
// ever sees, and the wire can change without touching them. Tests count: a test that
// speaks proto directly would pin the wire too.
func TestOnlySharedImportsProto(t *testing.T) {
	const module = "github.com/nsys-agent/nsys-agent"
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", "list", "-deps", "-test", "-f",
		`{{.ImportPath}}|{{join .Imports ","}}`, "./...")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list in %s: %v", root, err)
	}
	// With -test, go list also names test variants: "P [P.test]", "P_test [P.test]", "P.test".
	owner := func(pkg string) string {
		pkg, _, _ = strings.Cut(pkg, " ")
		return strings.TrimSuffix(strings.TrimSuffix(pkg, ".test"), "_test")
	}
	allowed := func(pkg string) bool {
		for _, dir := range []string{"plugins/shared", "proto", "scripts/protogen"} {
			if p := module + "/" + dir; pkg == p || strings.HasPrefix(pkg, p+"/") {
				return true
			}
		}
		return false
	}
	checked := 0
	for line := range strings.SplitSeq(strings.TrimSpace(string(out)), "\n") {
		pkg, imports, _ := strings.Cut(line, "|")
		if !strings.HasPrefix(pkg, module) {
			continue
		}
		checked++
		for imp := range strings.SplitSeq(imports, ",") {
			if strings.HasPrefix(imp, module+"/proto/") && !allowed(owner(pkg)) {
				t.Errorf("%s imports %s: only plugins/shared may speak the wire (convert there)", pkg, imp)
			}
		}
	}
	if checked < 10 {
		t.Fatalf("go list named only %d packages of the module; the check saw nothing", checked)
	}
}
