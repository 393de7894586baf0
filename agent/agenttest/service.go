// Package agenttest is the one fake of the agent's Service, for tests of the HTTP API
// (agent) and of the client commands (cmd/nsys-agent). It keeps real files in a temp dir,
// follows the state machine's main rules (one window at a time, domain errors) and lets a
// test script how a stopped window finalizes.
package agenttest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nsys-agent/nsys-agent/agent"
	"github.com/nsys-agent/nsys-agent/agent/triggers"
	"github.com/nsys-agent/nsys-agent/agent/windows"
	"github.com/nsys-agent/nsys-agent/plugins/shared"
)

// Service implements agent.Service.
type Service struct {
	Dir string // artifacts live in Dir/<window id>/

	// Finalize is the sequence of states a stopped window goes through (State, Progress,
	// Error are used). With events, a subscriber gets them as events; with NoEvents the
	// event stream ends at once and each GET of the window after the first moves one step.
	Finalize []windows.Manifest
	NoEvents bool

	mu      sync.Mutex
	windows map[string]*windows.Manifest
	order   []string
	active  string
	subs    map[chan windows.Event]bool
	gets    int
	created int // windows ever made: ids stay unique after a DeleteWindow

	subscriptions int // ever opened

	// ClockShift moves the fake's clock from the real one (issue 14): GET /v1/clock and
	// every time in its manifests, as on a host whose clock is off.
	ClockShift time.Duration
	// AutoStart makes a scheduled window start by itself at its start_at (a timer in the
	// fake's clock), as the agent's does: requested -> capturing, with FiredAt, StartedAt
	// and Clock set. Without it a scheduled window waits in requested for Change.
	AutoStart bool
	// FailAtStart, with AutoStart, makes a scheduled window fail at its start_at with
	// this error instead (a backend whose start fails).
	FailAtStart string
	// StartDelay, with AutoStart, is how long the "backend" takes from the timer firing
	// to the capture.
	StartDelay time.Duration
	timers     map[string]*time.Timer

	// Issue 15, triggers part: a real trigger set over this fake's windows and a fake
	// target output (Line).
	triggers *triggers.Set
	lineMu   sync.Mutex
	lineSubs map[int]func(string)
	lineNext int
}

var _ agent.Service = (*Service)(nil)

// New returns an empty fake with its artifacts under a test temp dir.
func New(t testing.TB) *Service {
	s := &Service{Dir: t.TempDir(), windows: map[string]*windows.Manifest{}, subs: map[chan windows.Event]bool{}, timers: map[string]*time.Timer{}}
	t.Cleanup(s.stopTimers)
	s.triggers = triggers.New(triggers.Options{Open: s.CreateWindow, Lines: s.subscribeLines, ServerURL: "http://127.0.0.1:1"})
	t.Cleanup(s.triggers.Close)
	return s
}

func domainErr(kind error, format string, a ...any) error {
	return &windows.Error{Kind: kind, Msg: fmt.Sprintf(format, a...)}
}

func (s *Service) Status(ctx context.Context) agent.Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := agent.Status{Target: agent.TargetStatus{State: "running", PID: 7, Command: []string{"python", "-m", "sglang.launch_server"}},
		Session: agent.SessionStatus{Name: "nsys-agent-x", Mode: "launch", Nsys: "/usr/bin/nsys", Version: "2022.4.2"},
		Windows: len(s.windows)}
	if s.active != "" {
		cp := *s.windows[s.active]
		st.Active = &cp
	}
	return st
}

func (s *Service) Backends(ctx context.Context) []agent.BackendStatus {
	return []agent.BackendStatus{{Info: shared.Info{Name: "nsys", Version: "test", APIVersion: shared.APIVersion,
		Capabilities: []shared.Capability{shared.CapExport}}, Builtin: true, Default: true}}
}

