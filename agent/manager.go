package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nsys-agent/nsys-agent/nsys"
	"github.com/nsys-agent/nsys-agent/torchprof"
)

// ManagerOptions wire a Manager.
type ManagerOptions struct {
	Store    *Store
	Backends Backends
	Target   *Supervisor      // nil: no target (tests of the API alone)
	Ctl      *nsys.Controller // the session, for status; may be nil
	Session  SessionStatus
	Log      *slog.Logger
	Version  string
	// OnChange is called after every manifest change (metrics).
	OnChange func(old WindowState, m Manifest)
	// FinalizeTimeout bounds one window's stop + finalize (default 15 min).
	FinalizeTimeout time.Duration
	// Adopt: the target was attached from a previous agent and its session is capturing
	// now. The window that was capturing stays capturing (or, if none was recorded, a
	// "recovered" window is opened for the capture), so a stop finalizes it: nothing is lost.
	Adopt bool
}

// Manager runs windows: the state machine requested → capturing → finalizing → ready |
// failed | cancelled, one capturing window per target, finalizing in the background.
// It implements Service.
type Manager struct {
	o   ManagerOptions
	log *slog.Logger
	bus *Bus

	mu      sync.Mutex
	windows map[string]*Manifest
	active  string // id of the window that is requested or capturing
	timers  map[string]*time.Timer
	down    bool // the target exited

	// opMu orders the backend's work on the target: a Start waits for the Stop of the
	// previous window, which takes opMu before StopWindow returns.
	opMu sync.Mutex
	wg   sync.WaitGroup // background finalizers
	ctx  context.Context
	stop context.CancelFunc
}

// NewManager loads the windows on disk and starts watching the target. Windows that were
// mid-flight when a previous agent died are marked failed; their files are kept.
func NewManager(o ManagerOptions) (*Manager, error) {
	if o.Store == nil || len(o.Backends) == 0 {
		return nil, errors.New("manager needs a store and at least one backend")
	}
	if o.Log == nil {
		o.Log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	if o.FinalizeTimeout == 0 {
		o.FinalizeTimeout = 15 * time.Minute
	}
	ctx, cancel := context.WithCancel(context.Background())
	m := &Manager{o: o, log: o.Log, bus: NewBus(), windows: map[string]*Manifest{}, timers: map[string]*time.Timer{}, ctx: ctx, stop: cancel}
	loaded, errs := o.Store.Load()
	for _, err := range errs {
		m.log.Warn("skipping unreadable window", "err", err)
	}
	adopted := ""
	for _, w := range loaded {
		if o.Adopt && adopted == "" && w.State == StateCapturing {
			adopted = w.ID
			w.Warnings = append(w.Warnings, "adopted by a restarted agent while capturing")
			m.windows[w.ID] = w
			continue
		}
		if !w.State.Terminal() {
			old := w.State
			w.State = StateFailed
			w.Error = fmt.Sprintf("the agent stopped while this window was %s; files it left are listed as artifacts", old)
			m.refreshArtifacts(w)
			now := time.Now().UTC()
			w.FinishedAt = &now
			if err := o.Store.Save(w); err != nil {
				m.log.Warn("saving recovered window", "window", w.ID, "err", err)
			}
		}
		m.windows[w.ID] = w
	}
	if o.Adopt {
		if adopted == "" {
			now := time.Now().UTC()
			w := &Manifest{ID: NewID(now), Name: "recovered", Backend: "nsys", State: StateCapturing, Trigger: "recovered",
				RequestedBy: Requester{Remote: "local", TokenID: "recovered"}, Session: o.Session.Name, CreatedAt: now, StartedAt: &now,
				Warnings:  []string{"the session was capturing when this agent attached, with no window on record; stop this window to keep that capture"},
				Artifacts: []Artifact{}}
			m.windows[w.ID] = w
			adopted = w.ID
		}
		m.active = adopted
		m.save(m.windows[adopted], "")
		m.log.Warn("adopted a capturing window from the previous agent", "window", adopted)
	}
	if o.Target != nil {
		go m.watchTarget()
	}
	return m, nil
}

// Events is the manager's event bus.
func (m *Manager) Events() *Bus { return m.bus }

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
	m.bus.Publish(Event{Type: "target", Target: fmt.Sprintf("exited with code %d", code), Time: time.Now().UTC()})
	if id != "" {
		msg := fmt.Sprintf("the target exited with code %d while this window was capturing; last output:\n%s", code, strings.Join(tail, "\n"))
		m.finish(id, StateFailed, msg, nil)
	}
}

