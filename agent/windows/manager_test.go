package windows

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nsys-agent/nsys-agent/internal/diskspace/diskspacetest"
	"github.com/nsys-agent/nsys-agent/plugins/shared"
)

// TestStopDuringStartStopsOnceStarted reproduces the race a review measured 3/3 with two
// curls 30 ms apart: a stop that lands while the backend is still starting must not
// cancel the window and leave the capture running with no window to stop it.
func TestStopDuringStartStopsOnceStarted(t *testing.T) {
	b := newFake("nsys")
	b.startGate = make(chan struct{})
	m, store := newManager(t, nil, b)
	created := make(chan error, 1)
	var id string
	go func() {
		w, err := m.CreateWindow(context.Background(), CreateRequest{}, who)
		if err == nil {
			id = w.ID
		}
		created <- err
	}()
	startingID := <-b.inStart // the backend is inside Start now
	stopped, err := m.StopWindow(context.Background(), startingID, who)
	if err != nil {
		t.Fatalf("stop during start: %v", err)
	}
	if stopped.State != StateRequested {
		t.Fatalf("a window still starting answers the stop as requested, got %s", stopped.State)
	}
	close(b.startGate)
	if err := <-created; err != nil {
		t.Fatalf("the start itself succeeded, its caller should hear so: %v", err)
	}
	done := waitState(t, m, id, StateReady)
	if done.StoppedBy == nil || done.StoppedBy.TokenID != who.TokenID {
		t.Errorf("stopped by %+v, want the stopping request", done.StoppedBy)
	}
	if got := b.Calls(); !slices.Equal(got, []string{"start " + id, "stop " + id, "finalize " + id}) {
		t.Errorf("backend calls %v", got)
	}
	if b.Capturing() != 0 || m.Active() != nil {
		t.Errorf("a capture is left running (%d) or a window active (%v)", b.Capturing(), m.Active())
	}
	if d := onDisk(t, store, m, id); d.State != StateReady {
		t.Errorf("manifest on disk says %s", d.State)
	}
}

// TestQueuedStartFollowsPreviousStopAndCanBeCancelled: a start right after a stop waits
// for that stop's backend work (the session is busy until then); a caller that gives up
// while queued cancels its window, and the slot stays usable.
func TestQueuedStartFollowsPreviousStopAndCanBeCancelled(t *testing.T) {
	b := newFake("nsys")
	b.stopGate = make(chan struct{})
	m, store := newManager(t, nil, b)
	ctx := context.Background()
	a, err := m.CreateWindow(ctx, CreateRequest{Name: "a"}, who)
	if err != nil {
		t.Fatal(err)
	}
	<-b.inStart
	if _, err := m.StopWindow(ctx, a.ID, who); err != nil {
		t.Fatal(err)
	}
	<-b.inStop // a's backend stop is running and holds the slot

	qctx, cancel := context.WithCancel(ctx)
	queued := make(chan error, 1)
	go func() { _, err := m.CreateWindow(qctx, CreateRequest{Name: "b"}, who); queued <- err }()
	var bID string
	for bID == "" {
		if act := m.Active(); act != nil {
			bID = act.ID
		}
		time.Sleep(time.Millisecond)
	}
	select {
	case id := <-b.inStart:
		t.Fatalf("window %s started while the previous stop was still running", id)
	case <-time.After(50 * time.Millisecond):
	}
	cancel()
	if err := <-queued; !kindIs(err, ErrCancelled) {
		t.Fatalf("a cancelled queued start: want ErrCancelled, got %v", err)
	}
	if w := waitState(t, m, bID, StateCancelled); w.Error == "" {
		t.Errorf("a cancelled window says why: %+v", w)
	}
	if d := onDisk(t, store, m, bID); d.State != StateCancelled {
		t.Errorf("manifest on disk says %s", d.State)
	}

	// The next start waits for a's stop, then captures.
	next := make(chan *Manifest, 1)
	go func() {
		w, err := m.CreateWindow(ctx, CreateRequest{Name: "c"}, who)
		if err != nil {
			t.Error(err)
		}
		next <- w
	}()
	time.Sleep(20 * time.Millisecond)
	close(b.stopGate)
	c := <-next
	if c == nil || c.State != StateCapturing {
		t.Fatalf("window after the stop: %+v", c)
	}
	waitState(t, m, a.ID, StateReady)
	calls := b.Calls()
	if slices.Index(calls, "stop "+a.ID) > slices.Index(calls, "start "+c.ID) {
		t.Errorf("the next start ran before the previous stop ended: %v", calls)
	}
}

