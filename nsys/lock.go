package nsys

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/gofrs/flock"
)

// LockPath is the host-wide lock that serializes nsys launches. Measured on nsys
// 2022.4.2: three `nsys launch` started at the same moment left one session unarmed
// (sem_open "No such file or directory" in ProcessWaiter; the session stayed Idle with
// launch count 0). Holding this lock from the launch until the session is armed avoids it
// for every nsys-agent (and test) on the host.
func LockPath() string { return filepath.Join(os.TempDir(), "nsys-agent-launch.lock") }

// lockFile takes the lock at path, waiting while another holder has it until ctx ends,
// and returns the function that releases it. Each call opens the file anew: flock locks
// belong to an open file, so two callers in one process exclude each other as two
// processes do (a Process.Terminate must wait for a Launch running in another goroutine).
// The file is readable by all (0644) so that every user's agent can open it.
func lockFile(ctx context.Context, path string) (func(), error) {
	l := flock.New(path, flock.SetPermissions(0o644))
	// TryLockContext answers false only with an error: ctx's, or the file's.
	if ok, err := l.TryLockContext(ctx, 50*time.Millisecond); !ok {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("taking launch lock %s: %w", path, err)
	}
	return func() { _ = l.Unlock() }, nil
}
