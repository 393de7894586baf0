package torch

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/nsys-agent/nsys-agent/internal/regularfile"
	"github.com/nsys-agent/nsys-agent/plugins/shared"
	"github.com/nsys-agent/nsys-agent/torchprof/serverprof"
)

// await says how a wait for a window's traces ends.
type await struct {
	// stopped: a stop was sent, so a server that writes nothing at all within RankWait
	// failed the window (a window bounded by steps waits for its steps instead, as long
	// as the agent lets it).
	stopped bool
	// confirmed: the server said every rank's trace is written (SGLang's stop answer), so
	// the sizes need not settle.
	confirmed bool
	p         shared.Progress // nil: no progress events
}

// stamp is what a look at a file sees change while the server writes it.
type stamp struct {
	size int64
	mod  time.Time
}

// awaitTraces waits until the window's rank traces are written: as many as the server
// writes (at least one), non-empty, and, unless the server confirmed them, unchanged for
// Settle. Ranks that write nothing are given up after RankWait of quiet, with a warning
// naming them. A server that stops answering meanwhile is shared.ErrTargetGone. It only
// lists the folder and reads sizes.
func (b *Backend) awaitTraces(ctx context.Context, w shared.Window, tw *window, a await) ([]string, error) {
	need := max(tw.expected, 1)
	var (
		last       map[string]stamp
		now        = time.Now()
		lastChange = now
		lastLive   = now
		reported   = -1
	)
	tick := time.NewTicker(b.poll())
	defer tick.Stop()
	for {
		files, err := tw.sw.Files()
		if errors.Is(err, fs.ErrNotExist) {
			// Collected already (a Wait before this Stop), or removed by someone else.
			if n := b.collectedRanks(w); n > 0 {
				return nil, nil
			}
			return nil, fmt.Errorf("window %s: the server's trace folder %s is gone and no rank trace is in the window folder; was it removed?", w.ID, tw.sw.Dir)
		}
		if err != nil {
			return nil, fmt.Errorf("window %s: listing the server's traces: %w", w.ID, err)
		}
		now = time.Now()
		if cur := stamps(files); !mapsEqual(last, cur) {
			last, lastChange = cur, now
		}
		ranks := rankTraces(files)
		if a.p != nil && len(ranks) != reported {
			reported = len(ranks)
			a.p.Send(shared.ProgressEvent{Step: progressStep(len(ranks), tw.expected), Fraction: 0.1 + 0.4*float64(min(len(ranks), need))/float64(need)})
		}
		quiet := now.Sub(lastChange)
		switch {
		case len(ranks) >= need && (a.confirmed || quiet >= b.settle()):
			return nil, nil
		case len(ranks) > 0 && quiet >= b.rankWait():
			return []string{missingRanks(ranks, tw.expected, b.rankWait())}, nil
		case len(ranks) == 0 && a.stopped && quiet >= b.rankWait():
			return nil, fmt.Errorf("window %s: the server ended the profile but wrote no rank trace into %s within %s: look in the server's log for why (an export error, a full disk, or a server whose profiler is not torch)", w.ID, tw.sw.Dir, b.rankWait())
		}
		if len(ranks) < need && now.Sub(lastLive) >= b.liveEvery() {
			lastLive = now
			if err := b.alive(ctx); err != nil {
				return nil, fmt.Errorf("window %s: %d of %s rank traces written when the server stopped answering: %w", w.ID, len(ranks), wantRanks(tw.expected), err)
			}
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("window %s: stopped waiting for rank traces in %s (%d of %s written, last change %s ago): %w",
				w.ID, tw.sw.Dir, len(ranks), wantRanks(tw.expected), time.Since(lastChange).Round(time.Millisecond), ctx.Err())
		case <-tick.C:
		}
	}
}

func progressStep(n, expected int) string {
	if expected > 0 {
		return fmt.Sprintf("waiting for rank traces %d/%d", n, expected)
	}
	return fmt.Sprintf("waiting for rank traces (%d written so far)", n)
}

func wantRanks(expected int) string {
	if expected > 0 {
		return fmt.Sprint(expected)
	}
	return "at least 1"
}

// alive checks that the server still answers: a server that refuses connections or drops
// them is shared.ErrTargetGone; a slow one is alive.
func (b *Backend) alive(ctx context.Context) error {
	b.mu.Lock()
	url := b.url
	b.mu.Unlock()
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, err := serverprof.Detect(pctx, url, b.HTTP)
	if errors.Is(err, serverprof.ErrServerDown) {
		return shared.Wrap(shared.ErrTargetGone, err)
	}
	return nil
}

