package regularfile

import (
	"errors"
	"io/fs"
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

func TestCopyNew(t *testing.T) {
	dir := t.TempDir()
	src, dst := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	if err := os.WriteFile(src, []byte("report"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := CopyNew(src, dst, false); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(dst); err != nil || string(b) != "report" {
		t.Errorf("copy holds %q (%v)", b, err)
	}
	if fi, _ := os.Stat(dst); fi.Mode().Perm() != 0o600 {
		t.Errorf("copy mode %v, want 0600", fi.Mode())
	}
	if err := CopyNew(src, dst, false); !errors.Is(err, fs.ErrExist) {
		t.Errorf("copy onto an existing file: %v", err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(src, link); err != nil {
		t.Fatal(err)
	}
	if err := CopyNew(link, filepath.Join(dir, "c"), false); err == nil {
		t.Error("a link was copied with followLinks false")
	}
	if _, err := os.Stat(filepath.Join(dir, "c")); !os.IsNotExist(err) {
		t.Errorf("a refused copy left its destination: %v", err)
	}
}