func (s *Service) CreateWindow(ctx context.Context, req windows.CreateRequest, who windows.Requester) (*windows.Manifest, error) {
	if err := req.Validate(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if req.Backend != "" && req.Backend != "nsys" {
		return nil, domainErr(windows.ErrInvalid, "backend: unknown backend %q (this agent has: nsys)", req.Backend)
	}
	if s.active != "" {
		return nil, domainErr(windows.ErrWindowActive, "window %s is already capturing; stop it first ('nsys-agent stop %s')", s.active, s.active)
	}
	if req.Group != "" && s.resolve(req.Group) != req.Group {
		return nil, domainErr(windows.ErrInvalid, "group: this agent already has window %s of group %s", s.resolve(req.Group), req.Group)
	}
	now := s.now()
	s.created = max(s.created, len(s.order)) + 1
	id := fmt.Sprintf("w%d", s.created)
	m := &windows.Manifest{ID: id, Name: req.Name, Backend: "nsys", State: windows.StateCapturing, Trigger: windows.TriggerAPI,
		RequestedBy: who, Duration: req.Duration, CreatedAt: now, StartedAt: &now, Artifacts: []windows.Artifact{}, Group: req.Group}
	if windows.IsFired(who.Trigger) { // issue 15, triggers part: as the state machine records it
		m.Trigger, m.Labels = who.Trigger, req.Labels
	}
	if at, err := time.Parse(time.RFC3339, req.StartAt); err == nil && at.After(now) {
		// Scheduled: it waits in requested (a test moves it on with Change), or starts
		// by itself at its time with AutoStart.
		m.State, m.StartedAt = windows.StateRequested, nil
		at = at.UTC()
		m.StartAt = &at
		if s.AutoStart {
			s.timers[id] = time.AfterFunc(at.Sub(now), func() { s.fire(id) })
		}
	}
	s.windows[id], s.active = m, id
	s.order = append(s.order, id)
	cp := *m
	return &cp, nil
}

func (s *Service) StopWindow(ctx context.Context, id string, who windows.Requester) (*windows.Manifest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if id == "" {
		id = s.active
	}
	id = s.resolve(id)
	m, ok := s.windows[id]
	if ok && m.State == windows.StateRequested {
		// A scheduled window is cancelled, as the state machine does.
		if tm := s.timers[id]; tm != nil {
			tm.Stop()
		}
		now := s.now()
		m.State, m.StoppedBy, m.FinishedAt = windows.StateCancelled, &who, &now
		if s.active == id {
			s.active = ""
		}
		cp := *m
		return &cp, nil
	}
	switch {
	case id == "" || ok && m.State != windows.StateCapturing:
		return nil, domainErr(windows.ErrNoWindow, "no window is capturing; start one with 'nsys-agent start'")
	case !ok:
		return nil, domainErr(windows.ErrNotFound, "no window %q", id)
	}
	now := s.now()
	m.State, m.StoppedBy, m.StoppedAt, s.active = windows.StateFinalizing, &who, &now, ""
	cp := *m
	for ch := range s.subs {
		select {
		case ch <- windows.Event{Type: "window", Window: &cp, Time: now}:
		default:
		}
	}
	return &cp, nil
}

func (s *Service) Windows(ctx context.Context) []windows.Manifest {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []windows.Manifest{}
	for _, id := range s.order {
		out = append(out, *s.windows[id])
	}
	return out
}

func (s *Service) Window(ctx context.Context, id string) (*windows.Manifest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id = s.resolve(id)
	m, ok := s.windows[id]
	if !ok {
		return nil, domainErr(windows.ErrNotFound, "no window %q; list them with 'nsys-agent windows'", id)
	}
	if m.State == windows.StateFinalizing && s.NoEvents {
		if s.gets > 0 && len(s.Finalize) > 0 {
			next := s.Finalize[0]
			s.Finalize = s.Finalize[1:]
			m.State, m.Progress, m.Error = next.State, next.Progress, next.Error
		}
		s.gets++
	}
	cp := *m
	return &cp, nil
}

func (s *Service) ArtifactPath(ctx context.Context, id, name string) (string, *windows.Artifact, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id = s.resolve(id)
	m, ok := s.windows[id]
	if !ok {
		return "", nil, domainErr(windows.ErrNotFound, "no window %q", id)
	}
	for _, a := range m.Artifacts {
		if a.Name == name {
			return filepath.Join(s.Dir, id, name), &a, nil
		}
	}
	return "", nil, domainErr(windows.ErrNotFound, "window %s has no artifact %q", id, name)
}

// Subscribe streams the stops that follow, and, for a window already finalizing, the
// scripted Finalize steps.
func (s *Service) Subscribe() (<-chan windows.Event, func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ch := make(chan windows.Event, len(s.Finalize)+16)
	if s.NoEvents {
		close(ch) // the stream ends at once: clients must fall back to polling
		return ch, func() {}
	}
	for _, id := range s.order {
		m := s.windows[id]
		if m.State != windows.StateFinalizing {
			continue
		}
		for _, step := range s.Finalize {
			cp := *m
			cp.State, cp.Progress, cp.Error = step.State, step.Progress, step.Error
			ch <- windows.Event{Type: "window", Window: &cp, Time: time.Now()}
		}
	}
	s.subs[ch] = true
	s.subscriptions++
	return ch, func() {
		s.mu.Lock()
		delete(s.subs, ch)
		s.mu.Unlock()
	}
}

// AddWindow adds a ready window whose artifacts hold files (name -> contents); a name
// starting "rankN-" gives the artifact rank N.
func (s *Service) AddWindow(t testing.TB, id string, files map[string]string) *windows.Manifest {
	t.Helper()
	m := &windows.Manifest{ID: id, Backend: "nsys", State: windows.StateReady, CreatedAt: s.Now(), Artifacts: []windows.Artifact{}}
	s.mu.Lock()
	s.windows[id] = m
	s.order = append(s.order, id)
	s.mu.Unlock()
	return s.AddArtifacts(t, id, files)
}

// AddArtifacts writes files (name -> contents) as artifacts of window id, as a backend's
// finalize would (a group member's report, say); a name starting "rankN-" gives rank N.
func (s *Service) AddArtifacts(t testing.TB, id string, files map[string]string) *windows.Manifest {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(s.Dir, id), 0o755); err != nil {
		t.Fatal(err)
	}
	var arts []windows.Artifact
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(s.Dir, id, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256([]byte(data))
		a := windows.Artifact{Name: name, Kind: windows.KindOf(name), Bytes: int64(len(data)), SHA256: hex.EncodeToString(sum[:])}
		if strings.HasPrefix(name, "rank") && len(name) > 4 && name[4] >= '0' && name[4] <= '9' {
			r := int(name[4] - '0')
			a.Rank = &r
		}
		arts = append(arts, a)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	m, ok := s.windows[id]
	if !ok {
		t.Fatalf("agenttest: no window %q to add artifacts to", id)
	}
	m.Artifacts = append(m.Artifacts, arts...)
	cp := *m
	return &cp
}

// Change moves window id to step's State, Progress and Error, as the state machine would
// (a duration running out, a finalize step, a failure), and announces it to subscribers.
// A window that leaves requested or capturing frees the active place.
func (s *Service) Change(t testing.TB, id string, step windows.Manifest) {
	t.Helper()
	s.change(t, id, step, true)
}

// ChangeQuietly moves a window like Change but announces nothing: the agent's bus drops
// events for a subscriber that falls behind, and clients must not hang on a lost one.
func (s *Service) ChangeQuietly(t testing.TB, id string, step windows.Manifest) {
	t.Helper()
	s.change(t, id, step, false)
}

func (s *Service) change(t testing.TB, id string, step windows.Manifest, announce bool) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	m, ok := s.windows[id]
	if !ok {
		t.Fatalf("agenttest: no window %q to change", id)
	}
	now := s.now()
	m.State, m.Progress, m.Error = step.State, step.Progress, step.Error
	switch {
	case m.State == windows.StateCapturing && m.StartedAt == nil:
		m.StartedAt = &now
	case m.State == windows.StateFinalizing && m.StoppedAt == nil:
		m.StoppedAt = &now
	case m.State.Terminal():
		m.FinishedAt = &now
	}
	if s.active == id && m.State != windows.StateRequested && m.State != windows.StateCapturing {
		s.active = ""
	}
	if !announce {
		return
	}
	s.announce(m, now)
}