// TestScheduledWindowCancelledByStop: a window waiting for its start_at is cancelled by a
// stop and never starts.
func TestScheduledWindowCancelledByStop(t *testing.T) {
	b := newFake("nsys")
	m, store := newManager(t, nil, b)
	w, err := m.CreateWindow(context.Background(), CreateRequest{StartAt: time.Now().Add(time.Hour).UTC().Format(time.RFC3339)}, who)
	if err != nil {
		t.Fatal(err)
	}
	if w.State != StateRequested || w.StartAt == nil || time.Until(*w.StartAt) < 59*time.Minute {
		t.Fatalf("scheduled window: %s, starts at %v", w.State, w.StartAt)
	}
	if _, err := m.CreateWindow(context.Background(), CreateRequest{}, who); !kindIs(err, ErrWindowActive) {
		t.Fatalf("a scheduled window holds the place: want ErrWindowActive, got %v", err)
	}
	got, err := m.StopWindow(context.Background(), "", who)
	if err != nil || got.State != StateCancelled {
		t.Fatalf("stop of a scheduled window: %+v %v", got, err)
	}
	if d := onDisk(t, store, m, w.ID); d.State != StateCancelled || d.StoppedBy == nil {
		t.Errorf("on disk: %+v", d)
	}
	if len(b.Calls()) != 0 {
		t.Errorf("the backend was called: %v", b.Calls())
	}
}

// TestDomainErrors: every refusal is a domain error that names what to do.
func TestDomainErrors(t *testing.T) {
	b := newFake("nsys", shared.CapExport)
	other := newFake("torch", shared.CapSteps)
	m, _ := newManager(t, nil, b, other)
	ctx := context.Background()
	cases := []struct {
		req  CreateRequest
		kind error
		text string
	}{
		{CreateRequest{Backend: "magic"}, ErrInvalid, "unknown backend \"magic\" (this agent has: nsys, torch)"},
		{CreateRequest{Steps: 5}, ErrInvalid, "steps: the nsys backend cannot bound a window by engine steps"},
		{CreateRequest{Backend: "torch", Export: true}, ErrInvalid, "export: the torch backend has no SQLite export"},
		{CreateRequest{Duration: "soon"}, ErrInvalid, "duration: invalid duration"},
		{CreateRequest{Name: "../x"}, ErrInvalid, "name:"},
	}
	for _, c := range cases {
		_, err := m.CreateWindow(ctx, c.req, who)
		if !kindIs(err, c.kind) || !strings.Contains(err.Error(), c.text) {
			t.Errorf("%+v: got %v, want %v containing %q", c.req, err, c.kind, c.text)
		}
	}
	if _, err := m.StopWindow(ctx, "", who); !kindIs(err, ErrNoWindow) {
		t.Errorf("stop with nothing capturing: %v", err)
	}
	if _, err := m.StopWindow(ctx, "w20260101-000000-abcdef", who); !kindIs(err, ErrNotFound) {
		t.Errorf("stop of an unknown window: %v", err)
	}
	if _, err := m.Window(ctx, "nope"); !kindIs(err, ErrNotFound) {
		t.Errorf("unknown window: %v", err)
	}
	if len(m.Windows(ctx)) != 0 {
		t.Errorf("refused requests left windows: %+v", m.Windows(ctx))
	}
}

