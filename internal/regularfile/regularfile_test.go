package regularfile

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

func TestOpen(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "report.nsys-rep")
	_ = os.WriteFile(file, []byte("x"), 0o600)
	link := filepath.Join(dir, "link.nsys-rep")
	_ = os.Symlink(file, link)
	fifo := filepath.Join(dir, "fifo.nsys-rep")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	var nr *NotRegularError
	for _, c := range []struct {
		path   string
		follow bool
		ok     bool
	}{
		{file, false, true}, {link, true, true}, {link, false, false}, {fifo, true, false}, {dir, true, false},
	} {
		f, err := Open(c.path, c.follow)
		switch {
		case c.ok && err != nil:
			t.Errorf("%s (follow %v): %v", c.path, c.follow, err)
		case !c.ok && !errors.As(err, &nr):
			t.Errorf("%s (follow %v): want NotRegularError, got %v", c.path, c.follow, err)
		}
		if f != nil {
			f.Close()
		}
	}
	if _, err := Open(filepath.Join(dir, "none"), true); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing: %v", err)
	}
}