// announce sends m to every subscriber that keeps up; s.mu is held.
func (s *Service) announce(m *windows.Manifest, now time.Time) {
	cp := *m
	for ch := range s.subs {
		select {
		case ch <- windows.Event{Type: "window", Window: &cp, Time: now}:
		default:
		}
	}
}

// Subscriptions is how many event streams were ever opened: a test waits for a client
// to listen (the count to grow) before it changes a window.
func (s *Service) Subscriptions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.subscriptions
}

// Retention (issue 15, item 3): DeleteWindow and PinWindow follow the state machine's
// rules: only a finished, unpinned window is removed, with its files.

func (s *Service) DeleteWindow(ctx context.Context, id string, who windows.Requester) (*windows.Manifest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id = s.resolve(id)
	m, ok := s.windows[id]
	switch {
	case !ok:
		return nil, domainErr(windows.ErrNotFound, "no window %q; list them with 'nsys-agent windows'", id)
	case !m.State.Terminal():
		return nil, domainErr(windows.ErrWindowActive, "window %s is %s: only a finished window can be removed; stop it first ('nsys-agent stop %s')", id, m.State, id)
	case m.Pinned:
		return nil, domainErr(windows.ErrPinned, "window %s is pinned; unpin it first ('nsys-agent unpin %s')", id, id)
	}
	if err := os.RemoveAll(filepath.Join(s.Dir, id)); err != nil {
		return nil, err
	}
	delete(s.windows, id)
	for i, o := range s.order {
		if o == id {
			s.order = append(s.order[:i], s.order[i+1:]...)
			break
		}
	}
	cp := *m
	return &cp, nil
}

