package windows

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nsys-agent/nsys-agent/internal/hostclock"
)

// shifted is an agent clock shift ahead of (or behind) this machine's, as the test hook
// (hostclock) makes one; it keeps the monotonic reading, as hostclock.Now does.
func shifted(shift time.Duration) func() time.Time {
	return func() time.Time { return time.Now().Add(shift) }
}

// near fails unless got is within tol of want.
func near(t *testing.T, what string, got, want time.Time, tol time.Duration) {
	t.Helper()
	if d := got.Sub(want); d < -tol || d > tol {
		t.Errorf("%s = %s, %v from %s (tolerance %v)", what, got.Format(time.RFC3339Nano), d, want.Format(time.RFC3339Nano), tol)
	}
}

// TestManifestTimesOnTheAgentsClock: every time a window records, its clock reading and
// the events' times come from Options.Now, not from the machine's clock.
func TestManifestTimesOnTheAgentsClock(t *testing.T) {
	const shift = 90 * time.Minute // far beyond any test's duration: a real-clock time cannot pass
	m, store := newManagerWith(t, Options{Now: shifted(shift)}, newFake("nsys"))
	events, cancel := m.Subscribe()
	defer cancel()
	ctx := context.Background()
	w, err := m.CreateWindow(ctx, CreateRequest{}, who)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.StopWindow(ctx, w.ID, who); err != nil {
		t.Fatal(err)
	}
	waitState(t, m, w.ID, StateReady)
	d := onDisk(t, store, m, w.ID)
	agentNow := time.Now().Add(shift)
	const tol = 10 * time.Second // the whole window took well under this
	near(t, "created_at", d.CreatedAt, agentNow, tol)
	for name, at := range map[string]*time.Time{"started_at": d.StartedAt, "stopped_at": d.StoppedAt, "finished_at": d.FinishedAt} {
		if at == nil {
			t.Errorf("%s is not set", name)
			continue
		}
		near(t, name, *at, agentNow, tol)
	}
	if d.Clock == nil || d.StartedAt == nil || d.Clock.WallNs != d.StartedAt.UnixNano() {
		t.Fatalf("clock %+v: want the wall clock of started_at %v", d.Clock, d.StartedAt)
	}
	if mono := hostclock.Mono(); d.Clock.MonoNs <= 0 || d.Clock.MonoNs > mono {
		t.Errorf("clock mono_ns %d: want CLOCK_MONOTONIC, unshifted, before now (%d)", d.Clock.MonoNs, mono)
	}
	n := 0
	for n < 3 { // requested, capturing, finalizing at least
		select {
		case e := <-events:
			near(t, "event time", e.Time, agentNow, tol)
			n++
		case <-time.After(5 * time.Second):
			t.Fatalf("only %d events", n)
		}
	}
	c := m.Clock(ctx)
	near(t, "Clock wall_ns", time.Unix(0, c.WallNs), time.Now().Add(shift), time.Second)
	if c.MonoNs < d.Clock.MonoNs {
		t.Errorf("Clock mono_ns %d went back from the window's %d", c.MonoNs, d.Clock.MonoNs)
	}
}

