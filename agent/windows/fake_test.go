package windows

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/nsys-agent/nsys-agent/plugins/shared"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeBackend is a backend whose steps a test holds and releases, to put the state
// machine's races on a schedule: real nsys cannot be made to start or stop slowly on
// demand.
type fakeBackend struct {
	name string
	caps []shared.Capability
	opts []shared.Option // window options it accepts

	startGate chan struct{} // when set, Start waits for it to be closed
	stopGate  chan struct{} // when set, Stop waits for it to be closed
	startErr  error
	summary   json.RawMessage
	waitRes   chan shared.Result // Waiter: Wait returns what arrives here

	mu        sync.Mutex
	calls     []string // "start w1", "stop w1", "finalize w1", in order
	inStart   chan string
	inStop    chan string
	capturing map[string]bool
	started   []shared.Window // the windows Start was given
}

func newFake(name string, caps ...shared.Capability) *fakeBackend {
	return &fakeBackend{name: name, caps: caps, inStart: make(chan string, 16), inStop: make(chan string, 16), capturing: map[string]bool{}}
}

func (f *fakeBackend) record(call string) {
	f.mu.Lock()
	f.calls = append(f.calls, call)
	f.mu.Unlock()
}

func (f *fakeBackend) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

func (f *fakeBackend) Capturing() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.capturing)
}

func (f *fakeBackend) Info(ctx context.Context) (shared.Info, error) {
	return shared.Info{Name: f.name, Version: "test", APIVersion: shared.APIVersion, Capabilities: f.caps, Options: f.opts}, nil
}

func (f *fakeBackend) Start(ctx context.Context, w shared.Window) error {
	f.inStart <- w.ID
	if f.startGate != nil {
		<-f.startGate
	}
	f.record("start " + w.ID)
	if f.startErr != nil {
		return f.startErr
	}
	f.mu.Lock()
	f.capturing[w.ID] = true
	f.started = append(f.started, w)
	f.mu.Unlock()
	return os.MkdirAll(w.Dir, 0o700)
}

func (f *fakeBackend) Stop(ctx context.Context, w shared.Window, p shared.Progress) (shared.Result, error) {
	f.inStop <- w.ID
	p.Send(shared.ProgressEvent{Step: "stopping", Fraction: 0.2})
	if f.stopGate != nil {
		<-f.stopGate
	}
	f.record("stop " + w.ID)
	f.mu.Lock()
	delete(f.capturing, w.ID)
	f.mu.Unlock()
	if err := os.WriteFile(filepath.Join(w.Dir, "report.nsys-rep"), []byte("report of "+w.ID), 0o600); err != nil {
		return shared.Result{}, err
	}
	return shared.Result{Artifacts: []string{"report.nsys-rep"}}, nil
}

func (f *fakeBackend) Finalize(ctx context.Context, w shared.Window, p shared.Progress) (shared.Result, error) {
	f.record("finalize " + w.ID)
	return shared.Result{Summary: f.summary, Warnings: []string{"finalized"}}, nil
}

// waiterBackend adds Wait: the server ends the window by itself.
type waiterBackend struct{ *fakeBackend }

func (f waiterBackend) Wait(ctx context.Context, w shared.Window) (shared.Result, error) {
	select {
	case r := <-f.waitRes:
		f.mu.Lock()
		delete(f.capturing, w.ID)
		f.mu.Unlock()
		_ = os.WriteFile(filepath.Join(w.Dir, "rank0-TP-0.trace.json.gz"), []byte("trace"), 0o600)
		return r, nil
	case <-ctx.Done():
		return shared.Result{}, ctx.Err()
	}
}

// fakeTarget is a target the test can end.
type fakeTarget struct {
	done chan struct{}
	code int
}

func (t *fakeTarget) Done() <-chan struct{} { return t.done }
func (t *fakeTarget) Exited() (bool, int)   { return true, t.code }
func (t *fakeTarget) Tail(n int) []string   { return []string{"CUDA error: an illegal memory access"} }

func newManager(t *testing.T, target Target, backends ...shared.Backend) (*Manager, *Store) {
	t.Helper()
	return newManagerWith(t, Options{Target: target}, backends...)
}

// newManagerWith wires a Manager over o (a new store unless o.Store is set: a restart
// over what a previous agent left) and closes it when the test ends.
func newManagerWith(t *testing.T, o Options, backends ...shared.Backend) (*Manager, *Store) {
	t.Helper()
	store := o.Store
	if store == nil {
		var err error
		if store, err = NewStore(t.TempDir()); err != nil {
			t.Fatal(err)
		}
	}
	var entries []Entry
	for _, b := range backends {
		e, err := EntryOf(context.Background(), b, "")
		if err != nil {
			t.Fatal(err)
		}
		entries = append(entries, e)
	}
	reg, err := NewRegistry(entries...)
	if err != nil {
		t.Fatal(err)
	}
	o.Store, o.Backends, o.Session, o.Log = store, reg, "s1", slog.New(slog.NewTextHandler(io.Discard, nil))
	m, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := m.Close(ctx); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return m, store
}

func waitState(t *testing.T, m *Manager, id string, want State) *Manifest {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		w, err := m.Window(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if w.State == want {
			return w
		}
		if w.State.Terminal() || time.Now().After(deadline) {
			t.Fatalf("window %s is %s (%s), want %s", id, w.State, w.Error, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// onDisk reads a window's manifest as saved, once it caught up with the window in
// memory (a save follows each change by microseconds), or after a second.
func onDisk(t *testing.T, s *Store, m *Manager, id string) Manifest {
	t.Helper()
	dir, _ := s.WindowDir(id)
	deadline := time.Now().Add(time.Second)
	for {
		raw, err := os.ReadFile(filepath.Join(dir, ManifestFile))
		if err != nil {
			t.Fatal(err)
		}
		var d Manifest
		if err := json.Unmarshal(raw, &d); err != nil {
			t.Fatal(err)
		}
		mem, _ := m.Window(context.Background(), id)
		if mem == nil || d.State == mem.State || time.Now().After(deadline) {
			return d
		}
		time.Sleep(time.Millisecond)
	}
}

var who = Requester{Remote: "127.0.0.1:9", TokenID: "t0k3n", Trigger: TriggerAPI}

func kindIs(err, kind error) bool { return errors.Is(err, kind) }