// TestBackendErrorsMapToDomain: the contract's errors become the domain's.
func TestBackendErrorsMapToDomain(t *testing.T) {
	for _, c := range []struct {
		err, kind error
	}{
		{shared.Wrap(shared.ErrBusy, errors.New("Configuring is not allowed in this state.")), ErrWindowActive},
		{shared.Wrap(shared.ErrTargetGone, errors.New("session gone")), ErrTargetDown},
		{shared.Wrap(shared.ErrUnsupported, errors.New("no steps")), ErrInvalid},
	} {
		b := newFake("nsys")
		b.startErr = c.err
		m, _ := newManager(t, nil, b)
		_, err := m.CreateWindow(context.Background(), CreateRequest{}, who)
		if !kindIs(err, c.kind) || !errors.Is(err, c.err) || !strings.Contains(err.Error(), c.err.Error()) {
			t.Errorf("%v: got %v, want kind %v with the cause kept", c.err, err, c.kind)
		}
		ws := m.Windows(context.Background())
		if len(ws) != 1 || ws[0].State != StateFailed || m.Active() != nil {
			t.Errorf("a failed start leaves a failed window and a free slot: %+v", ws)
		}
	}
}

// TestUnavailableBackendSaysWhy: a backend known but unusable is refused with its reason.
func TestUnavailableBackendSaysWhy(t *testing.T) {
	store, _ := NewStore(t.TempDir())
	e, err := EntryOf(context.Background(), newFake("nsys"), "the session is armed with --arm cuda-profiler")
	if err != nil {
		t.Fatal(err)
	}
	reg, _ := NewRegistry(e)
	m, err := New(Options{Store: store, Backends: reg})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(context.Background())
	_, err = m.CreateWindow(context.Background(), CreateRequest{Backend: "nsys"}, who)
	if !kindIs(err, ErrInvalid) || !strings.Contains(err.Error(), "cuda-profiler") {
		t.Errorf("got %v", err)
	}
	_, err = m.CreateWindow(context.Background(), CreateRequest{}, who)
	if !kindIs(err, ErrInvalid) || !strings.Contains(err.Error(), "no usable backend") {
		t.Errorf("default with nothing usable: %v", err)
	}
	if _, err := NewRegistry(e, e); err == nil {
		t.Error("two backends of one name must be refused")
	}
}

// TestSummaryAndWarningsReachManifest: Stop and Finalize results land in the manifest,
// with every regular file listed and a planted symbolic link left out.
func TestSummaryAndWarningsReachManifest(t *testing.T) {
	b := newFake("nsys", shared.CapExport)
	b.summary = []byte(`{"slowest_rank":"pid 628"}`)
	m, store := newManager(t, nil, b)
	w, err := m.CreateWindow(context.Background(), CreateRequest{Export: true, Duration: "30ms"}, who)
	if err != nil {
		t.Fatal(err)
	}
	dir, _ := store.WindowDir(w.ID)
	if err := os.Symlink("/etc/passwd", filepath.Join(dir, "passwd.nsys-rep")); err != nil {
		t.Fatal(err)
	}
	done := waitState(t, m, w.ID, StateReady)
	if string(done.Summary) != `{"slowest_rank":"pid 628"}` || !slices.Contains(done.Warnings, "finalized") {
		t.Errorf("summary %s warnings %v", done.Summary, done.Warnings)
	}
	if len(done.Artifacts) != 1 || done.Artifacts[0].Name != "report.nsys-rep" || done.Artifacts[0].SHA256 == "" {
		t.Errorf("artifacts %+v", done.Artifacts)
	}
	if done.StoppedBy == nil || done.StoppedBy.Trigger != TriggerDuration || done.Trigger != TriggerDuration {
		t.Errorf("a duration window is opened and stopped by its duration: %+v %+v", done.Trigger, done.StoppedBy)
	}
	if _, _, err := m.ArtifactPath(context.Background(), w.ID, "passwd.nsys-rep"); !kindIs(err, ErrNotFound) {
		t.Errorf("a symbolic link must not be served: %v", err)
	}
	var compact bytes.Buffer
	if d := onDisk(t, store, m, w.ID); json.Compact(&compact, d.Summary) != nil || compact.String() != string(done.Summary) || d.State != StateReady {
		t.Errorf("on disk: %s %s", d.State, d.Summary)
	}
}

