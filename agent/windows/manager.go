package windows

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nsys-agent/nsys-agent/internal/diskspace"
	"github.com/nsys-agent/nsys-agent/internal/hostclock"
	"github.com/nsys-agent/nsys-agent/plugins/shared"
)

// Target is what the state machine knows of the supervised server.
type Target interface {
	Done() <-chan struct{}
	Exited() (exited bool, code int)
	Tail(n int) []string
}

// Options wire a Manager.
type Options struct {
	Store    *Store
	Backends *Registry
	Target   Target // nil: no target (tests of the state machine alone)
	// TargetLog is the target's output file, named in errors once the target is down.
	TargetLog string
	Session   string // the nsys session, recorded in manifests
	Log       *slog.Logger
	// OnChange is called after every saved manifest change, with the state it had at the
	// previous save (metrics).
	OnChange func(old State, m Manifest)
	// FinalizeTimeout bounds one window's stop + finalize (default 15 min).
	FinalizeTimeout time.Duration
	// QueueTimeout bounds how long a start waits for the previous window's stop (default
	// 20 s: an nsys stop takes ~3 s on an H100; one still running after this is stuck or
	// writing a huge report, and the caller hears so at once instead of hanging with it).
	QueueTimeout time.Duration
	// MinFree is the free space the data dir must have for a window to start (0: no
	// floor). A report that cannot be written is a window lost, and a full disk also
	// stops manifests from being saved.
	MinFree uint64
	// Adopt: the target was attached from a previous agent and its session is capturing
	// now. The window that was capturing stays capturing (or, if none was recorded, a
	// "recovered" window of AdoptBackend is opened for the capture), so a stop finalizes
	// it: nothing is lost.
	Adopt        bool
	AdoptBackend string

	// Retention (issue 15, item 3). MaxBytes bounds the bytes of all window folders and
	// KeepWindows the number of finished, unpinned windows (0: no bound); the oldest
	// finished, unpinned windows go first (retention.go). MaxWindowBytes stops a capture
	// that has written more (0: no bound; a request's max_bytes overrides it); BudgetPoll
	// is how often that is measured (default 1 s).
	MaxBytes       int64
	KeepWindows    int
	MaxWindowBytes int64
	BudgetPoll     time.Duration

	// Now is the agent's wall clock (default hostclock.Now): every time in a manifest and
	// in an event, and the clock a request's start_at is read on. Group windows (issue 14)
	// compare these times across agents, so they all come from this one clock; tests give
	// a shifted one.
	Now func() time.Time
}

// run is what a window has beyond its manifest while it is in flight.
type run struct {
	entry       Entry
	win         shared.Window
	timer       *time.Timer        // the scheduled start, then the duration stop
	lease       *lease             // the capture slot, from Start until the backend stopped
	cancelQueue context.CancelFunc // ends a start's wait for the slot
	cancelWait  context.CancelFunc // ends a Waiter's wait when the window is stopped
	starting    bool               // the backend's Start is running
	stopBy      *Requester         // a stop that came while the window was still requested
	stopBudget  context.CancelFunc // ends the byte-budget watch (budget.go)
}

// Manager runs windows through their states, one capture at a time, finalizing in the
// background, and keeps every change on disk before announcing it.
type Manager struct {
	o    Options
	log  *slog.Logger
	bus  *Bus
	slot *captureSlot

	mu        sync.Mutex
	windows   map[string]*Manifest
	runs      map[string]*run
	saved     map[string]State // the state each window had at its last save
	active    string           // the window that is requested or capturing
	down      bool             // the target exited
	closing   bool             // Close began: no new starts
	leftovers []string         // windows a dead agent left mid-flight (RescanLeftovers)

	saveMu      sync.Mutex    // orders manifest saves: the last save writes the newest state
	retainMu    sync.Mutex    // one retention pass at a time
	version     atomic.Uint64 // bumped by every change of any window (WindowsJSON's cache key)
	listMu      sync.Mutex
	listJSON    []byte
	listVersion uint64
	inflight    sync.WaitGroup // starts running (registered only while !closing)
	wg          sync.WaitGroup // stops and finalizers running
	ctx         context.Context
	cancel      context.CancelFunc
}

