package torchprof

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"syscall"
)

// ErrNotRegular: a path named like a trace or export is a FIFO, device, socket or
// directory. A FIFO would block open(2) until a writer comes and reads until it leaves,
// a device may never end: neither is a capture.
var ErrNotRegular = errors.New("not a regular file")

// openRegular opens path for reading when it is a regular file (symbolic links
// followed). O_NONBLOCK keeps open itself from waiting for a FIFO's writer (it does
// nothing to regular files), and the mode is checked on the opened file, so nothing can
// be swapped in between.
func openRegular(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		// A socket cannot be opened at all (ENXIO): say what it is.
		if fi, serr := os.Stat(path); serr == nil && !fi.Mode().IsRegular() {
			return nil, notRegular(path, fi.Mode())
		}
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, notRegular(path, fi.Mode())
	}
	return f, nil
}

// checkRegular says whether path (symbolic links followed) is a regular file, without
// opening it.
func checkRegular(path string) (fs.FileInfo, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, notRegular(path, fi.Mode())
	}
	return fi, nil
}

func notRegular(path string, m fs.FileMode) error {
	what := "something else"
	switch {
	case m&fs.ModeNamedPipe != 0:
		what = "a named pipe (FIFO)"
	case m&fs.ModeDevice != 0, m&fs.ModeCharDevice != 0:
		what = "a device"
	case m&fs.ModeSocket != 0:
		what = "a socket"
	case m.IsDir():
		what = "a directory"
	}
	return fmt.Errorf("%s is %s, %w", path, what, ErrNotRegular)
}