// TestStepsWindowEndsByItself: with a Waiter backend, the server's own end of a --steps
// window finalizes it, stopped by its steps.
func TestStepsWindowEndsByItself(t *testing.T) {
	f := newFake("torch", shared.CapSteps)
	f.waitRes = make(chan shared.Result, 1)
	m, _ := newManager(t, nil, waiterBackend{f})
	w, err := m.CreateWindow(context.Background(), CreateRequest{Steps: 3}, who)
	if err != nil {
		t.Fatal(err)
	}
	if w.Trigger != TriggerSteps || w.State != StateCapturing {
		t.Fatalf("window %+v", w)
	}
	f.waitRes <- shared.Result{Warnings: []string{"3 steps"}}
	done := waitState(t, m, w.ID, StateReady)
	if done.StoppedBy == nil || done.StoppedBy.Trigger != TriggerSteps || !slices.Contains(done.Warnings, "3 steps") {
		t.Errorf("done %+v", done)
	}
	if slices.Contains(f.Calls(), "stop "+w.ID) {
		t.Errorf("the server stopped by itself; Stop must not be sent: %v", f.Calls())
	}
}

// TestTargetExitFailsWindowAndRefusesNew: the open window fails with the exit code and
// the log tail; new windows are refused as target down.
func TestTargetExitFailsWindowAndRefusesNew(t *testing.T) {
	target := &fakeTarget{done: make(chan struct{}), code: 3}
	m, _ := newManager(t, target, newFake("nsys"))
	w, err := m.CreateWindow(context.Background(), CreateRequest{}, who)
	if err != nil {
		t.Fatal(err)
	}
	sub, cancel := m.Subscribe()
	defer cancel()
	close(target.done)
	deadline := time.After(5 * time.Second)
	for got := false; !got; {
		select {
		case ev := <-sub:
			got = ev.Window != nil && ev.Window.ID == w.ID && ev.Window.State == StateFailed
		case <-deadline:
			t.Fatal("no failed event")
		}
	}
	done, _ := m.Window(context.Background(), w.ID)
	if !strings.Contains(done.Error, "exited with code 3") || !strings.Contains(done.Error, "illegal memory access") {
		t.Errorf("error %q", done.Error)
	}
	if _, err := m.CreateWindow(context.Background(), CreateRequest{}, who); !kindIs(err, ErrTargetDown) {
		t.Errorf("after exit: %v", err)
	}
}

// TestSavesEndAtNewestState: concurrent changes of one window (progress events racing a
// stop) always leave the newest state on disk.
func TestSavesEndAtNewestState(t *testing.T) {
	b := newFake("nsys")
	m, store := newManager(t, nil, b)
	for i := 0; i < 20; i++ {
		w, err := m.CreateWindow(context.Background(), CreateRequest{}, who)
		if err != nil {
			t.Fatal(err)
		}
		<-b.inStart
		sink := progressSink{m: m, id: w.ID}
		go func() {
			for j := 0; j < 20; j++ {
				sink.Send(shared.ProgressEvent{Step: "x", Fraction: 0.5})
			}
		}()
		if _, err := m.StopWindow(context.Background(), w.ID, who); err != nil {
			t.Fatal(err)
		}
		<-b.inStop
		done := waitState(t, m, w.ID, StateReady)
		time.Sleep(2 * time.Millisecond)
		if d := onDisk(t, store, m, w.ID); d.State != done.State {
			t.Fatalf("window %d: on disk %s, in memory %s", i, d.State, done.State)
		}
	}
}

