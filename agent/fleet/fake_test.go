package fleet

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nsys-agent/nsys-agent/agent/windows"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeMember is an in-process agent: a clock shifted like another host's, a latency on
// every call, a window that starts by itself at its start_at (a timer, in its own
// clock), and the failures a group start must survive.
type fakeMember struct {
	name  string
	shift time.Duration // its wall clock minus the real one
	// latency delays every call: half before the agent acts, half after (the request's
	// and the answer's trips). upShare moves that split (0.5 when zero) to make the trips
	// asymmetric, which the offset estimate cannot see but its uncertainty must cover.
	latency time.Duration
	upShare float64
	// startDelay is how long its backend takes from the timer firing to the capture.
	startDelay time.Duration

	refuse      error         // Create answers it
	failAtStart string        // the window fails at its start with this error
	neverStarts bool          // the timer never fires: it stays requested
	vanish      bool          // the agent dies once it accepted the schedule: every later call fails
	noClock     bool          // Clock fails
	noGroup     bool          // an agent older than group windows: it ignores the request's group
	createSlow  time.Duration // the window exists at once, its answer comes this late
	createLost  time.Duration // the request arrives this late (never, if the caller gives up first)
	setGroupErr error

	inflight *atomic.Int64 // shared by a test's members: how many calls run at once
	maxSeen  *atomic.Int64

	mu     sync.Mutex
	win    *windows.Manifest
	timer  *time.Timer
	dead   bool
	stops  int
	stored *windows.GroupRecord
}

var errRefused = errors.New("connection refused")

func (f *fakeMember) Agent() string { return "http://" + f.name + ":7477" }

func (f *fakeMember) now() time.Time { return time.Now().Add(f.shift).UTC() }

// trip runs act between the request's trip and the answer's, counting concurrency.
func trip[T any](ctx context.Context, f *fakeMember, act func() (T, error)) (T, error) {
	var zero T
	if f.inflight != nil {
		n := f.inflight.Add(1)
		defer f.inflight.Add(-1)
		for {
			m := f.maxSeen.Load()
			if n <= m || f.maxSeen.CompareAndSwap(m, n) {
				break
			}
		}
	}
	up := f.upShare
	if up == 0 {
		up = 0.5
	}
	if err := sleep(ctx, time.Duration(float64(f.latency)*up)); err != nil {
		return zero, err
	}
	f.mu.Lock()
	dead := f.dead
	f.mu.Unlock()
	if dead {
		return zero, fmt.Errorf("%s: %w", f.Agent(), errRefused)
	}
	v, err := act()
	if serr := sleep(ctx, time.Duration(float64(f.latency)*(1-up))); serr != nil {
		return zero, serr
	}
	return v, err
}

func (f *fakeMember) Clock(ctx context.Context) (windows.ClockReading, error) {
	return trip(ctx, f, func() (windows.ClockReading, error) {
		if f.noClock {
			return windows.ClockReading{}, fmt.Errorf("%s: %w", f.Agent(), errRefused)
		}
		return windows.ClockReading{WallNs: f.now().UnixNano(), MonoNs: time.Now().UnixNano()}, nil
	})
}

