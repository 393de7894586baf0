// Package diskspacetest gives tests a small disk to fill: disk-full faults need a real full
// disk, not a mock.
package diskspacetest

import (
	"os"
	"os/exec"
	"strconv"
	"testing"
)

// Small mounts a tmpfs of size bytes on a new temporary folder and unmounts it when the
// test ends. Mounting needs root: CI runs as root, so there (CI=true) a failed mount fails
// the test; elsewhere the test is skipped with the reason.
func Small(t testing.TB, size int64) string {
	t.Helper()
	dir := t.TempDir()
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+strconv.FormatInt(size, 10), "tmpfs", dir).CombinedOutput()
	if err != nil {
		if ci := os.Getenv("CI"); ci == "true" || ci == "1" {
			t.Fatalf("mounting a %d-byte tmpfs (root needed): %v %s", size, err, out)
		}
		t.Skipf("mounting a tmpfs needs root: %v %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", dir).Run() })
	return dir
}
