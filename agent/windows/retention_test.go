package windows

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nsys-agent/nsys-agent/plugins/shared"
)

// sizedBackend is the fake whose stop leaves a report of a known size, so a byte budget
// can be reasoned about (a manifest adds well under 1 kB).
type sizedBackend struct {
	*fakeBackend
	size int
}

func (b sizedBackend) Stop(ctx context.Context, w shared.Window, p shared.Progress) (shared.Result, error) {
	res, err := b.fakeBackend.Stop(ctx, w, p)
	if err == nil {
		err = os.WriteFile(filepath.Join(w.Dir, "report.nsys-rep"), make([]byte, b.size), 0o600)
	}
	return res, err
}

// capture opens a window and stops it, returning its id once it is ready.
func capture(t *testing.T, m *Manager, name string) string {
	t.Helper()
	w, err := m.CreateWindow(context.Background(), CreateRequest{Name: name}, who)
	if err != nil {
		t.Fatalf("window %s: %v", name, err)
	}
	if _, err := m.StopWindow(context.Background(), w.ID, who); err != nil {
		t.Fatalf("stopping %s: %v", name, err)
	}
	waitState(t, m, w.ID, StateReady)
	return w.ID
}

// names lists the windows on record by name, oldest first, once the retention pass that
// follows a settle has run (it runs right after the save that waitState sees).
func names(t *testing.T, m *Manager, want []string) []string {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		ws := m.Windows(context.Background())
		slices.SortStableFunc(ws, func(a, b Manifest) int { return a.CreatedAt.Compare(b.CreatedAt) })
		var got []string
		for _, w := range ws {
			got = append(got, w.Name)
		}
		if slices.Equal(got, want) || time.Now().After(deadline) {
			return got
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func gone(t *testing.T, s *Store, id string) {
	t.Helper()
	dir, _ := s.WindowDir(id)
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("window %s's folder is still there (%v)", id, err)
	}
}

func pin(t *testing.T, m *Manager, id string) {
	t.Helper()
	p, err := m.PinWindow(context.Background(), id, true, who)
	if err != nil || !p.Pinned {
		t.Fatalf("pin %s: %+v, %v", id, p, err)
	}
}

// TestKeepWindowsRemovesOldestNeverPinnedOrActive: with --keep-windows 2, the oldest
// finished windows go first; a pinned one stays and does not count; a capturing one is
// never touched.
func TestKeepWindowsRemovesOldestNeverPinnedOrActive(t *testing.T) {
	b := newFake("nsys")
	m, store := newManagerWith(t, Options{KeepWindows: 2}, b)
	one := capture(t, m, "one")
	pin(t, m, one)
	two := capture(t, m, "two")
	capture(t, m, "three")
	if got := names(t, m, []string{"one", "two", "three"}); !slices.Equal(got, []string{"one", "two", "three"}) {
		t.Fatalf("two unpinned windows and a pinned one fit --keep-windows 2; left %v", got)
	}
	capture(t, m, "four")
	if got := names(t, m, []string{"one", "three", "four"}); !slices.Equal(got, []string{"one", "three", "four"}) {
		t.Fatalf("after a third unpinned window: left %v, want the pinned one and the newest two", got)
	}
	gone(t, store, two)
	if _, err := m.Window(context.Background(), two); !kindIs(err, ErrNotFound) {
		t.Errorf("a removed window is unknown, got %v", err)
	}

	// A capturing window is not finished: it neither counts nor goes.
	open, err := m.CreateWindow(context.Background(), CreateRequest{Name: "open"}, who)
	if err != nil {
		t.Fatal(err)
	}
	if got := names(t, m, []string{"one", "three", "four", "open"}); !slices.Equal(got, []string{"one", "three", "four", "open"}) {
		t.Fatalf("with a window capturing: left %v", got)
	}
	if w, _ := m.Window(context.Background(), open.ID); w.State != StateCapturing {
		t.Errorf("the open window is %s", w.State)
	}
}

// TestMaxBytesRemovesOldestFirst: over --max-bytes the oldest unpinned finished window
// goes; the pinned one and the newest one never do, even when what is left is still over.
func TestMaxBytesRemovesOldestFirst(t *testing.T) {
	b := sizedBackend{newFake("nsys"), 10_000}
	m, store := newManagerWith(t, Options{MaxBytes: 25_000}, b)
	one := capture(t, m, "one")
	pin(t, m, one)
	two := capture(t, m, "two")
	if got := names(t, m, []string{"one", "two"}); len(got) != 2 {
		t.Fatalf("about 20 kB fit in 25 kB; left %v", got)
	}
	capture(t, m, "three")
	if got := names(t, m, []string{"one", "three"}); !slices.Equal(got, []string{"one", "three"}) {
		t.Fatalf("about 30 kB over a 25 kB budget: left %v, want the pinned one and the newest", got)
	}
	gone(t, store, two)

	// A budget below one window: the pinned and the newest stay, nothing else is left.
	m2, _ := newManagerWith(t, Options{MaxBytes: 1}, sizedBackend{newFake("nsys"), 10_000})
	capture(t, m2, "a")
	capture(t, m2, "b")
	if got := names(t, m2, []string{"b"}); !slices.Equal(got, []string{"b"}) {
		t.Errorf("a budget smaller than a window keeps only the newest; left %v", got)
	}
}

// TestRestartKeepsPinsAndRetains: pins are in the manifest, so a restarted agent keeps
// them, and its retention pass at startup applies the budgets it was given.
func TestRestartKeepsPinsAndRetains(t *testing.T) {
	store, err := NewStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	first, _ := newManagerWith(t, Options{Store: store}, newFake("nsys"))
	one := capture(t, first, "one")
	pin(t, first, one)
	two := capture(t, first, "two")
	capture(t, first, "three")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := first.Close(ctx); err != nil {
		t.Fatal(err)
	}

	second, _ := newManagerWith(t, Options{Store: store, KeepWindows: 1}, newFake("nsys"))
	if got := names(t, second, []string{"one", "three"}); !slices.Equal(got, []string{"one", "three"}) {
		t.Fatalf("restart with --keep-windows 1: left %v", got)
	}
	gone(t, store, two)
	if w, err := second.Window(context.Background(), one); err != nil || !w.Pinned {
		t.Errorf("the pin did not survive the restart: %+v, %v", w, err)
	}
	if _, err := second.PinWindow(context.Background(), one, false, who); err != nil {
		t.Fatal(err)
	}
	if d := onDisk(t, store, second, one); d.Pinned {
		t.Error("unpin was not saved")
	}
}

// TestDeleteWindow: only a finished, unpinned window is removed, with its folder.
func TestDeleteWindow(t *testing.T) {
	b := newFake("nsys")
	m, store := newManager(t, nil, b)
	ready := capture(t, m, "ready")
	pinned := capture(t, m, "pinned")
	pin(t, m, pinned)
	open, err := m.CreateWindow(context.Background(), CreateRequest{Name: "open"}, who)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, id string
		kind     error
		msg      string
	}{
		{"capturing", open.ID, ErrWindowActive, "stop it first"},
		{"pinned", pinned, ErrPinned, "unpin it first"},
		{"unknown", "w20260101-000000-abcdef", ErrNotFound, "no window"},
		{"not an id", "../../etc", ErrNotFound, "no window"},
		{"ready", ready, nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, err := m.DeleteWindow(context.Background(), tc.id, who)
			if tc.kind != nil {
				if !kindIs(err, tc.kind) || !strings.Contains(err.Error(), tc.msg) {
					t.Fatalf("want %v saying %q, got %v", tc.kind, tc.msg, err)
				}
				if _, err := m.Window(context.Background(), tc.id); tc.kind != ErrNotFound && err != nil {
					t.Errorf("a refused removal lost the window: %v", err)
				}
				return
			}
			if err != nil || w.ID != tc.id {
				t.Fatalf("remove: %+v, %v", w, err)
			}
			gone(t, store, tc.id)
			if _, err := m.Window(context.Background(), tc.id); !kindIs(err, ErrNotFound) {
				t.Errorf("removed window still on record: %v", err)
			}
		})
	}
}