// TestRestartMarksInFlightWindowsFailed: a manifest left mid-flight by a dead agent is
// failed on load, with its files listed.
func TestRestartMarksInFlightWindowsFailed(t *testing.T) {
	store, err := NewStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	id := NewID(time.Now())
	w := &Manifest{ID: id, Backend: "nsys", State: StateFinalizing, CreatedAt: time.Now(), Artifacts: []Artifact{}}
	if err := store.Save(w); err != nil {
		t.Fatal(err)
	}
	dir, _ := store.WindowDir(id)
	if err := os.WriteFile(filepath.Join(dir, "report.qdstrm"), []byte("raw"), 0o600); err != nil {
		t.Fatal(err)
	}
	m, _ := newManagerWith(t, Options{Store: store}, newFake("nsys"))
	got, err := m.Window(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if got.State != StateFailed || !strings.Contains(got.Error, "finalizing") || len(got.Artifacts) != 1 || got.Artifacts[0].Name != "report.qdstrm" {
		t.Fatalf("recovered window: %+v", got)
	}
	if d := onDisk(t, store, m, id); d.State != StateFailed {
		t.Errorf("on disk: %s", d.State)
	}
}

// TestAdoptedCaptureHoldsSlotAndStops: a restarted agent adopting a capturing session
// keeps the window capturing; a stop finalizes it through the backend.
func TestAdoptedCaptureHoldsSlotAndStops(t *testing.T) {
	store, _ := NewStore(t.TempDir())
	id := NewID(time.Now())
	if err := store.Save(&Manifest{ID: id, Backend: "nsys", State: StateCapturing, CreatedAt: time.Now(), Artifacts: []Artifact{}}); err != nil {
		t.Fatal(err)
	}
	b := newFake("nsys")
	m, _ := newManagerWith(t, Options{Store: store, Adopt: true, AdoptBackend: "nsys"}, b)
	if a := m.Active(); a == nil || a.ID != id || a.State != StateCapturing {
		t.Fatalf("active after adoption: %+v", a)
	}
	if _, err := m.CreateWindow(context.Background(), CreateRequest{}, who); !kindIs(err, ErrWindowActive) {
		t.Fatalf("the adopted capture holds the place: %v", err)
	}
	if _, err := m.StopWindow(context.Background(), "", who); err != nil {
		t.Fatal(err)
	}
	waitState(t, m, id, StateReady)
	if _, err := m.CreateWindow(context.Background(), CreateRequest{}, who); err != nil {
		t.Fatalf("after the adopted window the slot is free: %v", err)
	}
}

func TestStoreRejectsEscapes(t *testing.T) {
	store, err := NewStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"../x", "w1", "", "w20261123-154001-a1b2c3/.."} {
		if _, err := store.WindowDir(id); err == nil {
			t.Errorf("id %q accepted", id)
		}
	}
	id := NewID(time.Now())
	for _, name := range []string{"../manifest.json", "a/b", "..", ""} {
		if _, err := store.ArtifactPath(id, name); err == nil {
			t.Errorf("artifact %q accepted", name)
		}
	}
}

// TestAdoptedDurationWindowStillStops: the deadline of an adopted --duration window is its
// start plus its duration, re-armed by the restarted agent (before, it never stopped).
func TestAdoptedDurationWindowStillStops(t *testing.T) {
	for _, c := range []struct {
		name    string
		started time.Duration // how long ago the dead agent started it
	}{{"deadline ahead", 100 * time.Millisecond}, {"deadline passed", time.Hour}} {
		t.Run(c.name, func(t *testing.T) {
			store, _ := NewStore(t.TempDir())
			id := NewID(time.Now())
			started := time.Now().Add(-c.started).UTC()
			if err := store.Save(&Manifest{ID: id, Backend: "nsys", State: StateCapturing, Trigger: TriggerDuration, Duration: "300ms",
				CreatedAt: started, StartedAt: &started, Artifacts: []Artifact{}}); err != nil {
				t.Fatal(err)
			}
			e, _ := EntryOf(context.Background(), newFake("nsys"), "")
			reg, _ := NewRegistry(e)
			m, err := New(Options{Store: store, Backends: reg, Adopt: true, AdoptBackend: "nsys"})
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close(context.Background())
			done := waitState(t, m, id, StateReady)
			if done.StoppedBy == nil || done.StoppedBy.Trigger != TriggerDuration {
				t.Errorf("stopped by %+v, want its duration", done.StoppedBy)
			}
		})
	}
}

