package windows

import (
	"context"
	"time"

	"github.com/nsys-agent/nsys-agent/plugins/shared"
)

// StopWindow stops the window with this id ("" = the active one) and returns at once
// while the backend's stop and the finalize go on in the background. A window still
// being started is stopped as soon as its start returns; a scheduled or queued one is
// cancelled.
func (m *Manager) StopWindow(ctx context.Context, id string, who Requester) (*Manifest, error) {
	if who.Trigger == "" {
		who.Trigger = TriggerAPI
	}
	m.mu.Lock()
	if id == "" || id == "active" || id == "-" {
		if m.active == "" {
			m.mu.Unlock()
			return nil, errorf(ErrNoWindow, "no window is capturing; start one with 'nsys-agent start'")
		}
		id = m.active
	}
	w, err := m.resolveLocked(id)
	if err != nil {
		m.mu.Unlock()
		return nil, err
	}
	id = w.ID
	switch {
	case w.State == StateRequested:
		r := m.runs[id]
		if r.stopBy == nil {
			r.stopBy = &who
		}
		if r.starting {
			// The backend is starting the capture: stopping now would race it (the start
			// would finish after the stop and leave a capture nobody can stop). begin
			// stops the window the moment its start is confirmed.
			m.mu.Unlock()
			return m.copyOf(id), nil
		}
		if r.timer != nil {
			r.timer.Stop()
		}
		if r.cancelQueue != nil {
			r.cancelQueue()
		}
		m.mu.Unlock()
		m.finish(id, StateCancelled, "", shared.Result{})
		return m.copyOf(id), nil
	case w.State != StateCapturing:
		m.mu.Unlock()
		return nil, errorf(ErrNoWindow, "window %s is %s, not capturing", id, w.State)
	}
	m.mu.Unlock()
	return m.stopCapture(id, who)
}

// stopCapture moves a capturing window to finalizing and runs its stop in the background.
func (m *Manager) stopCapture(id string, who Requester) (*Manifest, error) {
	m.mu.Lock()
	w, r := m.windows[id], m.runs[id]
	if w == nil || r == nil || w.State != StateCapturing {
		state := StateRequested
		if w != nil {
			state = w.State
		}
		m.mu.Unlock()
		return nil, errorf(ErrNoWindow, "window %s is %s, not capturing", id, state)
	}
	m.markFinalizing(w, r, who)
	m.wg.Add(1)
	m.mu.Unlock()
	m.save(id)
	m.log.Info("window stopping", "window", id, "by", who.Remote, "token", who.TokenID, "trigger", who.Trigger)
	go m.finalize(id, r, func(ctx context.Context, p shared.Progress) (shared.Result, error) {
		return r.entry.Backend.Stop(ctx, r.win, p)
	})
	return m.copyOf(id), nil
}

// markFinalizing is the capturing → finalizing step; m.mu is held.
func (m *Manager) markFinalizing(w *Manifest, r *run, who Requester) {
	if r.timer != nil {
		r.timer.Stop()
	}
	if r.cancelWait != nil {
		r.cancelWait()
	}
	if r.stopBudget != nil {
		r.stopBudget()
	}
	now := m.now()
	w.State, w.StoppedBy, w.StoppedAt = StateFinalizing, &who, &now
	w.Progress = &Progress{Step: "stopping", Fraction: 0}
	if m.active == w.ID {
		m.active = ""
	}
}

// finalize ends the capture (the backend's Stop, or a Waiter's result), frees the slot
// for the next window, then runs the backend's Finalize and settles the window.
func (m *Manager) finalize(id string, r *run, end func(context.Context, shared.Progress) (shared.Result, error)) {
	defer m.wg.Done()
	ctx, cancel := context.WithTimeout(m.ctx, m.o.FinalizeTimeout)
	defer cancel()
	begin := time.Now()
	p := progressSink{m: m, id: id}
	res, err := end(ctx, p)
	r.lease.release() // the target is free: the next window may start while we finalize
	if err != nil {
		m.finish(id, StateFailed, err.Error(), res)
		return
	}
	if f, ok := r.entry.Backend.(shared.Finalizer); ok {
		more, err := f.Finalize(ctx, r.win, p)
		res = res.Merge(more)
		if err != nil {
			m.finish(id, StateFailed, err.Error(), res)
			return
		}
	}
	m.finish(id, StateReady, "", res)
	m.log.Info("window ready", "window", id, "took", time.Since(begin).Round(time.Millisecond))
}

