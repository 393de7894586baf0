package windows

import (
	"fmt"
	"os"
	"syscall"
)

// OpenRegular opens path for reading without following a symbolic link in its last
// element, and refuses anything that is not a regular file (a FIFO would block a reader
// forever, a device would serve its contents).
func OpenRegular(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	return f, nil
}