// TestStartBehindHungStopAnswersWithoutRecord: a start queued behind a stop that does not
// end is refused after QueueTimeout, saying which window is stopping and for how long,
// and leaves no window record (before, it blocked for the whole stop timeout and left a
// failed record; 3 401 of them in 60 s under load).
func TestStartBehindHungStopAnswersWithoutRecord(t *testing.T) {
	b := newFake("nsys")
	b.stopGate = make(chan struct{})
	defer close(b.stopGate)
	m, store := newManagerWith(t, Options{QueueTimeout: 100 * time.Millisecond}, b)
	ctx := context.Background()
	a, err := m.CreateWindow(ctx, CreateRequest{}, who)
	if err != nil {
		t.Fatal(err)
	}
	<-b.inStart
	if _, err := m.StopWindow(ctx, a.ID, who); err != nil {
		t.Fatal(err)
	}
	<-b.inStop
	begin := time.Now()
	_, err = m.CreateWindow(ctx, CreateRequest{}, who)
	if !kindIs(err, ErrWindowActive) || !strings.Contains(err.Error(), a.ID+" has been stopping for") {
		t.Fatalf("want a busy answer naming the stopping window, got %v", err)
	}
	if took := time.Since(begin); took > 5*time.Second {
		t.Errorf("the refusal took %s", took)
	}
	if ws := m.Windows(ctx); len(ws) != 1 || ws[0].ID != a.ID {
		t.Errorf("a refused start left a record: %+v", ws)
	}
	entries, _ := os.ReadDir(filepath.Join(store.Root, "windows"))
	if len(entries) != 1 {
		t.Errorf("window folders: %v", entries)
	}
	if m.Active() != nil {
		t.Errorf("nothing should be active: %+v", m.Active())
	}
}

// TestStartRefusedBelowFreeSpaceFloor: a window does not start on a disk too full to hold
// its report, and the refusal says how much is free.
func TestStartRefusedBelowFreeSpaceFloor(t *testing.T) {
	m, _ := newManagerWith(t, Options{MinFree: 1 << 62}, newFake("nsys"))
	_, err := m.CreateWindow(context.Background(), CreateRequest{}, who)
	if !kindIs(err, ErrNoSpace) || !strings.Contains(err.Error(), "free, below the") {
		t.Fatalf("got %v", err)
	}
	if len(m.Windows(context.Background())) != 0 {
		t.Error("a refused start left a record")
	}
}