// New loads the windows on disk and starts watching the target. Windows that were
// mid-flight when a previous agent died are marked failed; their files are kept.
func New(o Options) (*Manager, error) {
	if o.Store == nil || o.Backends == nil {
		return nil, errors.New("windows: a store and a backend registry are needed")
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.FinalizeTimeout == 0 {
		o.FinalizeTimeout = 15 * time.Minute
	}
	if o.QueueTimeout == 0 {
		o.QueueTimeout = 20 * time.Second
	}
	if o.BudgetPoll == 0 {
		o.BudgetPoll = time.Second
	}
	if o.Now == nil {
		o.Now = hostclock.Now
	}
	ctx, cancel := context.WithCancel(context.Background())
	m := &Manager{o: o, log: o.Log, bus: NewBus(), slot: newCaptureSlot(),
		windows: map[string]*Manifest{}, runs: map[string]*run{}, saved: map[string]State{}, ctx: ctx, cancel: cancel}
	m.load()
	m.retain()
	if o.Target != nil {
		go m.watchTarget()
	}
	return m, nil
}

// CreateWindow opens a window: at once, or at req.StartAt. It returns once the capture is
// confirmed (or scheduled). A start queued behind the previous window's stop gives up
// when ctx ends.
func (m *Manager) CreateWindow(ctx context.Context, req CreateRequest, who Requester) (*Manifest, error) {
	if err := req.validate(m.now()); err != nil {
		return nil, err
	}
	entry, err := m.o.Backends.pick(req.Backend)
	if err != nil {
		return nil, err
	}
	name := entry.Info.Name
	if req.Steps > 0 && !entry.Info.Has(shared.CapSteps) {
		return nil, errorf(ErrInvalid, "steps: the %s backend cannot bound a window by engine steps; use duration, or a server-driven backend", name)
	}
	if req.Export && !entry.Info.Has(shared.CapExport) {
		return nil, errorf(ErrInvalid, "export: the %s backend has no SQLite export", name)
	}
	if err := checkOptions(entry.Info, req.Options); err != nil {
		return nil, err
	}
	if err := m.checkSpace(); err != nil {
		return nil, err
	}
	dur, startAt := req.parsed()
	trigger := TriggerAPI
	switch {
	case dur > 0:
		trigger = TriggerDuration
	case req.Steps > 0:
		trigger = TriggerSteps
	}
	if who.Trigger == "" {
		who.Trigger = TriggerAPI
	}
	if IsFired(who.Trigger) {
		trigger = who.Trigger // what opened it is the trigger; the duration only closes it
	}

	now := m.now()
	id := NewID(now)
	dir, _ := m.o.Store.WindowDir(id)
	w := &Manifest{ID: id, Name: req.Name, Backend: name, State: StateRequested, Trigger: trigger, RequestedBy: who,
		Session: m.o.Session, Duration: req.Duration, Steps: req.Steps, Export: req.Export, Options: maps.Clone(req.Options), CreatedAt: now, Artifacts: []Artifact{},
		MaxBytes: cmp.Or(req.MaxBytes, m.o.MaxWindowBytes), Labels: maps.Clone(req.Labels), Group: req.Group}
	if !startAt.IsZero() {
		at := startAt.UTC()
		w.StartAt = &at
	}
	r := &run{entry: entry, win: shared.Window{ID: id, Dir: dir, Name: req.Name, Duration: dur, Steps: req.Steps, Export: req.Export, Options: maps.Clone(req.Options)}}

	m.mu.Lock()
	if g := m.groupWindowLocked(req.Group); g != nil {
		// One window per group on an agent, so that the group id names it: a coordinator
		// retrying a create whose answer it lost hears which window it already has.
		m.mu.Unlock()
		return nil, errorf(ErrInvalid, "group: this agent already has window %s (%s) of group %s; use it, or remove it first ('nsys-agent rm %s')", g.ID, g.State, req.Group, g.ID)
	}
	switch {
	case m.down || m.closing:
		m.mu.Unlock()
		return nil, m.downError()
	case m.active != "":
		a := m.windows[m.active]
		m.mu.Unlock()
		return nil, errorf(ErrWindowActive, "window %s is already %s; stop it first ('nsys-agent stop %s')", a.ID, a.State, a.ID)
	}
	m.windows[id], m.runs[id], m.active = w, r, id
	m.mu.Unlock()
	m.log.Info("window requested", "window", id, "backend", name, "by", who.Remote, "token", who.TokenID, "duration", req.Duration, "name", req.Name)
	if err := m.trySave(id); err != nil {
		// A window whose manifest cannot be written would vanish at the next restart, and
		// its report would likely not fit either: refuse it now, loudly.
		m.forget(id)
		return nil, &Error{Kind: ErrNoSpace, Cause: err, Msg: fmt.Sprintf("cannot write the window's manifest in %s: %v; free some space (or remove old windows) and try again", m.o.Store.Root, err)}
	}

	if !startAt.IsZero() {
		// start_at is on this agent's clock (a group's coordinator converts its own time
		// with its offset estimate): the delay is measured on the same clock. One already
		// past starts at once: its timer fires now.
		if delay := startAt.Sub(m.now()); delay > 0 {
			// Scheduled: the window holds the active place, in state requested, until its time.
			m.mu.Lock()
			r.timer = time.AfterFunc(delay, func() {
				if m.fired(id) {
					_ = m.begin(m.ctx, id)
				}
			})
			m.mu.Unlock()
			return m.copyOf(id), nil
		}
		m.fired(id)
	}
	if err := m.begin(ctx, id); err != nil {
		return nil, err
	}
	return m.copyOf(id), nil
}

// begin takes the capture slot and starts the backend's capture of a requested window.
func (m *Manager) begin(ctx context.Context, id string) error {
	m.mu.Lock()
	r, w := m.runs[id], m.windows[id]
	if r == nil || w.State != StateRequested || m.closing {
		m.mu.Unlock()
		m.finish(id, StateCancelled, "the agent shut down before the window started", shared.Result{})
		return errorf(ErrCancelled, "window %s was stopped before its capture started", id)
	}
	m.inflight.Add(1)
	defer m.inflight.Done()
	qctx, cancelQueue := context.WithCancel(ctx)
	r.cancelQueue = cancelQueue
	m.mu.Unlock()

	tctx, cancelTimeout := context.WithTimeout(qctx, m.queueBudget())
	l, err := m.slot.acquire(tctx, id)
	timedOut := errors.Is(tctx.Err(), context.DeadlineExceeded) && qctx.Err() == nil
	cancelTimeout()
	cancelQueue()
	m.mu.Lock()
	r.cancelQueue = nil
	if timedOut && l == nil && w.State == StateRequested {
		// Refused, not cancelled: the window never was, so it leaves no record behind.
		m.mu.Unlock()
		busy := m.busyWith()
		m.forget(id)
		return errorf(ErrWindowActive, "the target is still busy: %s; try again once it is done ('nsys-agent windows' shows it)", busy)
	}
	if err != nil || w.State != StateRequested {
		m.mu.Unlock()
		l.release()
		m.finish(id, StateCancelled, "the request ended while it waited for the previous window's stop", shared.Result{})
		return errorf(ErrCancelled, "window %s was cancelled before its capture started (the request ended or a stop came first)", id)
	}
	r.lease, r.starting = l, true
	m.mu.Unlock()

	// The start itself runs to its end even if the caller leaves: a half-started nsys
	// capture is worse than a window nobody waits for.
	err = r.entry.Backend.Start(context.WithoutCancel(ctx), r.win)

	m.mu.Lock()
	r.starting = false
	stopBy, state := r.stopBy, w.State
	m.mu.Unlock()
	if err != nil {
		l.release() // nothing was started: the slot is free at once
		kind := m.kindOf(err)
		m.finish(id, StateFailed, "starting the capture failed: "+err.Error(), shared.Result{})
		return &Error{Kind: kind, Cause: err, Msg: fmt.Sprintf("window %s: starting the %s capture failed: %v", id, r.entry.Info.Name, err)}
	}
	if state != StateRequested {
		// The target died (or the agent began to shut down) during the start: no window
		// owns this capture any more, so end it rather than leave it running.
		m.abandon(r)
		return m.downError()
	}
	now, mono := m.now(), hostclock.Mono()
	m.mu.Lock()
	// The clocks as the capture is confirmed: a group's merge maps this agent's traces
	// onto the coordinator's time axis from this pair.
	w.State, w.StartedAt, w.Clock = StateCapturing, &now, &ClockReading{WallNs: now.UnixNano(), MonoNs: mono}
	if stopBy == nil && r.win.Duration > 0 {
		r.timer = time.AfterFunc(r.win.Duration, func() {
			if _, err := m.StopWindow(m.ctx, id, Local(TriggerDuration)); err != nil {
				m.log.Debug("duration stop", "window", id, "err", err)
			}
		})
	}
	waiter, waits := r.entry.Backend.(shared.Waiter)
	if waits = waits && stopBy == nil && r.win.Steps > 0; waits {
		wctx, cancel := context.WithCancel(m.ctx)
		r.cancelWait = cancel
		m.wg.Add(1)
		go m.waitSteps(wctx, id, r, waiter)
	}
	if stopBy == nil && w.MaxBytes > 0 {
		m.watchBudget(id, r, w.MaxBytes)
	}
	m.mu.Unlock()
	m.save(id)
	m.log.Info("window capturing", "window", id)
	if stopBy != nil {
		// A stop came while the start ran: honour it now that there is a capture to stop.
		if _, err := m.stopCapture(id, *stopBy); err != nil {
			m.log.Warn("stopping a window stopped during its start", "window", id, "err", err)
		}
	}
	return nil
}

// checkSpace refuses a start when the data dir is below its free-space floor.
func (m *Manager) checkSpace() error {
	if m.o.MinFree == 0 {
		return nil
	}
	free, err := diskspace.Free(m.o.Store.Root)
	if err != nil {
		return nil // unknown: the save or the stop will say what is wrong
	}
	if free < m.o.MinFree {
		return errorf(ErrNoSpace, "the data dir %s has %s free, below the %s a window needs (--min-free); remove old windows or give the agent another --data-dir",
			m.o.Store.Root, diskspace.Human(free), diskspace.Human(m.o.MinFree))
	}
	return nil
}

// queueBudget is how long a start may wait for the slot: QueueTimeout, less the time the
// holder's stop has run already. A stop that ran past it is stuck or writing a huge
// report, and the caller hears so at once rather than after another wait.
func (m *Manager) queueBudget() time.Duration {
	budget := m.o.QueueTimeout
	if w := m.copyOf(m.slot.owner()); w != nil && w.StoppedAt != nil {
		budget -= m.now().Sub(*w.StoppedAt)
	}
	return max(budget, time.Millisecond)
}

// busyWith says which window holds the capture slot and for how long it has been stopping.
func (m *Manager) busyWith() string {
	owner := m.slot.owner()
	w := m.copyOf(owner)
	if w == nil {
		return "another window is capturing or stopping"
	}
	if w.StoppedAt != nil {
		return fmt.Sprintf("window %s has been stopping for %s (%s)", w.ID, m.now().Sub(*w.StoppedAt).Round(time.Second), progressText(w.Progress))
	}
	return fmt.Sprintf("window %s is %s", w.ID, w.State)
}

func progressText(p *Progress) string {
	if p == nil {
		return "no progress reported"
	}
	return fmt.Sprintf("%s, %.0f%%", p.Step, 100*p.Fraction)
}

// forget drops a window that was refused before it began: no record, no folder.
func (m *Manager) forget(id string) {
	m.saveMu.Lock()
	defer m.saveMu.Unlock()
	m.mu.Lock()
	delete(m.windows, id)
	delete(m.runs, id)
	delete(m.saved, id)
	if m.active == id {
		m.active = ""
	}
	m.version.Add(1)
	m.mu.Unlock()
	if dir, err := m.o.Store.WindowDir(id); err == nil {
		_ = os.RemoveAll(dir)
	}
	m.bus.Publish(Event{Type: "window", Window: &Manifest{ID: id, State: StateCancelled, Error: "refused: the target was busy"}, Time: m.now()})
}

// abandon ends a capture that no window owns any more and frees the slot.
func (m *Manager) abandon(r *run) {
	defer r.lease.release()
	ctx, cancel := context.WithTimeout(m.ctx, m.o.FinalizeTimeout)
	defer cancel()
	if _, err := r.entry.Backend.Stop(ctx, r.win, shared.Discard); err != nil {
		m.log.Warn("ending a capture whose window was already closed", "window", r.win.ID, "err", err)
	}
}

// kindOf maps a backend error onto a domain error kind.
func (m *Manager) kindOf(err error) error {
	switch {
	case m.isDown() || errors.Is(err, shared.ErrTargetGone):
		return ErrTargetDown
	case errors.Is(err, shared.ErrBusy):
		return ErrWindowActive
	case errors.Is(err, shared.ErrUnsupported):
		return ErrInvalid
	}
	return err
}

func (m *Manager) downError() error {
	if m.isDown() {
		see := "'nsys-agent status'"
		if m.o.TargetLog != "" {
			see += " and " + m.o.TargetLog
		}
		return errorf(ErrTargetDown, "the target is not running (see %s); restart the agent to capture again", see)
	}
	return errorf(ErrTargetDown, "the agent is shutting down")
}

func (m *Manager) isDown() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.down
}

