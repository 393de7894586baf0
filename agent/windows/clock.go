package windows

import (
	"context"
	"time"

	"github.com/nsys-agent/nsys-agent/internal/hostclock"
)

// The Manager reads one wall clock (Options.Now): every time it writes in a manifest or
// an event, the schedule of a start_at, and GET /v1/clock. Timers and elapsed times still
// run on the monotonic clock, so a shifted clock (the test hook) moves what is recorded,
// never how long anything waits.

// now is the Manager's wall clock in UTC, as manifests record it.
func (m *Manager) now() time.Time { return m.o.Now().UTC() }

// Clock reads the agent's clocks at one instant: the wall clock of its manifests and
// CLOCK_MONOTONIC. A group's coordinator estimates its offset from the round trip.
func (m *Manager) Clock(ctx context.Context) ClockReading {
	wall := m.o.Now()
	return ClockReading{WallNs: wall.UnixNano(), MonoNs: hostclock.Mono()}
}

// fired records when a scheduled window's start time came (its timer fired, or at once
// for a start_at already past) and says whether the window is still waiting to start:
// a stop may have cancelled it while the timer fired.
func (m *Manager) fired(id string) bool {
	m.mu.Lock()
	w, r := m.windows[id], m.runs[id]
	if w == nil || r == nil || w.State != StateRequested {
		m.mu.Unlock()
		return false
	}
	now := m.now()
	w.FiredAt = &now
	late := now.Sub(*w.StartAt)
	m.mu.Unlock()
	m.log.Info("scheduled window due", "window", id, "late", late.Round(time.Microsecond))
	return true
}
