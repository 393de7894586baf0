// Package regularfile opens files that must be regular files: a FIFO named like a report
// would block open(2) until a writer comes, a device may never end, and a symbolic link
// planted in a window folder must not expose a file outside it.
package regularfile

import (
	"fmt"
	"io/fs"
	"os"
	"syscall"
)

// NotRegularError says what a path is instead of a regular file.
type NotRegularError struct {
	Path string
	Mode fs.FileMode
}

func (e *NotRegularError) Error() string {
	return fmt.Sprintf("%s is not a regular file (%s)", e.Path, e.Mode.Type())
}

// Open opens path for reading if it is a regular file. followLinks false refuses a
// symbolic link as the last element (O_NOFOLLOW). O_NONBLOCK keeps open itself from
// waiting for a FIFO's writer (it does nothing to regular files), and the mode is checked
// on the opened file, so nothing can be swapped in between.
func Open(path string, followLinks bool) (*os.File, error) {
	flags := os.O_RDONLY | syscall.O_NONBLOCK
	stat := os.Stat
	if !followLinks {
		flags |= syscall.O_NOFOLLOW
		stat = os.Lstat
	}
	f, err := os.OpenFile(path, flags, 0)
	if err != nil {
		// A socket cannot be opened at all (ENXIO), a link refused gives ELOOP: say what
		// the path is.
		if fi, serr := stat(path); serr == nil && !fi.Mode().IsRegular() {
			return nil, &NotRegularError{Path: path, Mode: fi.Mode()}
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
		return nil, &NotRegularError{Path: path, Mode: fi.Mode()}
	}
	return f, nil
}
