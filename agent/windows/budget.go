package windows

// A window's own byte budget (issue 15, item 3: --max-window-bytes, a request's
// max_bytes): while it captures, what the capture has written is measured every
// BudgetPoll, and a window over its budget is stopped early with the reason recorded.

import (
	"context"
	"fmt"
	"time"

	"github.com/nsys-agent/nsys-agent/plugins/shared"
)

// CaptureSizer is a built-in backend's optional answer to "how many bytes has this
// window's capture written so far", wherever its tool writes them: nsys streams a
// capture into $TMPDIR and moves it into the window folder only at the stop. A backend
// without it is measured by its window folder (where server-driven backends' files
// grow).
type CaptureSizer interface {
	CaptureBytes(ctx context.Context, w shared.Window) (int64, error)
}

// watchBudget starts the budget watch of a window that became capturing; m.mu is held.
// It ends when the window leaves capturing (markFinalizing, finish) or the manager closes.
func (m *Manager) watchBudget(id string, r *run, limit int64) {
	ctx, cancel := context.WithCancel(m.ctx)
	r.stopBudget = cancel
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		defer cancel()
		tick := time.NewTicker(m.o.BudgetPoll)
		defer tick.Stop()
		failures := 0
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			n, err := m.captureBytes(ctx, r)
			if err != nil {
				// Said once, on the window, after a few tries: a stream may appear a moment
				// after the start.
				if failures++; failures == unmeasuredTries {
					m.unmeasured(id, limit, err)
				}
				m.log.Debug("measuring a capture against its budget", "window", id, "err", err)
				continue
			}
			failures = 0
			if n <= limit {
				continue
			}
			m.overBudget(id, n, limit)
			return
		}
	}()
}

// unmeasuredTries is how many polls in a row may fail to measure a capture before the
// window is told its budget is not enforced.
const unmeasuredTries = 3

// unmeasured records on the window that its budget cannot be enforced, and why.
func (m *Manager) unmeasured(id string, limit int64, err error) {
	if !m.warnCapturing(id, fmt.Sprintf("its budget of %s is not enforced: %v", human(limit), err)) {
		return
	}
	m.save(id)
	m.log.Warn("a window's byte budget cannot be enforced", "window", id, "err", err)
}

// overBudget records why the window stops and stops it, as its duration would.
func (m *Manager) overBudget(id string, n, limit int64) {
	if !m.warnCapturing(id, fmt.Sprintf("stopped early: the capture wrote %s, exceeding its budget of %s (max_bytes, or the agent's --max-window-bytes)", human(n), human(limit))) {
		return
	}
	m.log.Warn("window over its byte budget: stopping it", "window", id, "bytes", n, "max_bytes", limit)
	if _, err := m.StopWindow(m.ctx, id, Local(TriggerBudget)); err != nil {
		m.log.Debug("budget stop", "window", id, "err", err)
	}
}

func (m *Manager) captureBytes(ctx context.Context, r *run) (int64, error) {
	if s, ok := r.entry.Backend.(CaptureSizer); ok {
		return s.CaptureBytes(ctx, r.win)
	}
	return dirSize(r.win.Dir), nil
}

// warnCapturing adds msg to the window's warnings if it is still capturing, and says
// whether it was.
func (m *Manager) warnCapturing(id, msg string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	w := m.windows[id]
	if w == nil || w.State != StateCapturing {
		return false
	}
	w.Warnings = append(w.Warnings, msg)
	return true
}
