package windows

import (
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/nsys-agent/nsys-agent/plugins/shared"
)

// load reads the windows on disk. A window a dead agent left mid-flight is failed with
// its files listed, except, when adopting, the one that was capturing: it stays
// capturing and holds the capture slot, so a stop finalizes it.
func (m *Manager) load() {
	loaded, errs := m.o.Store.Load()
	for _, err := range errs {
		m.log.Warn("skipping unreadable window", "err", err)
	}
	adopted := ""
	for _, w := range loaded {
		m.windows[w.ID] = w
		m.saved[w.ID] = w.State
		if m.o.Adopt && adopted == "" && w.State == StateCapturing {
			adopted = w.ID
			w.Warnings = append(w.Warnings, "adopted by a restarted agent while capturing")
			continue
		}
		if !w.State.Terminal() {
			m.failLeftover(w)
		}
	}
	if !m.o.Adopt {
		return
	}
	if adopted == "" {
		now := m.now()
		w := &Manifest{ID: NewID(now), Name: "recovered", Backend: m.o.AdoptBackend, State: StateCapturing, Trigger: TriggerRecovered,
			RequestedBy: Local(TriggerRecovered), Session: m.o.Session, CreatedAt: now, StartedAt: &now,
			Warnings:  []string{"the session was capturing when this agent attached, with no window on record; stop this window to keep that capture"},
			Artifacts: []Artifact{}}
		m.windows[w.ID] = w
		adopted = w.ID
	}
	w := m.windows[adopted]
	entry, ok := m.o.Backends.Lookup(w.Backend)
	if !ok || entry.Backend == nil {
		w.Error = fmt.Sprintf("adopted while capturing, but its backend %q is not available to this agent", w.Backend)
		m.failLeftover(w)
		return
	}
	l, _ := m.slot.tryAcquire(adopted) // the first holder: always free here
	dir, _ := m.o.Store.WindowDir(w.ID)
	r := &run{entry: entry, lease: l, win: shared.Window{ID: w.ID, Dir: dir, Name: w.Name, Steps: w.Steps, Export: w.Export, Options: maps.Clone(w.Options)}}
	m.runs[w.ID] = r
	m.active = adopted
	m.save(adopted)
	m.log.Warn("adopted a capturing window from the previous agent", "window", adopted)
	m.rearmDuration(w, r)
	if w.MaxBytes > 0 {
		// Its byte budget goes on too: a capture the dead agent watched must not grow
		// unbounded under the new one.
		m.mu.Lock()
		m.watchBudget(adopted, r, w.MaxBytes)
		m.mu.Unlock()
	}
}

// rearmDuration gives an adopted window the rest of its --duration: its deadline is its
// start plus its duration, both in the manifest; one already past stops it at once.
func (m *Manager) rearmDuration(w *Manifest, r *run) {
	d, err := time.ParseDuration(w.Duration)
	if err != nil || d <= 0 || w.StartedAt == nil {
		return
	}
	r.win.Duration = d
	left := max(w.StartedAt.Add(d).Sub(m.now()), 0)
	id := w.ID
	m.mu.Lock() // the timer may fire at once; its stop reads r.timer under m.mu
	r.timer = time.AfterFunc(left, func() {
		if _, err := m.StopWindow(m.ctx, id, Local(TriggerDuration)); err != nil {
			m.log.Debug("duration stop of an adopted window", "window", id, "err", err)
		}
	})
	m.mu.Unlock()
	m.log.Info("adopted window keeps its duration", "window", id, "stops_in", left.Round(time.Millisecond))
}

// RescanLeftovers lists again the files of the windows a previous agent left mid-flight
// (failed at load): its stop may have gone on writing the report after the agent died
// (seen: a 26.7 MB capture landed a second after a restart had scanned the folder, and
// stayed invisible). Call it once whatever the dead agent left running has ended.
func (m *Manager) RescanLeftovers() {
	m.mu.Lock()
	ids := slices.Clone(m.leftovers)
	m.leftovers = nil
	m.mu.Unlock()
	for _, id := range ids {
		m.rescan(id)
	}
}

// rescan refreshes a failed window's artifacts from its folder.
func (m *Manager) rescan(id string) {
	arts, warnings := m.o.Store.Artifacts(id)
	m.mu.Lock()
	w, ok := m.windows[id]
	if !ok || w.State != StateFailed || sameArtifacts(w.Artifacts, arts) {
		m.mu.Unlock()
		return
	}
	w.Artifacts = arts
	w.Warnings = append(append(w.Warnings, warnings...), "files found after the restart are listed as artifacts")
	m.mu.Unlock()
	m.save(id)
	m.log.Info("files of a window left by the previous agent", "window", id, "artifacts", len(arts))
}

func sameArtifacts(a, b []Artifact) bool {
	return slices.EqualFunc(a, b, func(x, y Artifact) bool { return x.Name == y.Name && x.SHA256 == y.SHA256 })
}

// failLeftover fails a window a previous agent left mid-flight, listing its files.
func (m *Manager) failLeftover(w *Manifest) {
	m.leftovers = append(m.leftovers, w.ID)
	if w.Error == "" {
		w.Error = fmt.Sprintf("the agent stopped while this window was %s; files it left are listed as artifacts", w.State)
	}
	arts, warnings := m.o.Store.Artifacts(w.ID)
	w.Artifacts, w.Warnings = arts, append(w.Warnings, warnings...)
	now := m.now()
	w.State, w.FinishedAt = StateFailed, &now
	m.save(w.ID)
}