// Status implements Service.
func (m *Manager) Status(ctx context.Context) Status {
	st := Status{Agent: m.o.Version, Session: m.o.Session}
	if t := m.o.Target; t != nil {
		st.Target = TargetStatus{State: "running", Command: t.Command, PID: t.PID(), LogTail: t.Tail(10)}
		if exited, code := t.Exited(); exited {
			st.Target.State = "exited"
			st.Target.ExitCode = &code
		} else {
			st.Target.Ranks = t.Ranks()
		}
	} else {
		st.Target.State = "none"
	}
	if m.o.Ctl != nil && st.Target.State == "running" {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		if s, err := m.o.Ctl.State(cctx); err == nil {
			st.Session.State = string(s)
		} else {
			st.Session.State = "unknown: " + err.Error()
		}
		cancel()
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	st.Windows = len(m.windows)
	if m.active != "" {
		c := *m.windows[m.active]
		st.Active = &c
	}
	return st
}

// CreateWindow implements Service.
func (m *Manager) CreateWindow(ctx context.Context, req CreateWindowRequest, who Requester) (*Manifest, error) {
	if req.Backend == "" {
		req.Backend = "nsys"
	}
	backend, ok := m.o.Backends[req.Backend]
	if !ok {
		return nil, apiErrorf(http.StatusBadRequest, CodeBadRequest, "backend: unknown backend %q (available: %s)", req.Backend, strings.Join(m.o.Backends.Names(), ", "))
	}
	// The API validates too; the manager is the Service and does not trust its caller.
	if err := ValidateCreate(req); err != nil {
		return nil, err
	}
	var dur time.Duration
	if req.Duration != "" {
		dur, _ = time.ParseDuration(req.Duration)
	}
	var startAt time.Time
	if req.StartAt != "" {
		startAt, _ = time.Parse(time.RFC3339, req.StartAt)
	}
	trigger := "api"
	switch {
	case dur > 0:
		trigger = "duration"
	case req.Steps > 0:
		trigger = "steps"
	}

	now := time.Now().UTC()
	w := &Manifest{ID: NewID(now), Name: req.Name, Backend: req.Backend, State: StateRequested, Trigger: trigger,
		RequestedBy: who, Session: m.o.Session.Name, Duration: req.Duration, Steps: req.Steps, Export: req.Export, CreatedAt: now, Artifacts: []Artifact{}}
	m.mu.Lock()
	if m.down {
		m.mu.Unlock()
		return nil, apiErrorf(http.StatusServiceUnavailable, CodeTargetDown, "the target is not running (see 'nsys-agent status' and %s); restart the agent to capture again", filepath.Join(m.o.Store.Root, "target.log"))
	}
	if m.active != "" {
		a := m.windows[m.active]
		m.mu.Unlock()
		return nil, apiErrorf(http.StatusConflict, CodeWindowActive, "window %s is already %s; stop it first ('nsys-agent stop %s')", a.ID, a.State, a.ID)
	}
	m.windows[w.ID] = w
	m.active = w.ID
	m.mu.Unlock()
	m.log.Info("window requested", "window", w.ID, "backend", w.Backend, "by", who.Remote, "token", who.TokenID, "duration", req.Duration, "name", req.Name)
	m.save(w, "")

	run := m.runFor(w, req)
	if !startAt.IsZero() && time.Until(startAt) > 0 {
		// Scheduled: the window holds the slot, in state requested, until its time.
		delay := time.Until(startAt)
		m.mu.Lock()
		m.timers[w.ID] = time.AfterFunc(delay, func() { m.begin(m.ctx, w.ID, backend, run, dur) })
		m.mu.Unlock()
		return m.copyOf(w.ID), nil
	}
	if err := m.begin(ctx, w.ID, backend, run, dur); err != nil {
		return nil, err
	}
	return m.copyOf(w.ID), nil
}

func (m *Manager) runFor(w *Manifest, req CreateWindowRequest) *WindowRun {
	id := w.ID
	return &WindowRun{ID: id, Dir: m.windowDirOf(id), Request: req, Log: m.log.With("window", id),
		Progress: func(step string, frac float64) { m.progress(id, step, frac) }}
}

// begin starts the capture of a requested window.
func (m *Manager) begin(ctx context.Context, id string, backend Backend, run *WindowRun, dur time.Duration) error {
	m.opMu.Lock()
	err := backend.Start(ctx, run)
	m.opMu.Unlock()
	if err != nil {
		m.finish(id, StateFailed, "starting the capture failed: "+err.Error(), nil)
		status := http.StatusInternalServerError
		code := CodeInternal
		if errors.Is(err, nsys.ErrWrongState) {
			status, code = http.StatusConflict, CodeWindowActive
		}
		if m.isDown() || errors.Is(err, nsys.ErrSessionNotFound) {
			status, code = http.StatusServiceUnavailable, CodeTargetDown
		}
		return apiErrorf(status, code, "window %s: starting the %s capture failed: %v", id, backend.Name(), err)
	}
	now := time.Now().UTC()
	m.update(id, func(w *Manifest) {
		w.State = StateCapturing
		w.StartedAt = &now
	})
	m.log.Info("window capturing", "window", id)
	if dur > 0 {
		m.mu.Lock()
		m.timers[id] = time.AfterFunc(dur, func() {
			if _, err := m.StopWindow(m.ctx, id, Requester{Remote: "local", TokenID: "duration"}); err != nil {
				m.log.Debug("duration stop", "window", id, "err", err)
			}
		})
		m.mu.Unlock()
	}
	return nil
}

// StopWindow implements Service: it flips the window to finalizing and returns; the
// backend's stop and the finalize run in the background.
func (m *Manager) StopWindow(ctx context.Context, id string, who Requester) (*Manifest, error) {
	m.mu.Lock()
	if id == "" || id == "active" || id == "-" {
		id = m.active
	}
	w, ok := m.windows[id]
	if id == "" || (!ok && m.active == "") {
		m.mu.Unlock()
		return nil, apiErrorf(http.StatusConflict, CodeNoWindow, "no window is capturing; start one with 'nsys-agent start'")
	}
	if !ok {
		m.mu.Unlock()
		return nil, apiErrorf(http.StatusNotFound, CodeNotFound, "no window %q", id)
	}
	if t := m.timers[id]; t != nil {
		t.Stop()
		delete(m.timers, id)
	}
	switch w.State {
	case StateRequested:
		// Scheduled but not started: nothing to stop on the session.
		m.active = ""
		now := time.Now().UTC()
		w.State, w.StoppedBy, w.StoppedAt, w.FinishedAt = StateCancelled, &who, &now, &now
		m.mu.Unlock()
		m.save(w, StateRequested)
		return m.copyOf(id), nil
	case StateCapturing:
	default:
		m.mu.Unlock()
		return nil, apiErrorf(http.StatusConflict, CodeNoWindow, "window %s is %s, not capturing", id, w.State)
	}
	old := w.State
	now := time.Now().UTC()
	w.State, w.StoppedBy, w.StoppedAt = StateFinalizing, &who, &now
	w.Progress = &Progress{Step: "stopping", Fraction: 0}
	m.active = ""
	backend := m.o.Backends[w.Backend]
	req := CreateWindowRequest{Backend: w.Backend, Name: w.Name, Duration: w.Duration, Steps: w.Steps, Export: w.Export}
	m.mu.Unlock()
	m.save(w, old)
	m.log.Info("window stopping", "window", id, "by", who.Remote, "token", who.TokenID)

	run := m.runFor(w, req)
	m.wg.Add(1)
	m.opMu.Lock() // taken here, released by the finalizer once the backend stopped
	go func() {
		defer m.wg.Done()
		ctx, cancel := context.WithTimeout(m.ctx, m.o.FinalizeTimeout)
		defer cancel()
		begin := time.Now()
		warnings, err := backend.Stop(ctx, run)
		m.opMu.Unlock()
		if err != nil {
			m.finish(id, StateFailed, err.Error(), warnings)
			return
		}
		if f, ok := backend.(Finalizer); ok {
			more, err := f.Finalize(ctx, run)
			warnings = append(warnings, more...)
			if err != nil {
				m.finish(id, StateFailed, err.Error(), warnings)
				return
			}
		}
		m.finish(id, StateReady, "", warnings)
		m.log.Info("window ready", "window", id, "took", time.Since(begin).Round(time.Millisecond))
	}()
	return m.copyOf(id), nil
}

// finish moves a window to a terminal state, listing every file in its folder (partial
// ones too) with size and sha256.
func (m *Manager) finish(id string, state WindowState, errMsg string, warnings []string) {
	m.mu.Lock()
	w, ok := m.windows[id]
	if !ok || w.State.Terminal() {
		m.mu.Unlock()
		return
	}
	if m.active == id {
		m.active = ""
	}
	if t := m.timers[id]; t != nil {
		t.Stop()
		delete(m.timers, id)
	}
	old := w.State
	w.State = state
	w.Error = errMsg
	w.Warnings = append(w.Warnings, warnings...)
	now := time.Now().UTC()
	w.FinishedAt = &now
	if state == StateReady {
		w.Progress = &Progress{Step: "ready", Fraction: 1}
	}
	m.mu.Unlock()
	m.refreshArtifacts(w)
	if raw, err := os.ReadFile(filepath.Join(m.windowDirOf(id), SummaryFile)); err == nil {
		var sum torchprof.Summary
		if json.Unmarshal(raw, &sum) == nil {
			m.mu.Lock()
			w.Summary = sum.Compact()
			m.mu.Unlock()
		}
	}
	m.save(w, old)
	if state == StateFailed {
		m.log.Warn("window failed", "window", id, "err", errMsg)
	}
}

var rankRE = regexp.MustCompile(`(?:-TP-|_tp|-rank-|_rank)(\d+)`)

// refreshArtifacts lists the window folder's files as artifacts.
func (m *Manager) refreshArtifacts(w *Manifest) {
	dir, err := m.o.Store.WindowDir(w.ID)
	if err != nil {
		return
	}
	entries, _ := os.ReadDir(dir)
	arts := []Artifact{}
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || name == "manifest.json" || strings.HasPrefix(name, ".") {
			continue
		}
		var rank *int
		if mm := rankRE.FindStringSubmatch(name); mm != nil && KindOf(name) == "trace" {
			r, _ := strconv.Atoi(mm[1])
			rank = &r
		}
		a, err := Describe(filepath.Join(dir, name), KindOf(name), rank)
		if err != nil {
			w.Warnings = append(w.Warnings, fmt.Sprintf("artifact %s: %v", name, err))
			continue
		}
		arts = append(arts, a)
	}
	sort.Slice(arts, func(i, j int) bool { return arts[i].Name < arts[j].Name })
	m.mu.Lock()
	w.Artifacts = arts
	m.mu.Unlock()
}