// TestScheduledStartOnAShiftedClock (issue 14): start_at is on the agent's clock. An
// agent 3 s ahead given start_at = its own now + 500 ms starts about 500 ms later in real
// time, not 3.5 s later (as a timer set from the machine's clock would), and records when
// its timer fired. The bounds are generous: this is correctness, not a latency target.
func TestScheduledStartOnAShiftedClock(t *testing.T) {
	const shift = 3 * time.Second
	b := newFake("nsys")
	m, store := newManagerWith(t, Options{Now: shifted(shift)}, b)
	begin := time.Now()
	startAt := begin.Add(shift + 500*time.Millisecond).UTC()
	w, err := m.CreateWindow(context.Background(), CreateRequest{StartAt: startAt.Format(time.RFC3339Nano), Group: "g-sched"}, who)
	if err != nil {
		t.Fatal(err)
	}
	if w.State != StateRequested || w.StartAt == nil || !w.StartAt.Equal(startAt) || w.FiredAt != nil {
		t.Fatalf("scheduled window: %s, start_at %v (want %v), fired_at %v", w.State, w.StartAt, startAt, w.FiredAt)
	}
	<-b.inStart
	elapsed := time.Since(begin)
	if elapsed < 300*time.Millisecond || elapsed > 3*time.Second {
		t.Fatalf("the window started %v after its request; start_at was 500 ms ahead on the agent's clock", elapsed)
	}
	got := waitState(t, m, w.ID, StateCapturing)
	if got.FiredAt == nil || got.StartedAt == nil || got.Clock == nil {
		t.Fatalf("fired_at %v, started_at %v, clock %v: all must be set", got.FiredAt, got.StartedAt, got.Clock)
	}
	// Timers fire late, never early; "late" is bounded generously for a loaded machine.
	if late := got.FiredAt.Sub(startAt); late < 0 || late > 2*time.Second {
		t.Errorf("fired_at is %v after start_at, want within [0, 2s]", late)
	}
	if got.StartedAt.Before(*got.FiredAt) || got.Clock.WallNs != got.StartedAt.UnixNano() {
		t.Errorf("started_at %v before fired_at %v, or clock %+v is not the start's", got.StartedAt, got.FiredAt, got.Clock)
	}
	if d := onDisk(t, store, m, w.ID); d.FiredAt == nil || !d.FiredAt.Equal(*got.FiredAt) {
		t.Errorf("fired_at on disk: %v", d.FiredAt)
	}
}

// TestStartAtOnTheAgentsClock: a start_at a little in the past of the agent's clock
// starts at once (its timer fires at the request); the "at most 24 h ahead" bound is
// measured on the same clock, whatever the machine's clock says.
func TestStartAtOnTheAgentsClock(t *testing.T) {
	ctx := context.Background()
	t.Run("past starts at once", func(t *testing.T) {
		// An agent 10 s behind the machine; start_at is 200 ms in its past.
		m, _ := newManagerWith(t, Options{Now: shifted(-10 * time.Second)}, newFake("nsys"))
		at := time.Now().Add(-10*time.Second - 200*time.Millisecond).UTC()
		w, err := m.CreateWindow(ctx, CreateRequest{StartAt: at.Format(time.RFC3339Nano)}, who)
		if err != nil {
			t.Fatal(err)
		}
		if w.State != StateCapturing || w.FiredAt == nil || w.StartAt == nil || !w.StartAt.Equal(at) {
			t.Fatalf("a start_at just past: %s, fired_at %v, start_at %v", w.State, w.FiredAt, w.StartAt)
		}
		near(t, "fired_at", *w.FiredAt, at, time.Second)
	})
	for _, tc := range []struct {
		name  string
		shift time.Duration
		ahead time.Duration // start_at minus the machine's now
		ok    bool
	}{
		// 23 h ahead of the machine is 25 h ahead of an agent 2 h behind it.
		{"bound on the agent's clock, behind", -2 * time.Hour, 23 * time.Hour, false},
		// 25 h ahead of the machine is 23 h ahead of an agent 2 h ahead of it.
		{"bound on the agent's clock, ahead", 2 * time.Hour, 25 * time.Hour, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, _ := newManagerWith(t, Options{Now: shifted(tc.shift)}, newFake("nsys"))
			at := time.Now().Add(tc.ahead).UTC().Format(time.RFC3339)
			w, err := m.CreateWindow(ctx, CreateRequest{StartAt: at}, who)
			if !tc.ok {
				if !kindIs(err, ErrInvalid) || !strings.Contains(err.Error(), "at most 24h0m0s ahead") {
					t.Fatalf("start_at %s: want ErrInvalid, got %v", at, err)
				}
				return
			}
			if err != nil || w.State != StateRequested {
				t.Fatalf("start_at %s: %+v, %v", at, w, err)
			}
			if _, err := m.StopWindow(ctx, w.ID, who); err != nil {
				t.Fatal(err)
			}
		})
	}
}
