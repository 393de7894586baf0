package windows

// Retention (issue 15, item 3): the data dir's budgets (--max-bytes, --keep-windows),
// removing a window (DELETE /v1/windows/{id}, `nsys-agent rm`) and pins. One H100 window
// with CPU sampling was 2 GB: without a bound, unattended captures fill the disk.

import (
	"cmp"
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/nsys-agent/nsys-agent/internal/diskspace"
)

// DeleteWindow removes a finished, unpinned window: its folder and its record.
func (m *Manager) DeleteWindow(ctx context.Context, id string, who Requester) (*Manifest, error) {
	return m.remove(id, func(w *Manifest) error {
		switch {
		case !w.State.Terminal():
			return errorf(ErrWindowActive, "window %s is %s: only a finished window can be removed; stop it first ('nsys-agent stop %s')", w.ID, w.State, w.ID)
		case w.Pinned:
			return errorf(ErrPinned, "window %s is pinned; unpin it first ('nsys-agent unpin %s')", w.ID, w.ID)
		}
		return nil
	}, "removed by "+who.Remote)
}

// PinWindow pins (or unpins) a window: a pinned window is never removed, by a budget or
// by a request. An unpinned one falls under the budgets again at the next retention pass
// (when a window settles, or at the next start of the agent).
func (m *Manager) PinWindow(ctx context.Context, id string, pinned bool, who Requester) (*Manifest, error) {
	m.mu.Lock()
	w, err := m.resolveLocked(id)
	if err != nil {
		m.mu.Unlock()
		return nil, err
	}
	id = w.ID
	changed := w.Pinned != pinned
	w.Pinned = pinned
	m.mu.Unlock()
	if changed {
		if err := m.trySave(id); err != nil {
			return nil, fmt.Errorf("window %s: saving its pin: %w; free some space in %s and try again", id, err, m.o.Store.Root)
		}
		m.log.Info("window pin changed", "window", id, "pinned", pinned, "by", who.Remote, "token", who.TokenID)
	}
	return m.copyOf(id), nil
}

// remove drops a window's record and folder if allowed says it may go; allowed runs
// under the manager's locks, so the window cannot change between the check and the
// removal. Saves are held off meanwhile: a save racing the removal would write the
// manifest back into a folder being deleted.
func (m *Manager) remove(id string, allowed func(*Manifest) error, why string) (*Manifest, error) {
	m.saveMu.Lock()
	defer m.saveMu.Unlock()
	m.mu.Lock()
	w, err := m.resolveLocked(id)
	if err != nil {
		m.mu.Unlock()
		return nil, err
	}
	id = w.ID
	if err := allowed(w); err != nil {
		m.mu.Unlock()
		return nil, err
	}
	c := w.clone()
	delete(m.windows, id)
	delete(m.saved, id)
	delete(m.runs, id)
	m.version.Add(1)
	m.mu.Unlock()

	dir, err := m.o.Store.WindowDir(id)
	if err == nil {
		// The manifest first: a folder whose removal fails half-way never comes back as a
		// window at the next start.
		if err = os.Remove(filepath.Join(dir, ManifestFile)); err == nil || os.IsNotExist(err) {
			err = os.RemoveAll(dir)
		}
	}
	m.bus.Publish(Event{Type: "removed", Window: &c, Time: m.now()})
	if err != nil {
		m.log.Error("removing a window's folder", "window", id, "why", why, "err", err)
		return &c, fmt.Errorf("window %s is forgotten but its folder %s could not be removed: %w; remove it by hand", id, dir, err)
	}
	m.log.Info("window removed", "window", id, "why", why, "bytes", artifactBytes(&c))
	return &c, nil
}

// removable is retention's rule: finished and not pinned (checked again at removal).
func removable(w *Manifest) error {
	switch {
	case w.Pinned:
		return errorf(ErrPinned, "window %s is pinned", w.ID)
	case !w.State.Terminal():
		return errorf(ErrWindowActive, "window %s is %s", w.ID, w.State)
	}
	return nil
}

// retain removes the oldest finished, unpinned windows while there are more than
// KeepWindows of them, then while the window folders hold more than MaxBytes. A
// capturing, finalizing, requested or pinned window is never removed; nor, by MaxBytes,
// the newest finished one: it is the capture someone is about to look at, and a budget
// smaller than one window would otherwise delete every capture as it lands.
func (m *Manager) retain() {
	if m.o.KeepWindows <= 0 && m.o.MaxBytes <= 0 {
		return
	}
	m.retainMu.Lock()
	defer m.retainMu.Unlock()
	m.mu.Lock()
	var all []string
	var finished []*Manifest // finished and unpinned
	for id, w := range m.windows {
		all = append(all, id)
		if removable(w) == nil {
			finished = append(finished, w)
		}
	}
	// Oldest first. Not by id: ids carry their creation time to the second only.
	slices.SortFunc(finished, func(a, b *Manifest) int {
		return cmp.Or(a.CreatedAt.Compare(b.CreatedAt), strings.Compare(a.ID, b.ID))
	})
	cands := make([]string, len(finished))
	for i, w := range finished {
		cands[i] = w.ID
	}
	m.mu.Unlock()

	if k := m.o.KeepWindows; k > 0 && len(cands) > k {
		why := fmt.Sprintf("--keep-windows %d: %d finished, unpinned windows", k, len(cands))
		for _, id := range cands[:len(cands)-k] {
			if _, err := m.remove(id, removable, why); err != nil {
				m.log.Warn("retention: keeping a window", "window", id, "err", err)
			}
		}
		cands = cands[len(cands)-k:]
	}
	if m.o.MaxBytes <= 0 {
		return
	}
	sizes := map[string]int64{}
	var total int64
	for _, id := range all {
		if m.copyOf(id) == nil {
			continue // removed above
		}
		dir, _ := m.o.Store.WindowDir(id)
		sizes[id] = dirSize(dir)
		total += sizes[id]
	}
	for len(cands) > 1 && total > m.o.MaxBytes {
		id := cands[0]
		cands = cands[1:]
		why := fmt.Sprintf("--max-bytes %s: the windows hold %s", human(m.o.MaxBytes), human(total))
		if _, err := m.remove(id, removable, why); err != nil {
			m.log.Warn("retention: keeping a window", "window", id, "err", err)
			continue
		}
		total -= sizes[id]
	}
	if total > m.o.MaxBytes {
		m.log.Warn("the windows hold more than --max-bytes; what is left is pinned, in flight or the newest window: unpin or remove some ('nsys-agent rm')",
			"bytes", human(total), "max_bytes", human(m.o.MaxBytes))
	}
}

// dirSize is the bytes of the regular files under dir; links are not followed.
func dirSize(dir string) int64 {
	var n int64
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return nil
		}
		if fi, err := d.Info(); err == nil {
			n += fi.Size()
		}
		return nil
	})
	return n
}

func artifactBytes(w *Manifest) int64 {
	var n int64
	for _, a := range w.Artifacts {
		n += a.Bytes
	}
	return n
}

func human(n int64) string { return diskspace.Human(uint64(max(n, 0))) }
