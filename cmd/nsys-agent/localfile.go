package main

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// Files pull writes hold reports, and reports embed the server's environment. A download
// folder may be shared (/tmp, a group project dir): nothing there is followed or trusted.
// Every file is opened without following a symbolic link, must be a regular file of this
// user with one name (no hard link to a file elsewhere), and is made 0600.

// openPartial opens (creating) a partial download for reading and writing.
func openPartial(path string) (*os.File, error) {
	// O_NONBLOCK: a FIFO planted here must not hang the open; no effect on regular files.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0o600)
	if err != nil {
		return nil, linkError(path, err)
	}
	if err := checkOwnFile(f, path); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// openExisting opens a file pull may have written before, for reading; made 0600.
func openExisting(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, linkError(path, err)
	}
	if err := checkOwnFile(f, path); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

func linkError(path string, err error) error {
	if errors.Is(err, syscall.ELOOP) {
		to, _ := os.Readlink(path)
		return fmt.Errorf("refusing to write through %s: it is a symbolic link (to %q), which nsys-agent never makes; "+
			"someone who can write to its folder may have planted it: remove it (rm %s) and pull again, into a folder only you can write to",
			path, to, shellQuote(path))
	}
	return err
}

// checkOwnFile refuses anything but a regular file of ours with one link, and makes it
// private.
func checkOwnFile(f *os.File, path string) error {
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("refusing to use %s: it is not a regular file (%s); remove it and pull again", path, fi.Mode().Type())
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		if me := os.Geteuid(); st.Uid != uint32(me) {
			return fmt.Errorf("refusing to use %s: it belongs to uid %d, not to you (uid %d), who could read what pull writes; "+
				"remove it and pull again, into a folder only you can write to", path, st.Uid, me)
		}
		if st.Nlink > 1 {
			return fmt.Errorf("refusing to use %s: it has %d names (a hard link to a file elsewhere); remove it (rm %s) and pull again",
				path, st.Nlink, shellQuote(path))
		}
	}
	if fi.Mode().Perm() != 0o600 {
		return f.Chmod(0o600)
	}
	return nil
}

// privateDir makes dir (the user's --dir, which may be a link) and its window folder
// into, 0700; an existing into must be a real folder of ours.
func privateDir(dir, into string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	err := os.Mkdir(into, 0o700)
	if err == nil || !errors.Is(err, os.ErrExist) {
		return err
	}
	fi, err := os.Lstat(into)
	if err != nil {
		return err
	}
	switch {
	case fi.Mode()&os.ModeSymlink != 0:
		to, _ := os.Readlink(into)
		return fmt.Errorf("refusing to pull into %s: it is a symbolic link (to %q), which nsys-agent never makes; remove it (rm %s) and pull again",
			into, to, shellQuote(into))
	case !fi.IsDir():
		return fmt.Errorf("cannot pull into %s: it is a file, not a folder; move it away or pull with another --dir", into)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Uid != uint32(os.Geteuid()) {
		return fmt.Errorf("refusing to pull into %s: it belongs to uid %d, not to you (uid %d); pull with another --dir",
			into, st.Uid, os.Geteuid())
	}
	return nil
}