// watchTarget fails the active window when the target exits, and refuses windows after.
func (m *Manager) watchTarget() {
	select {
	case <-m.o.Target.Done():
	case <-m.ctx.Done():
		return
	}
	_, code := m.o.Target.Exited()
	tail := m.o.Target.Tail(15)
	m.mu.Lock()
	m.down = true
	id := m.active
	m.mu.Unlock()
	m.log.Warn("target exited", "exit_code", code)
	m.bus.Publish(Event{Type: "target", Target: fmt.Sprintf("exited with code %d", code), Time: m.now()})
	if id == "" {
		return
	}
	msg := fmt.Sprintf("the target exited with code %d while this window was open; last output:\n%s", code, strings.Join(tail, "\n"))
	m.mu.Lock()
	w, r := m.windows[id], m.runs[id]
	salvager, salvages := shared.Salvager(nil), false
	if r != nil && w.State == StateCapturing {
		salvager, salvages = r.entry.Backend.(shared.Salvager)
	}
	if salvages {
		m.markFinalizing(w, r, Local(TriggerTargetExit))
		m.wg.Add(1)
	}
	m.mu.Unlock()
	if !salvages {
		m.finish(id, StateFailed, msg, shared.Result{})
		return
	}
	m.save(id)
	go func() {
		defer m.wg.Done()
		ctx, cancel := context.WithTimeout(m.ctx, m.o.FinalizeTimeout)
		defer cancel()
		res, err := salvager.Salvage(ctx, r.win, progressSink{m: m, id: id})
		r.lease.release()
		if err != nil {
			res.Warnings = append(res.Warnings, "keeping what the capture left: "+err.Error())
		}
		m.finish(id, StateFailed, msg, res)
	}()
}