func (m *Manager) windowDirOf(id string) string {
	dir, _ := m.o.Store.WindowDir(id)
	return dir
}

func (m *Manager) progress(id, step string, frac float64) {
	m.update(id, func(w *Manifest) { w.Progress = &Progress{Step: step, Fraction: frac} })
}

func (m *Manager) update(id string, fn func(w *Manifest)) {
	m.mu.Lock()
	w, ok := m.windows[id]
	if !ok {
		m.mu.Unlock()
		return
	}
	old := w.State
	fn(w)
	m.mu.Unlock()
	m.save(w, old)
}

// save persists and publishes a window. A failed save is logged: the in-memory state
// stays authoritative and the next change retries.
func (m *Manager) save(w *Manifest, old WindowState) {
	m.mu.Lock()
	c := cloneManifest(w)
	m.mu.Unlock()
	if err := m.o.Store.Save(&c); err != nil {
		m.log.Error("saving manifest", "window", c.ID, "err", err)
	}
	m.bus.Publish(Event{Type: "window", Window: &c, Time: time.Now().UTC()})
	if m.o.OnChange != nil {
		m.o.OnChange(old, c)
	}
}

func (m *Manager) isDown() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.down
}

func (m *Manager) copyOf(id string) *Manifest {
	m.mu.Lock()
	defer m.mu.Unlock()
	w, ok := m.windows[id]
	if !ok {
		return nil
	}
	c := cloneManifest(w)
	return &c
}