// TestLeftoverFilesLandingAfterRestartAreFound: a window failed at load because its agent
// died while finalizing gets the report its orphaned stop wrote later (before, it stayed
// failed with no artifacts: 404 on download, "0 files" on pull).
func TestLeftoverFilesLandingAfterRestartAreFound(t *testing.T) {
	store, _ := NewStore(t.TempDir())
	id := NewID(time.Now())
	if err := store.Save(&Manifest{ID: id, Backend: "nsys", State: StateFinalizing, CreatedAt: time.Now(), Artifacts: []Artifact{}}); err != nil {
		t.Fatal(err)
	}
	m, _ := newManagerWith(t, Options{Store: store}, newFake("nsys"))
	if w, _ := m.Window(context.Background(), id); w.State != StateFailed || len(w.Artifacts) != 0 {
		t.Fatalf("at load: %+v", w)
	}
	dir, _ := store.WindowDir(id)
	if err := os.WriteFile(filepath.Join(dir, "late.nsys-rep"), []byte("the report the stop finished"), 0o600); err != nil {
		t.Fatal(err)
	}
	// Asked for by name before any rescan: found.
	if _, a, err := m.ArtifactPath(context.Background(), id, "late.nsys-rep"); err != nil || a.Bytes == 0 {
		t.Fatalf("artifact written after the restart: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "late.qdstrm"), []byte("raw"), 0o600); err != nil {
		t.Fatal(err)
	}
	m.RescanLeftovers()
	w, _ := m.Window(context.Background(), id)
	if len(w.Artifacts) != 2 || !slices.ContainsFunc(w.Warnings, func(s string) bool { return strings.Contains(s, "after the restart") }) {
		t.Errorf("after rescan: %+v", w)
	}
	if d := onDisk(t, store, m, id); len(d.Artifacts) != 2 {
		t.Errorf("on disk: %+v", d.Artifacts)
	}
}

// TestWindowsJSONFollowsEveryChange: the cached list is rebuilt after each change and
// equals a fresh encoding.
func TestWindowsJSONFollowsEveryChange(t *testing.T) {
	m, _ := newManager(t, nil, newFake("nsys"))
	ctx := context.Background()
	if got := string(m.WindowsJSON(ctx)); got != "[]\n" {
		t.Fatalf("empty list: %q", got)
	}
	w, err := m.CreateWindow(ctx, CreateRequest{Name: "one"}, who)
	if err != nil {
		t.Fatal(err)
	}
	first := m.WindowsJSON(ctx)
	if !bytes.Contains(first, []byte(`"name": "one"`)) || !bytes.Contains(first, []byte(`"state": "capturing"`)) {
		t.Fatalf("list: %s", first)
	}
	if _, err := m.StopWindow(ctx, w.ID, who); err != nil {
		t.Fatal(err)
	}
	waitState(t, m, w.ID, StateReady)
	var got []Manifest
	if err := json.Unmarshal(m.WindowsJSON(ctx), &got); err != nil || len(got) != 1 || got[0].State != StateReady {
		t.Fatalf("after the stop: %v %+v", err, got)
	}
}

// TestUnsavableManifestRefusesStart: on a full disk (a tmpfs filled to the brim) a window
// whose manifest cannot be written is refused, not started to vanish at the next restart.
func TestUnsavableManifestRefusesStart(t *testing.T) {
	dir := diskspacetest.Small(t, 64<<10)
	store, err := NewStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	fill, _ := os.Create(filepath.Join(dir, "fill"))
	_, _ = fill.Write(make([]byte, 1<<20)) // fails once the tmpfs is full: that is the point
	fill.Close()
	b := newFake("nsys")
	m, _ := newManagerWith(t, Options{Store: store}, b)
	_, err = m.CreateWindow(context.Background(), CreateRequest{}, who)
	if !kindIs(err, ErrNoSpace) || !strings.Contains(err.Error(), "cannot write the window's manifest") {
		t.Fatalf("got %v", err)
	}
	if len(m.Windows(context.Background())) != 0 || len(b.Calls()) != 0 || m.Active() != nil {
		t.Errorf("a refused window left a trace: %+v %v", m.Windows(context.Background()), b.Calls())
	}
}

// TestWindowOptions: options a backend accepts reach its Start and the manifest (and
// survive a restart); any other name is refused before a record exists, naming those it
// accepts; a backend without options says it takes none.
func TestWindowOptions(t *testing.T) {
	torch := newFake("torch")
	torch.opts = []shared.Option{{Name: "mem", Usage: "profile memory"}, {Name: "with_stack"}}
	plain := newFake("nsys")
	dir := t.TempDir()
	store, err := NewStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	m, _ := newManagerWith(t, Options{Store: store}, plain, torch)
	ctx := context.Background()

	_, err = m.CreateWindow(ctx, CreateRequest{Backend: "torch", Options: map[string]string{"mem": "true", "stack": "1"}}, who)
	if !kindIs(err, ErrInvalid) || !strings.Contains(err.Error(), `no option "stack"; it takes mem, with_stack`) {
		t.Errorf("unknown option: %v", err)
	}
	_, err = m.CreateWindow(ctx, CreateRequest{Options: map[string]string{"mem": "true"}}, who)
	if !kindIs(err, ErrInvalid) || !strings.Contains(err.Error(), "the nsys backend takes no options") {
		t.Errorf("backend without options: %v", err)
	}
	if ws := m.Windows(ctx); len(ws) != 0 {
		t.Errorf("refused starts left %d records", len(ws))
	}

	w, err := m.CreateWindow(ctx, CreateRequest{Backend: "torch", Options: map[string]string{"mem": "true"}}, who)
	if err != nil {
		t.Fatal(err)
	}
	torch.mu.Lock()
	got := torch.started[0].Options
	torch.mu.Unlock()
	if got["mem"] != "true" || len(got) != 1 {
		t.Errorf("backend saw options %v", got)
	}
	if _, err := m.StopWindow(ctx, w.ID, who); err != nil {
		t.Fatal(err)
	}
	done := waitState(t, m, w.ID, StateReady)
	if done.Options["mem"] != "true" {
		t.Errorf("manifest options %v", done.Options)
	}
	if d := onDisk(t, store, m, w.ID); d.Options["mem"] != "true" {
		t.Errorf("saved options %v", d.Options)
	}
}

func TestValidateOptions(t *testing.T) {
	many := map[string]string{}
	for i := range MaxOptions + 1 {
		many[fmt.Sprintf("o%d", i)] = "x"
	}
	for _, tc := range []struct {
		opts map[string]string
		want string // "" = valid
	}{
		{nil, ""},
		{map[string]string{"mem": "true", "top_n": "20", "a-b": ""}, ""},
		{map[string]string{"Mem": "1"}, `name "Mem"`},
		{map[string]string{"../x": "1"}, `name "../x"`},
		{map[string]string{"": "1"}, `name ""`},
		{map[string]string{strings.Repeat("a", 33): "1"}, "1 to 32"},
		{map[string]string{"mem": strings.Repeat("v", MaxOptionValueLen+1)}, "value at most 256"},
		{map[string]string{"mem": "a\nb"}, "control character"},
		{many, "at most 16"},
	} {
		err := CreateRequest{Options: tc.opts}.Validate()
		if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%v: %v, want %q", tc.opts, err, tc.want)
		}
	}
}