// growingBackend writes into the window folder while it captures, as a server-driven
// backend's traces do, or reports a size through CaptureSizer, as nsys does for the
// stream it keeps in $TMPDIR.
type growingBackend struct {
	*fakeBackend
	written atomic.Int64
}

func (b *growingBackend) Start(ctx context.Context, w shared.Window) error {
	if err := b.fakeBackend.Start(ctx, w); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(w.Dir, "rank0-TP-0.trace.json.gz"), make([]byte, max(b.written.Load(), 0)), 0o600)
}

type sizerBackend struct{ *growingBackend }

func (b sizerBackend) CaptureBytes(ctx context.Context, w shared.Window) (int64, error) {
	if b.written.Load() < 0 {
		return 0, errors.New("no capture stream found")
	}
	return b.written.Load() * 100, nil // counted here, not in the folder
}

// TestBudgetNotMeasurableIsSaid: a capture whose size cannot be found keeps capturing,
// and its window says its budget is not enforced, once.
func TestBudgetNotMeasurableIsSaid(t *testing.T) {
	g := &growingBackend{fakeBackend: newFake("nsys")}
	g.written.Store(-1)
	m, _ := newManagerWith(t, Options{MaxWindowBytes: 1000, BudgetPoll: 2 * time.Millisecond}, sizerBackend{g})
	w, err := m.CreateWindow(context.Background(), CreateRequest{}, who)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(60 * time.Millisecond) // 30 polls
	got, _ := m.Window(context.Background(), w.ID)
	if got.State != StateCapturing {
		t.Fatalf("an unmeasurable window was stopped: %s", got.State)
	}
	if len(got.Warnings) != 1 || !strings.Contains(got.Warnings[0], "its budget of 1000 B is not enforced: no capture stream found") {
		t.Errorf("warnings %q", got.Warnings)
	}
}

