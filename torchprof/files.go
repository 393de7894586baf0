package torchprof

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/nsys-agent/nsys-agent/internal/regularfile"
)

// ErrNotRegular: a path named like a trace or export is a FIFO, device, socket or
// directory. A FIFO would block open(2) until a writer comes and reads until it leaves,
// a device may never end: neither is a capture.
var ErrNotRegular = errors.New("not a regular file")

// openRegular opens path for reading when it is a regular file (symbolic links
// followed: users point at traces through links), with torchprof's ErrNotRegular.
func openRegular(path string) (*os.File, error) {
	f, err := regularfile.Open(path, true)
	var nr *regularfile.NotRegularError
	if errors.As(err, &nr) {
		return nil, notRegular(path, nr.Mode)
	}
	return f, err
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