// TestAnnotations: the agent's verdict and cost land on a finished window, on disk too;
// a window still capturing, an unknown one and non-JSON are refused.
func TestAnnotations(t *testing.T) {
	b := newFake("nsys")
	m, store := newManager(t, nil, b)
	ctx := context.Background()
	w, err := m.CreateWindow(ctx, CreateRequest{}, who)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.SetVerdict(w.ID, json.RawMessage(`{"level":"ok"}`)); !kindIs(err, ErrInvalid) {
		t.Errorf("verdict on a capturing window: %v", err)
	}
	if _, err := m.StopWindow(ctx, w.ID, who); err != nil {
		t.Fatal(err)
	}
	waitState(t, m, w.ID, StateReady)
	if err := m.SetVerdict(w.ID, json.RawMessage(`{"level":"warning"}`)); err != nil {
		t.Fatal(err)
	}
	if err := m.SetCost(w.ID, json.RawMessage(`{"source":"log"}`)); err != nil {
		t.Fatal(err)
	}
	if err := m.SetCost(w.ID, json.RawMessage(`{`)); !kindIs(err, ErrInvalid) {
		t.Errorf("non-JSON cost: %v", err)
	}
	if err := m.SetVerdict("nope", json.RawMessage(`{}`)); !kindIs(err, ErrNotFound) {
		t.Errorf("unknown window: %v", err)
	}
	d := onDisk(t, store, m, w.ID)
	var compact bytes.Buffer
	_ = json.Compact(&compact, d.Verdict)
	if compact.String() != `{"level":"warning"}` || !strings.Contains(string(d.Cost), `"log"`) {
		t.Errorf("on disk: verdict %s cost %s", d.Verdict, d.Cost)
	}
}
