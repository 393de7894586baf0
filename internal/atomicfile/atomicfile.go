// Package atomicfile writes files so that a crash leaves the old content or the new one,
// never half of either: manifests, target records, merged traces and summaries all go
// through it (it replaced three hand-written copies).
package atomicfile

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// File is a pending replacement of Path: write to it, then Commit (or Abort).
type File struct {
	*os.File
	path string
	perm os.FileMode
	done bool
}

// New opens a temporary file beside path (same folder, so the final rename is atomic).
// The file is created 0600 and gets perm at Commit.
func New(path string, perm os.FileMode) (*File, error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return nil, err
	}
	return &File{File: tmp, path: path, perm: perm}, nil
}

// Commit flushes the data to disk, renames it over the target and syncs the folder, so
// the new name survives a power loss too.
func (f *File) Commit() error {
	if f.done {
		return errors.New("atomicfile: already committed or aborted")
	}
	f.done = true
	err := f.Chmod(f.perm)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), f.path)
	}
	if err != nil {
		_ = os.Remove(f.Name())
		return fmt.Errorf("writing %s: %w", f.path, err)
	}
	return syncDir(filepath.Dir(f.path))
}

// Abort drops the temporary file; the target is untouched. Safe after Commit (no-op).
func (f *File) Abort() {
	if f.done {
		return
	}
	f.done = true
	_ = f.Close()
	_ = os.Remove(f.Name())
}

// Write replaces path with data atomically.
func Write(path string, data []byte, perm os.FileMode) error {
	f, err := New(path, perm)
	if err != nil {
		return err
	}
	if _, err := f.File.Write(data); err != nil {
		f.Abort()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return f.Commit()
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
