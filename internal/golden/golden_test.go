package golden

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// recorder is a testing.TB that keeps what Errorf said.
type recorder struct {
	testing.TB
	msg string
}

func (r *recorder) Errorf(format string, args ...any) { r.msg = fmt.Sprintf(format, args...) }
func (r *recorder) Helper()                           {}

func TestCheck(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "x.golden")
	Check(t, path, "a\nb\n", true)
	if b, err := os.ReadFile(path); err != nil || string(b) != "a\nb\n" {
		t.Fatalf("update wrote %q (%v)", b, err)
	}
	r := &recorder{TB: t}
	Check(r, path, "a\nb\n", false)
	if r.msg != "" {
		t.Errorf("equal output reported: %s", r.msg)
	}
	Check(r, path, "a\nc\n", false)
	if !strings.Contains(r.msg, "differs at line 2") || !strings.Contains(r.msg, `got "c"`) {
		t.Errorf("a differing line: %s", r.msg)
	}
	r.msg = ""
	Check(r, path, "a", false)
	if !strings.Contains(r.msg, "differs at line 2") || !strings.Contains(r.msg, "<end of output>") {
		t.Errorf("a shorter output: %s", r.msg)
	}
}
