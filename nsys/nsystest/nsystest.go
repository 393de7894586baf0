// Package nsystest helps tests that run processes under nsys: it finds the real nsys and
// the scripted fake, collects process output safely, and ends a test whose prerequisite
// is missing the one way (fail in CI, skip elsewhere).
package nsystest

import (
	"bytes"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"

	"github.com/nsys-agent/nsys-agent/nsys"
)

// InCI reports whether tests run in CI (CI=true), where a missing nsys is a failure.
func InCI() bool { return os.Getenv("CI") == "true" || os.Getenv("CI") == "1" }

// Missing ends a test whose prerequisite (nsys, a tool, root) is not there: with CI=true
// it fails, since CI installs everything the suite needs and a skip would hide a test
// that never ran; elsewhere it skips, saying what is missing.
func Missing(t testing.TB, format string, args ...any) {
	t.Helper()
	if InCI() {
		t.Fatalf("CI=true and this test's prerequisite is missing: "+format, args...)
	}
	t.Skipf(format+" (CI=true turns this into a failure)", args...)
}

// Require returns the path of the real nsys; without one the test is Missing.
func Require(t testing.TB) string {
	t.Helper()
	p, err := nsys.Locate("")
	if err != nil {
		Missing(t, "nsys not installed (%v)", err)
	}
	return p
}

// FakePath is the scripted fake nsys that reproduces recorded nsys 2025.3.1 behaviour
// (start-later) and faults the real one cannot show on a CPU machine (a hung stop).
func FakePath(t testing.TB) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	p := filepath.Join(filepath.Dir(file), "..", "testdata", "fake-nsys")
	abs, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	return abs
}

// Buffer is an io.Writer safe for a process's output and concurrent reads.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *Buffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns everything written so far.
func (s *Buffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