// rankTraces are the non-empty rank traces among files (an empty one is being created).
func rankTraces(files []serverprof.File) []serverprof.File {
	var out []serverprof.File
	for _, f := range files {
		if f.Kind == serverprof.RankTrace && f.Size > 0 {
			out = append(out, f)
		}
	}
	return out
}

func stamps(files []serverprof.File) map[string]stamp {
	m := make(map[string]stamp, len(files))
	for _, f := range files {
		m[f.Path] = stamp{f.Size, f.ModTime}
	}
	return m
}

func mapsEqual(a, b map[string]stamp) bool {
	if a == nil || len(a) != len(b) {
		return false
	}
	for k, v := range b {
		if o, ok := a[k]; !ok || o.size != v.size || !o.mod.Equal(v.mod) {
			return false
		}
	}
	return true
}

// missingRanks says which ranks wrote no trace: by TP index when the names carry only TP
// (SGLang's plain tensor parallelism), else by count.
func missingRanks(ranks []serverprof.File, expected int, waited time.Duration) string {
	if expected <= len(ranks) {
		return fmt.Sprintf("%d rank traces written; nothing changed for %s, so the window ends with them", len(ranks), waited)
	}
	have := map[int]bool{}
	tpOnly := true
	for _, f := range ranks {
		r := f.Rank
		tpOnly = tpOnly && r.TP >= 0 && r.DP < 0 && r.PP < 0 && r.EP < 0
		have[r.TP] = true
	}
	which := ""
	if tpOnly {
		var missing []string
		for tp := range expected {
			if !have[tp] {
				missing = append(missing, fmt.Sprintf("TP-%d", tp))
			}
		}
		which = " (missing: " + strings.Join(missing, ", ") + ")"
	}
	return fmt.Sprintf("only %d of %d rank traces were written%s and nothing changed for %s: the window has the ranks that wrote one; the server's log says why the others did not", len(ranks), expected, which, waited)
}

// reserved are names the agent and Finalize write in a window folder: a server file of
// such a name stays where the server wrote it.
var reserved = []string{"manifest.json", SummaryFile, SummaryPage}

// collect moves every file the server wrote for the window (rank traces, memory
// snapshots, ...) from its folder up into w.Dir, where the agent lists artifacts, never
// replacing a file there; the emptied folder is removed. It returns the names moved and a
// warning for each file left behind.
func (b *Backend) collect(w shared.Window, tw *window) (moved, warnings []string) {
	tw.mu.Lock()
	defer tw.mu.Unlock()
	files, err := tw.sw.Files()
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil // collected already, or the server never made it
	}
	if err != nil {
		return nil, []string{fmt.Sprintf("the server's files stay in %s: %v", tw.sw.Dir, err)}
	}
	for _, f := range files {
		name := filepath.Base(f.Path)
		if slices.Contains(reserved, name) {
			warnings = append(warnings, fmt.Sprintf("%s stays in %s: the window folder uses that name itself", name, tw.sw.Dir))
			continue
		}
		if err := moveNoReplace(f.Path, filepath.Join(w.Dir, name)); err != nil {
			warnings = append(warnings, fmt.Sprintf("%s stays in %s: %v", name, tw.sw.Dir, err))
			continue
		}
		moved = append(moved, name)
	}
	if !tw.sw.Shared {
		_ = os.Remove(tw.sw.Dir) // only when empty: what stayed is still there
	}
	return moved, warnings
}

// collectedRanks counts the rank traces already in the window folder.
func (b *Backend) collectedRanks(w shared.Window) int {
	files, err := windowFiles(w.Dir)
	if err != nil {
		return 0
	}
	return len(rankTraces(files))
}

// moveNoReplace moves src to dst, failing when dst exists. A hard link then an unlink
// keeps "never replace" atomic; where no hard link can be made (vLLM's dir on another
// file system) the file is copied.
func moveNoReplace(src, dst string) error {
	err := os.Link(src, dst)
	switch {
	case err == nil:
		return os.Remove(src)
	case errors.Is(err, fs.ErrExist):
		return fmt.Errorf("%s already exists", dst)
	}
	if err := copyNoReplace(src, dst); err != nil {
		return err
	}
	return os.Remove(src)
}

func copyNoReplace(src, dst string) error {
	err := regularfile.CopyNew(src, dst, false)
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("%s already exists", dst)
	}
	return err
}
