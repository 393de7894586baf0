package serverprof

import (
	"cmp"
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/nsys-agent/nsys-agent/torchprof"
)

// WaitOptions tune Window.Wait.
type WaitOptions struct {
	// Interval between two looks at the dir. Default 500 ms.
	Interval time.Duration
	// Settle is how long every file must keep its size and time before the window counts
	// as written: the servers write each trace in place, gzip stream first, so a file
	// that grows is not done. Default 5 s.
	Settle time.Duration
	// Expected is how many per-rank traces the window writes (ServerInfo.RankFiles for
	// SGLang). 0: not known; Wait then returns once at least one rank trace appeared and
	// nothing changed for Settle, so give Settle room for the slowest rank.
	Expected int
}

const (
	defaultInterval = 500 * time.Millisecond
	defaultSettle   = 5 * time.Second
)

// File is one regular file a window left.
type File struct {
	Path    string
	Size    int64
	ModTime time.Time
	Kind    FileKind
	Rank    torchprof.RankFile // set for a RankTrace
}

// Wait returns the window's files once they are written: at least Expected rank traces
// (at least one), SGLang's merged trace when the window asked for one, and no file grown,
// added or removed for Settle. It only lists the dir and reads file sizes: it opens no
// file, never follows a symbolic link (a linked dir or file is not the window's), and
// skips FIFOs, sockets, devices, sub-dirs and dot-files. For a shared dir (vLLM) only
// files that were not there at Start count.
//
// When ctx ends first it returns what it saw with the context's error. Bound ctx: a
// vLLM run with --profiler-config's "profiler": "cuda" writes no trace, and the client
// cannot see that from outside.
func (w *Window) Wait(ctx context.Context, o WaitOptions) ([]File, error) {
	if w.Dir == "" {
		return nil, errorf(ErrUnsupported, "window %s: no dir to watch: vLLM writes to its --profiler-config torch_profiler_dir, which the client cannot ask the server for; set Request.ServerDir to it", w.ID)
	}
	if !w.ExpectsTraces() {
		return nil, errorf(ErrUnsupported, "window %s records only CUDA_PROFILER: the server writes no trace, it opens an nsys capture range; nsys writes that capture", w.ID)
	}
	interval, settle := orDefault(o.Interval, defaultInterval), orDefault(o.Settle, defaultSettle)
	need := max(o.Expected, 1)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	var (
		last       map[string]File
		lastChange = time.Now()
		files      []File
	)
	for {
		var err error
		files, err = w.Files()
		if err != nil {
			return files, err
		}
		now := time.Now()
		if changed(last, files) {
			last, lastChange = index(files), now
		}
		ranks, merged := count(files)
		if ranks >= need && (merged || !w.MergeProfiles) && now.Sub(lastChange) >= settle {
			return files, nil
		}
		select {
		case <-ctx.Done():
			want := fmt.Sprintf("%d", need)
			if o.Expected == 0 {
				want = "at least 1"
			}
			return files, fmt.Errorf("window %s: gave up waiting for traces in %s (%d rank traces of %s, last change %s ago): %w",
				w.ID, w.Dir, ranks, want, now.Sub(lastChange).Round(time.Millisecond), ctx.Err())
		case <-tick.C:
		}
	}
}

// Files lists the window's files now, without waiting: what Wait watches.
func (w *Window) Files() ([]File, error) {
	if w.Dir == "" {
		return nil, errorf(ErrUnsupported, "window %s: no dir to list (vLLM without Request.ServerDir)", w.ID)
	}
	if err := checkDir(w.Dir); err != nil {
		return nil, err
	}
	entries, err := os.ReadDir(w.Dir)
	if err != nil {
		return nil, wrapf(ErrInvalid, err, "window %s: list %s: %v", w.ID, w.Dir, err)
	}
	var files []File
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, ".") || !e.Type().IsRegular() {
			continue // temp files, links, FIFOs, sockets, devices, dirs
		}
		if _, old := w.before[name]; old {
			continue
		}
		fi, err := e.Info() // an lstat: never follows a link, never opens the file
		if err != nil || !fi.Mode().IsRegular() {
			continue // removed meanwhile (SGLang's part files come and go), or replaced
		}
		path := filepath.Join(w.Dir, name)
		kind, rf := Classify(path)
		files = append(files, File{Path: path, Size: fi.Size(), ModTime: fi.ModTime(), Kind: kind, Rank: rf})
	}
	sortFiles(files)
	return files, nil
}

// checkDir refuses a window dir that is not a real dir: a symbolic link there was not
// made by Start, and following it could read anywhere.
func checkDir(dir string) error {
	fi, err := os.Lstat(dir)
	switch {
	case err != nil:
		return wrapf(ErrInvalid, err, "window dir %s: %v", dir, err)
	case fi.Mode()&fs.ModeSymlink != 0:
		return errorf(ErrInvalid, "window dir %s is a symbolic link: not followed; give the real dir", dir)
	case !fi.IsDir():
		return errorf(ErrInvalid, "window dir %s is not a dir", dir)
	}
	return nil
}

// listShared names the regular files already in a shared dir, so a window counts only
// its own.
func listShared(dir string) (map[string]struct{}, error) {
	if err := checkDir(dir); err != nil {
		return nil, err
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, wrapf(ErrInvalid, err, "list %s: %v", dir, err)
	}
	before := make(map[string]struct{}, len(entries))
	for _, e := range entries {
		before[e.Name()] = struct{}{}
	}
	return before, nil
}

func index(files []File) map[string]File {
	m := make(map[string]File, len(files))
	for _, f := range files {
		m[f.Path] = f
	}
	return m
}

// changed says whether files differ from the last look: a file added, removed, grown,
// shrunk or rewritten.
func changed(last map[string]File, files []File) bool {
	if last == nil || len(last) != len(files) {
		return true
	}
	for _, f := range files {
		p, ok := last[f.Path]
		if !ok || p.Size != f.Size || !p.ModTime.Equal(f.ModTime) {
			return true
		}
	}
	return false
}

func count(files []File) (ranks int, merged bool) {
	for _, f := range files {
		switch f.Kind {
		case RankTrace:
			ranks++
		case MergedTrace:
			merged = true
		}
	}
	return ranks, merged
}

var kindOrder = map[FileKind]int{RankTrace: 0, MergedTrace: 1, FrontendTrace: 2, OtherFile: 3}

// sortFiles puts rank traces first in SGLang's rank order, then the rest by name.
func sortFiles(files []File) {
	slices.SortStableFunc(files, func(a, b File) int {
		if c := cmp.Compare(kindOrder[a.Kind], kindOrder[b.Kind]); c != 0 {
			return c
		}
		if a.Kind == RankTrace {
			z := func(v int) int { return max(v, 0) }
			ka := []int{z(a.Rank.DP), z(a.Rank.EP), z(a.Rank.PP), z(a.Rank.TP), z(a.Rank.Rank)}
			kb := []int{z(b.Rank.DP), z(b.Rank.EP), z(b.Rank.PP), z(b.Rank.TP), z(b.Rank.Rank)}
			if c := slices.Compare(ka, kb); c != 0 {
				return c
			}
		}
		return strings.Compare(a.Path, b.Path)
	})
}