func cloneManifest(w *Manifest) Manifest {
	c := *w
	c.Artifacts = append([]Artifact{}, w.Artifacts...)
	c.Warnings = append([]string(nil), w.Warnings...)
	if w.Progress != nil {
		p := *w.Progress
		c.Progress = &p
	}
	return c
}

// Windows implements Service: all windows, oldest first.
func (m *Manager) Windows(ctx context.Context) []Manifest {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Manifest, 0, len(m.windows))
	for _, w := range m.windows {
		out = append(out, cloneManifest(w))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Window implements Service.
func (m *Manager) Window(ctx context.Context, id string) (*Manifest, error) {
	if id == "active" || id == "-" {
		m.mu.Lock()
		id = m.active
		m.mu.Unlock()
	}
	if w := m.copyOf(id); w != nil {
		return w, nil
	}
	return nil, apiErrorf(http.StatusNotFound, CodeNotFound, "no window %q; list them with 'nsys-agent windows'", id)
}

// ArtifactPath implements Service: only artifacts listed in the manifest are served.
func (m *Manager) ArtifactPath(ctx context.Context, id, name string) (string, *Artifact, error) {
	w, err := m.Window(ctx, id)
	if err != nil {
		return "", nil, err
	}
	for _, a := range w.Artifacts {
		if a.Name == name {
			p, err := m.o.Store.ArtifactPath(w.ID, name)
			if err != nil {
				return "", nil, apiErrorf(http.StatusBadRequest, CodeBadRequest, "%v", err)
			}
			a := a
			return p, &a, nil
		}
	}
	return "", nil, apiErrorf(http.StatusNotFound, CodeNotFound, "window %s has no artifact %q", w.ID, name)
}

// Subscribe implements Service.
func (m *Manager) Subscribe() (<-chan Event, func()) { return m.bus.Subscribe() }

// Close stops a capturing window (finalizing it), waits for finalizers up to ctx, and
// stops the manager's goroutines. It does not stop the target.
func (m *Manager) Close(ctx context.Context) error {
	m.mu.Lock()
	id := m.active
	var state WindowState
	if id != "" {
		state = m.windows[id].State
	}
	m.mu.Unlock()
	if id != "" {
		if state == StateCapturing {
			if _, err := m.StopWindow(ctx, id, Requester{Remote: "local", TokenID: "shutdown"}); err != nil {
				m.log.Warn("stopping the open window at shutdown", "window", id, "err", err)
			}
		} else {
			m.finish(id, StateCancelled, "the agent shut down before the window started", nil)
		}
	}
	done := make(chan struct{})
	go func() { m.wg.Wait(); close(done) }()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = fmt.Errorf("finalizing did not end before shutdown: %w", ctx.Err())
	}
	m.stop()
	m.mu.Lock()
	for id, t := range m.timers {
		t.Stop()
		delete(m.timers, id)
	}
	m.mu.Unlock()
	return err
}