// TestBudgetStopsWindowEarly: a capture over its budget is stopped with the reason; one
// under it runs on.
func TestBudgetStopsWindowEarly(t *testing.T) {
	for _, tc := range []struct {
		name    string
		backend func(g *growingBackend) shared.Backend
		written int64
		agent   int64 // --max-window-bytes
		request int64 // max_bytes
		stops   bool
	}{
		{"folder over the agent's budget", func(g *growingBackend) shared.Backend { return g }, 5000, 1000, 0, true},
		{"folder under it", func(g *growingBackend) shared.Backend { return g }, 500, 1000, 0, false},
		{"the request's budget wins", func(g *growingBackend) shared.Backend { return g }, 5000, 1000, 10_000, false},
		{"the request's budget alone", func(g *growingBackend) shared.Backend { return g }, 5000, 0, 1000, true},
		{"no budget", func(g *growingBackend) shared.Backend { return g }, 5000, 0, 0, false},
		{"measured by the backend", func(g *growingBackend) shared.Backend { return sizerBackend{g} }, 50, 1000, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := &growingBackend{fakeBackend: newFake("nsys")}
			g.written.Store(tc.written)
			m, _ := newManagerWith(t, Options{MaxWindowBytes: tc.agent, BudgetPoll: 5 * time.Millisecond}, tc.backend(g))
			w, err := m.CreateWindow(context.Background(), CreateRequest{MaxBytes: tc.request}, who)
			if err != nil {
				t.Fatal(err)
			}
			if want := max(tc.request, 0); tc.request == 0 && w.MaxBytes != tc.agent || tc.request != 0 && w.MaxBytes != want {
				t.Errorf("manifest max_bytes %d", w.MaxBytes)
			}
			if !tc.stops {
				time.Sleep(100 * time.Millisecond) // 20 polls
				if got, _ := m.Window(context.Background(), w.ID); got.State != StateCapturing {
					t.Fatalf("a window within its budget was stopped: %s %v", got.State, got.Warnings)
				}
				return
			}
			done := waitState(t, m, w.ID, StateReady)
			if done.StoppedBy == nil || done.StoppedBy.Trigger != TriggerBudget {
				t.Errorf("stopped by %+v, want the budget", done.StoppedBy)
			}
			if !slices.ContainsFunc(done.Warnings, func(s string) bool {
				return strings.HasPrefix(s, "stopped early: the capture wrote ") && strings.Contains(s, "exceeding its budget of 1000 B")
			}) {
				t.Errorf("the reason is not recorded: %q", done.Warnings)
			}
		})
	}
}

func TestCreateRequestMaxBytesValidated(t *testing.T) {
	err := CreateRequest{MaxBytes: -1}.Validate()
	if !kindIs(err, ErrInvalid) || !strings.Contains(err.Error(), "max_bytes") {
		t.Fatalf("negative max_bytes: %v", err)
	}
}

// TestAdoptedWindowKeepsItsBudget: a window adopted from a dead agent while capturing
// is still held to its byte budget (before, only a window started by this agent was).
func TestAdoptedWindowKeepsItsBudget(t *testing.T) {
	store, _ := NewStore(t.TempDir())
	id := NewID(time.Now())
	started := time.Now().UTC()
	if err := store.Save(&Manifest{ID: id, Backend: "nsys", State: StateCapturing, Trigger: TriggerAPI, MaxBytes: 1000,
		CreatedAt: started, StartedAt: &started, Artifacts: []Artifact{}}); err != nil {
		t.Fatal(err)
	}
	g := &growingBackend{fakeBackend: newFake("nsys")}
	g.written.Store(50) // ×100 by the sizer: 5000 bytes
	e, _ := EntryOf(context.Background(), sizerBackend{g}, "")
	reg, _ := NewRegistry(e)
	m, err := New(Options{Store: store, Backends: reg, Adopt: true, AdoptBackend: "nsys", BudgetPoll: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(context.Background())
	done := waitState(t, m, id, StateReady)
	if done.StoppedBy == nil || done.StoppedBy.Trigger != TriggerBudget {
		t.Errorf("stopped by %+v, want the budget", done.StoppedBy)
	}
}