func (f *fakeMember) Create(ctx context.Context, req windows.CreateRequest) (*windows.Manifest, error) {
	if err := sleep(ctx, f.createLost); err != nil {
		return nil, err
	}
	w, err := trip(ctx, f, func() (*windows.Manifest, error) {
		if f.refuse != nil {
			return nil, f.refuse
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.win != nil && !f.win.State.Terminal() {
			return nil, &windows.Error{Kind: windows.ErrWindowActive, Msg: "window w1 is already capturing"}
		}
		at, err := time.Parse(time.RFC3339, req.StartAt)
		if err != nil {
			return nil, &windows.Error{Kind: windows.ErrInvalid, Msg: "start_at: " + err.Error()}
		}
		at = at.UTC()
		w := &windows.Manifest{ID: "w1", State: windows.StateRequested, CreatedAt: f.now(), StartAt: &at, Group: req.Group}
		if f.noGroup {
			w.Group = ""
		}
		f.win = w
		if !f.neverStarts {
			f.timer = time.AfterFunc(at.Sub(f.now()), f.fire)
		}
		if f.vanish {
			defer func() { f.dead = true }()
		}
		cp := *w
		return &cp, nil
	})
	if err == nil && f.createSlow > 0 {
		// The window exists, but the answer is slow: a caller that gives up meanwhile
		// does not know it.
		if serr := sleep(ctx, f.createSlow); serr != nil {
			return nil, serr
		}
	}
	return w, err
}

// fire is the window's timer: as the agent's scheduled start.
func (f *fakeMember) fire() {
	f.mu.Lock()
	if f.win.State != windows.StateRequested {
		f.mu.Unlock()
		return
	}
	fired := f.now()
	f.win.FiredAt = &fired
	f.mu.Unlock()
	time.Sleep(f.startDelay)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.win.State != windows.StateRequested {
		return
	}
	if f.failAtStart != "" {
		done := f.now()
		f.win.State, f.win.Error, f.win.FinishedAt = windows.StateFailed, f.failAtStart, &done
		return
	}
	started := f.now()
	f.win.State, f.win.StartedAt = windows.StateCapturing, &started
}

func (f *fakeMember) resolve(id string) (*windows.Manifest, error) {
	if f.win == nil || (id != f.win.ID && (id != f.win.Group || f.win.Group == "")) {
		return nil, &windows.Error{Kind: windows.ErrNotFound, Msg: fmt.Sprintf("no window %q", id)}
	}
	return f.win, nil
}

func (f *fakeMember) Window(ctx context.Context, id string) (*windows.Manifest, error) {
	return trip(ctx, f, func() (*windows.Manifest, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		w, err := f.resolve(id)
		if err != nil {
			return nil, err
		}
		cp := *w
		return &cp, nil
	})
}

func (f *fakeMember) Stop(ctx context.Context, id string) (*windows.Manifest, error) {
	return trip(ctx, f, func() (*windows.Manifest, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		w, err := f.resolve(id)
		if err != nil {
			return nil, err
		}
		now := f.now()
		switch w.State {
		case windows.StateRequested:
			if f.timer != nil {
				f.timer.Stop()
			}
			w.State, w.FinishedAt = windows.StateCancelled, &now
		case windows.StateCapturing:
			w.State, w.StoppedAt = windows.StateFinalizing, &now
		default:
			return nil, &windows.Error{Kind: windows.ErrNoWindow, Msg: fmt.Sprintf("window %s is %s, not capturing", w.ID, w.State)}
		}
		f.stops++
		cp := *w
		return &cp, nil
	})
}

func (f *fakeMember) SetGroup(ctx context.Context, id string, rec windows.GroupRecord) (*windows.Manifest, error) {
	return trip(ctx, f, func() (*windows.Manifest, error) {
		if f.setGroupErr != nil {
			return nil, f.setGroupErr
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		w, err := f.resolve(id)
		if err != nil {
			return nil, err
		}
		if w.Group != rec.ID {
			return nil, &windows.Error{Kind: windows.ErrInvalid, Msg: "not a member"}
		}
		r := rec
		f.stored, w.GroupInfo = &r, &r
		cp := *w
		return &cp, nil
	})
}

// state is the fake's window state ("" without one).
func (f *fakeMember) state() windows.State {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.win == nil {
		return ""
	}
	return f.win.State
}

func (f *fakeMember) window() *windows.Manifest {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.win == nil {
		return nil
	}
	cp := *f.win
	return &cp
}

// cleanup stops the fake's timer at the test's end and waits out a fire in progress.
func (f *fakeMember) cleanup(t *testing.T) {
	t.Cleanup(func() {
		f.mu.Lock()
		if f.timer != nil {
			f.timer.Stop()
		}
		f.mu.Unlock()
		time.Sleep(f.startDelay)
	})
}

// members makes the fakes' Member list, with one concurrency counter for all.
func members(t *testing.T, fs ...*fakeMember) ([]Member, *atomic.Int64) {
	var inflight, maxSeen atomic.Int64
	out := make([]Member, len(fs))
	for i, f := range fs {
		f.inflight, f.maxSeen = &inflight, &maxSeen
		f.cleanup(t)
		out[i] = f
	}
	return out, &maxSeen
}
