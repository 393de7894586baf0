package serverprof

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Files that grow for a while: Wait returns only once none changed for Settle, with
// their final sizes.
func TestWaitGrowingThenSettling(t *testing.T) {
	dir := t.TempDir()
	w := &Window{ID: "grow", Dir: dir}
	names := []string{"1.5-TP-0.trace.json.gz", "1.5-TP-1.trace.json.gz"}
	const writes, size = 12, 1000
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		lastDone time.Time
	)
	for i, name := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fh, err := os.Create(filepath.Join(dir, name))
			if err != nil {
				t.Error(err)
				return
			}
			defer fh.Close()
			time.Sleep(time.Duration(i) * 40 * time.Millisecond) // rank 1 starts late
			for j := range writes {
				if j > 0 {
					time.Sleep(20 * time.Millisecond)
				}
				fh.Write(make([]byte, size))
			}
			mu.Lock()
			lastDone = time.Now()
			mu.Unlock()
		}()
	}
	settle := 150 * time.Millisecond
	files, err := w.Wait(ctxT(t), WaitOptions{Interval: 5 * time.Millisecond, Settle: settle, Expected: 2})
	returned := time.Now()
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 2 {
		t.Fatalf("files %+v", files)
	}
	for _, f := range files {
		if f.Size != writes*size {
			t.Errorf("%s: %d bytes, want %d: returned before it settled", f.Path, f.Size, writes*size)
		}
	}
	if returned.Sub(lastDone) < settle-5*time.Millisecond { // lastDone is read just after the write returns
		t.Errorf("returned %s after the last write, before Settle %s", returned.Sub(lastDone), settle)
	}
}

// A FIFO among the files is never opened (opening one would block), nor is a link
// followed; sub-dirs and dot-files are skipped.
func TestWaitSkipsFIFOsAndLinks(t *testing.T) {
	dir := t.TempDir()
	if err := syscall.Mkfifo(filepath.Join(dir, "9.9-TP-1.trace.json.gz"), 0o600); err != nil {
		t.Fatalf("mkfifo: %v", err)
	}
	outside := filepath.Join(t.TempDir(), "secret.trace.json.gz")
	os.WriteFile(outside, []byte("not the window's"), 0o600)
	os.Symlink(outside, filepath.Join(dir, "9.9-TP-2.trace.json.gz"))
	os.Mkdir(filepath.Join(dir, "9.9-TP-3.trace.json.gz"), 0o700)
	os.WriteFile(filepath.Join(dir, ".9.9-TP-4.trace.json.gz.tmp"), []byte("x"), 0o600)
	real := filepath.Join(dir, "9.9-TP-0.trace.json.gz")
	os.WriteFile(real, []byte("trace"), 0o600)

	w := &Window{ID: "fifo", Dir: dir}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	files, err := w.Wait(ctx, WaitOptions{Interval: 5 * time.Millisecond, Settle: 30 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 1 || files[0].Path != real || files[0].Kind != RankTrace {
		t.Fatalf("files %+v", files)
	}
}

// A window dir that became a symbolic link is not followed.
func TestWaitRefusesLinkedDir(t *testing.T) {
	real := t.TempDir()
	link := filepath.Join(t.TempDir(), "w")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	_, err := (&Window{ID: "w", Dir: link}).Wait(ctxT(t), WaitOptions{Interval: time.Millisecond})
	wantKind(t, err, ErrInvalid, "symbolic link")
}

// The caller's context ends a wait that sees no trace, with what it saw.
func TestWaitGivesUpWithContext(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "1.0-TP-0.trace.json.gz"), []byte("x"), 0o600)
	ctx, cancel := context.WithTimeout(context.Background(), 80*time.Millisecond)
	defer cancel()
	files, err := (&Window{ID: "w", Dir: dir}).Wait(ctx, WaitOptions{Interval: 5 * time.Millisecond, Settle: time.Millisecond, Expected: 2})
	if !errors.Is(err, context.DeadlineExceeded) || len(files) != 1 {
		t.Fatalf("files %+v, err %v", files, err)
	}
	wantKind(t, err, context.DeadlineExceeded, "1 rank traces of 2")
}
