package regularfile

import (
	"io"
	"os"
)

// CopyNew copies the regular file src to dst, which must not exist yet (an existing dst
// fails with an error matching fs.ErrExist). The copy is fsync'd and 0600: reports, raw
// streams and traces may embed the server's environment. A failed copy leaves no dst.
func CopyNew(src, dst string, followLinks bool) error {
	in, err := Open(src, followLinks)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, in)
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(dst)
	}
	return err
}