// waitSteps follows a window the server ends by itself (--steps): when the backend's Wait
// returns, the window finalizes as if stopped by its steps. A stop that came first wins.
func (m *Manager) waitSteps(ctx context.Context, id string, r *run, waiter shared.Waiter) {
	res, err := waiter.Wait(ctx, r.win)
	m.mu.Lock()
	w := m.windows[id]
	if w == nil || w.State != StateCapturing {
		m.mu.Unlock()
		m.wg.Done()
		return
	}
	m.markFinalizing(w, r, Local(TriggerSteps))
	m.mu.Unlock()
	m.save(id)
	// finalize calls wg.Done for the Add made when the wait began.
	m.finalize(id, r, func(context.Context, shared.Progress) (shared.Result, error) { return res, err })
}

// finish moves a window to a terminal state with every regular file of its folder
// (partial ones too) listed with size and sha256, and frees whatever it held.
func (m *Manager) finish(id string, state State, errMsg string, res shared.Result) {
	if m.terminal(id) {
		return
	}
	// Hash the files before the state changes, so a reader never sees "ready" without them.
	arts, listWarnings := m.o.Store.Artifacts(id)
	m.mu.Lock()
	w, ok := m.windows[id]
	if !ok || w.State.Terminal() {
		m.mu.Unlock()
		return
	}
	if m.active == id {
		m.active = ""
	}
	if r := m.runs[id]; r != nil {
		if w.StoppedBy == nil && r.stopBy != nil {
			w.StoppedBy = r.stopBy
		}
		if r.timer != nil {
			r.timer.Stop()
		}
		if r.cancelWait != nil {
			r.cancelWait()
		}
		if r.stopBudget != nil {
			r.stopBudget()
		}
		if !r.starting {
			r.lease.release() // a starting window's begin releases it (through abandon)
		}
		delete(m.runs, id)
	}
	w.State, w.Error = state, errMsg
	w.Warnings = append(append(w.Warnings, res.Warnings...), listWarnings...)
	w.Artifacts = arts
	if len(res.Summary) > 0 {
		w.Summary = res.Summary
	}
	now := m.now()
	w.FinishedAt = &now
	if state == StateCancelled && w.StoppedAt == nil {
		w.StoppedAt = &now
	}
	if state == StateReady {
		w.Progress = &Progress{Step: "ready", Fraction: 1}
	}
	m.mu.Unlock()
	// The budgets first: a client that sees this window settle then sees the data dir
	// as retention left it.
	m.retain()
	m.save(id)
	if state == StateFailed {
		m.log.Warn("window failed", "window", id, "err", errMsg)
	}
}

func (m *Manager) terminal(id string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	w, ok := m.windows[id]
	return !ok || w.State.Terminal()
}

// progressSink is the Progress a backend reports to: each event lands in the manifest.
type progressSink struct {
	m  *Manager
	id string
}

func (p progressSink) Send(e shared.ProgressEvent) {
	p.m.mu.Lock()
	w, ok := p.m.windows[p.id]
	if !ok || w.State.Terminal() {
		p.m.mu.Unlock()
		return
	}
	w.Progress = &Progress{Step: e.Step, Fraction: e.Fraction}
	p.m.mu.Unlock()
	p.m.save(p.id)
}

// save persists and announces a window's current state; see trySave.
func (m *Manager) save(id string) { _ = m.trySave(id) }

// trySave persists and announces a window's current state. Saves are serialized and each
// copies the window when its turn comes, so the file on disk always ends at the newest
// state (two racing saves once left "requested" on disk for a cancelled window). A failed
// save is logged: the in-memory state stays authoritative and the next change retries.
func (m *Manager) trySave(id string) error {
	m.saveMu.Lock()
	defer m.saveMu.Unlock()
	m.mu.Lock()
	w, ok := m.windows[id]
	if !ok {
		m.mu.Unlock()
		return nil
	}
	c := w.clone()
	old := m.saved[id]
	m.saved[id] = c.State
	m.version.Add(1)
	m.mu.Unlock()
	err := m.o.Store.Save(&c)
	if err != nil {
		m.log.Error("saving manifest: the window's state lives only in memory until a save succeeds", "window", c.ID, "err", err)
	}
	m.bus.Publish(Event{Type: "window", Window: &c, Time: m.now()})
	if m.o.OnChange != nil {
		m.o.OnChange(old, c)
	}
	return err
}
