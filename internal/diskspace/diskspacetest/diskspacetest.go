// Package diskspacetest gives tests a small disk to fill: disk-full faults need a real full
// disk, not a mock.
package diskspacetest

import (
	"os/exec"
	"strconv"
	"testing"

	"github.com/nsys-agent/nsys-agent/nsys/nsystest"
)

// Small mounts a tmpfs of size bytes on a new temporary folder and unmounts it when the
// test ends. Mounting needs root: CI runs as root, so there (CI=true) a failed mount fails
// the test; elsewhere the test is skipped with the reason (nsystest.Missing).
func Small(t testing.TB, size int64) string {
	t.Helper()
	dir := t.TempDir()
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+strconv.FormatInt(size, 10), "tmpfs", dir).CombinedOutput()
	if err != nil {
		nsystest.Missing(t, "mounting a %d-byte tmpfs needs root: %v %s", size, err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", dir).Run() })
	return dir
}