func (s *Service) PinWindow(ctx context.Context, id string, pinned bool, who windows.Requester) (*windows.Manifest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id = s.resolve(id)
	m, ok := s.windows[id]
	if !ok {
		return nil, domainErr(windows.ErrNotFound, "no window %q; list them with 'nsys-agent windows'", id)
	}
	m.Pinned = pinned
	cp := *m
	return &cp, nil
}

// Group windows (issue 14).

// resolve turns a group id into the id of this fake's window of that group (ids that are
// no group's come back unchanged).
func (s *Service) resolve(id string) string {
	if !windows.ValidGroupID(id) {
		return id
	}
	for _, wid := range s.order {
		if s.windows[wid].Group == id {
			return wid
		}
	}
	return id
}

// Clock reads the fake's clock: the real one moved by ClockShift.
func (s *Service) Clock(ctx context.Context) windows.ClockReading {
	return windows.ClockReading{WallNs: s.Now().UnixNano(), MonoNs: time.Now().UnixNano()}
}

// Now is the fake's clock: the real one moved by ClockShift, in UTC.
func (s *Service) Now() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.now()
}

// now is Now with s.mu held.
func (s *Service) now() time.Time { return time.Now().Add(s.ClockShift).UTC() }

// fire is a scheduled window's timer (AutoStart): its capture starts, or fails with
// FailAtStart, after StartDelay.
func (s *Service) fire(id string) {
	s.mu.Lock()
	m := s.windows[id]
	if m == nil || m.State != windows.StateRequested {
		s.mu.Unlock()
		return
	}
	fired := s.now()
	m.FiredAt = &fired
	delay := s.StartDelay
	s.mu.Unlock()
	time.Sleep(delay)
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.timers, id)
	if m.State != windows.StateRequested {
		return // stopped while it started: cancelled already
	}
	now := s.now()
	if s.FailAtStart != "" {
		m.State, m.Error, m.FinishedAt = windows.StateFailed, "starting the capture failed: "+s.FailAtStart, &now
		if s.active == id {
			s.active = ""
		}
	} else {
		m.State, m.StartedAt = windows.StateCapturing, &now
		m.Clock = &windows.ClockReading{WallNs: now.UnixNano(), MonoNs: time.Now().UnixNano()}
	}
	s.announce(m, now)
}

// stopTimers ends the scheduled starts still pending when the test ends.
func (s *Service) stopTimers() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, tm := range s.timers {
		tm.Stop()
		delete(s.timers, id)
	}
}

// Scheduled lists the windows still waiting for their start_at (AutoStart).
func (s *Service) Scheduled() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, id := range s.order {
		if s.windows[id].State == windows.StateRequested {
			out = append(out, id)
		}
	}
	return out
}

// SetClockShift moves the fake's clock, as a host whose clock is off.
func (s *Service) SetClockShift(d time.Duration) {
	s.mu.Lock()
	s.ClockShift = d
	s.mu.Unlock()
}

func (s *Service) SetGroup(ctx context.Context, id string, rec windows.GroupRecord) (*windows.Manifest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id = s.resolve(id)
	m, ok := s.windows[id]
	switch {
	case !ok:
		return nil, domainErr(windows.ErrNotFound, "no window %q; list them with 'nsys-agent windows'", id)
	case m.Group == "" || m.Group != rec.ID:
		return nil, domainErr(windows.ErrInvalid, "group: window %s is not a member of group %q", id, rec.ID)
	}
	r := rec.Clone()
	m.GroupInfo = &r
	cp := *m
	return &cp, nil
}