// Close stops a capturing window (finalizing it), cancels a requested one, waits for
// starts and finalizers up to ctx, and stops the manager's goroutines. It does not stop
// the target.
func (m *Manager) Close(ctx context.Context) error {
	m.mu.Lock()
	m.closing = true
	id := m.active
	var state State
	starting := false
	if id != "" {
		state = m.windows[id].State
		if r := m.runs[id]; r != nil && r.starting {
			starting = true
			stop := Local(TriggerShutdown)
			r.stopBy = &stop // begin stops it once its Start returns
		}
	}
	m.mu.Unlock()
	switch {
	case id == "" || starting:
	case state == StateCapturing:
		if _, err := m.stopCapture(id, Local(TriggerShutdown)); err != nil {
			m.log.Warn("stopping the open window at shutdown", "window", id, "err", err)
		}
	default:
		m.finish(id, StateCancelled, "the agent shut down before the window started", shared.Result{})
	}
	done := make(chan struct{})
	go func() { m.inflight.Wait(); m.wg.Wait(); close(done) }()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = fmt.Errorf("finalizing did not end before shutdown: %w", ctx.Err())
	}
	m.cancel()
	m.mu.Lock()
	for _, r := range m.runs {
		if r.timer != nil {
			r.timer.Stop()
		}
	}
	m.mu.Unlock()
	return err
}

// Events is the manager's event bus.
func (m *Manager) Events() *Bus { return m.bus }

// Subscribe streams events until cancel is called.
func (m *Manager) Subscribe() (<-chan Event, func()) { return m.bus.Subscribe() }

// Backends is the registry windows pick their backend from.
func (m *Manager) Backends() *Registry { return m.o.Backends }
