package fleet

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nsys-agent/nsys-agent/agent/windows"
)

type windowsClock = windows.ClockReading

func contains(s, sub string) bool { return strings.Contains(s, sub) }

// fast is a coordinator for tests: a short lead and ack timeout.
func fast() Options {
	return Options{MinLead: 150 * time.Millisecond, AckTimeout: 2 * time.Second, PollEvery: 10 * time.Millisecond, Coordinator: "test-host"}
}

func TestStartTogether(t *testing.T) {
	fs := []*fakeMember{
		{name: "gpu-1", shift: -3 * time.Second, latency: time.Millisecond, startDelay: 3 * time.Millisecond},
		{name: "gpu-2", shift: 2500 * time.Millisecond, latency: 3 * time.Millisecond, startDelay: 8 * time.Millisecond},
		{name: "gpu-3", shift: 40 * time.Second, startDelay: time.Millisecond},
		{name: "gpu-4"},
	}
	ms, _ := members(t, fs...)
	begin := time.Now()
	res, err := New(fast()).Start(context.Background(), ms, Spec{Request: windows.CreateRequest{Duration: "5s", Name: "decode"}})
	if err != nil {
		t.Fatal(err)
	}
	rec := res.Record
	if !windows.ValidGroupID(rec.ID) || rec.State != "capturing" || rec.Coordinator != "test-host" || len(rec.Members) != 4 ||
		rec.MemberCount != 4 || !slices.Equal(rec.Keepers, []string{fs[0].Agent(), fs[1].Agent(), fs[2].Agent()}) || !rec.Whole() {
		t.Fatalf("record: %+v", rec)
	}
	if lead := rec.StartAt.Sub(begin); lead < 150*time.Millisecond || lead > time.Second {
		t.Errorf("start %s after the call began, want the lead (150ms and a little)", lead)
	}
	for i, f := range fs {
		gm, w := rec.Members[i], f.window()
		if gm.Agent != f.Agent() || gm.Host != f.name+"_7477" || gm.Window != "w1" || gm.State != "capturing" || gm.Error != "" {
			t.Errorf("%s: member %+v", f.name, gm)
		}
		// The start time each agent got is T in its own clock: off from T + its true
		// shift by no more than the offset's uncertainty.
		if e := w.StartAt.Sub(rec.StartAt.Add(f.shift)); abs(int64(e)) > gm.UncertaintyNs+int64(time.Microsecond) {
			t.Errorf("%s: start_at %s is %s from T in its clock, beyond ±%s", f.name, w.StartAt, e, time.Duration(gm.UncertaintyNs))
		}
		// Times in the record are on the coordinator's clock: near T, whatever the shift.
		if gm.FiredAt == nil || gm.StartedAt == nil {
			t.Fatalf("%s: fired %v, started %v", f.name, gm.FiredAt, gm.StartedAt)
		}
		if d := gm.FiredAt.Sub(rec.StartAt); d < -5*time.Millisecond || d > 100*time.Millisecond {
			t.Errorf("%s: fired %s from T on the coordinator's clock", f.name, d)
		}
		if !gm.StartedAt.Equal(w.StartedAt.Add(-time.Duration(gm.OffsetNs))) {
			t.Errorf("%s: started_at %s is not the agent's %s less the offset", f.name, gm.StartedAt, w.StartedAt)
		}
		// The first three members keep the whole record; the fourth its own entry.
		wantMembers := 4
		if i >= windows.RecordKeepers {
			wantMembers = 1
		}
		if f.stored == nil || f.stored.ID != rec.ID || len(f.stored.Members) != wantMembers || w.GroupInfo == nil ||
			f.stored.MemberCount != 4 || len(f.stored.Keepers) != 3 || f.stored.Members[min(i, wantMembers-1)].Agent != f.Agent() {
			t.Errorf("%s: record not stored as it should be: %+v", f.name, f.stored)
		}
		if res.Windows[i].GroupInfo == nil {
			t.Errorf("%s: the result's window lacks the stored record", f.name)
		}
	}
	if rec.SkewNs <= 0 || rec.SkewNs > int64(150*time.Millisecond) || rec.FireSkewNs <= 0 || rec.FireSkewNs > rec.SkewNs+int64(10*time.Millisecond) {
		t.Errorf("skew %s, fire skew %s", time.Duration(rec.SkewNs), time.Duration(rec.FireSkewNs))
	}
	if len(res.Warnings) != 0 {
		t.Errorf("warnings: %q", res.Warnings)
	}
}

func TestStartAtTheUsersTimeAndID(t *testing.T) {
	fs := []*fakeMember{{name: "a", shift: time.Second}, {name: "b", shift: -time.Second}}
	ms, _ := members(t, fs...)
	at := time.Now().Add(300 * time.Millisecond).Round(time.Millisecond)
	res, err := New(fast()).Start(context.Background(), ms, Spec{Group: "g-nightly.7", At: at})
	if err != nil {
		t.Fatal(err)
	}
	if res.Record.ID != "g-nightly.7" || !res.Record.StartAt.Equal(at) {
		t.Errorf("record %s at %s, want g-nightly.7 at %s", res.Record.ID, res.Record.StartAt, at)
	}
	// A start time closer than the fan-out needs is kept, with a warning.
	fs = []*fakeMember{{name: "c", latency: 30 * time.Millisecond}, {name: "d"}}
	ms, _ = members(t, fs...)
	res, err = New(fast()).Start(context.Background(), ms, Spec{At: time.Now().Add(40 * time.Millisecond)})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Warnings) != 1 || !contains(res.Warnings[0], "some may start late") {
		t.Errorf("warnings: %q", res.Warnings)
	}
}

func TestStartRefusesBadInput(t *testing.T) {
	a, b := &fakeMember{name: "a"}, &fakeMember{name: "b"}
	for _, tc := range []struct {
		name    string
		members []Member
		spec    Spec
		want    string
	}{
		{"none", nil, Spec{}, "at least one agent"},
		{"twice", []Member{a, a}, Spec{}, "given twice"},
		{"bad id", []Member{a, b}, Spec{Group: "nightly"}, `group id "nightly"`},
		{"dots", []Member{a, b}, Spec{Group: "g-a..b"}, "group id"},
		{"past", []Member{a, b}, Spec{At: time.Now().Add(-time.Minute)}, "in the past"},
		{"start_at set", []Member{a, b}, Spec{Request: windows.CreateRequest{StartAt: "2030-01-01T00:00:00Z"}}, "set by the coordinator"},
		{"bad request", []Member{a, b}, Spec{Request: windows.CreateRequest{Duration: "soon"}}, "duration"},
		{"same host", []Member{a, &fakeMember{name: "a"}}, Spec{}, "given twice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(fast()).Start(context.Background(), tc.members, tc.spec)
			if !errors.Is(err, ErrInvalid) || !contains(err.Error(), tc.want) {
				t.Errorf("error %v, want ErrInvalid with %q", err, tc.want)
			}
		})
	}
	if a.window() != nil || b.window() != nil {
		t.Error("a refused start created windows")
	}
}

// Every way a member can fail a group start: the group fails naming it and why, and no
// other member is left with a window that could start or capture.
func TestStartFailureStopsEveryone(t *testing.T) {
	for _, tc := range []struct {
		name  string
		bad   *fakeMember
		stage Stage
		want  string
		// windows: whether the good members got a window at all (not when the clocks
		// already failed the group). A refusal ends the create fan-out, so the refusing
		// fakes answer slowly: the others' windows exist by then and must be stopped.
		windows bool
		// notStopped: the bad member's window outlives the group (it cannot be reached).
		notStopped bool
	}{
		{name: "refuses", bad: &fakeMember{name: "bad", latency: 20 * time.Millisecond, refuse: &windows.Error{Kind: windows.ErrNoSpace, Msg: "the data dir has 1 GiB free"}},
			stage: StageCreate, want: "scheduling its window failed: the data dir has 1 GiB free", windows: true},
		{name: "clock unreachable", bad: &fakeMember{name: "bad", noClock: true},
			stage: StageClock, want: "reading its clock failed", windows: false},
		{name: "fails at T", bad: &fakeMember{name: "bad", failAtStart: "nsys start: CUPTI is in use by another profiler"},
			stage: StageStart, want: "window w1 failed: nsys start: CUPTI is in use", windows: true},
		{name: "vanishes after accepting", bad: &fakeMember{name: "bad", vanish: true},
			stage: StageStart, want: "the agent stopped answering", windows: true, notStopped: true},
		{name: "never starts", bad: &fakeMember{name: "bad", neverStarts: true},
			stage: StageStart, want: "window w1 was still requested 300ms after the start time", windows: true},
		{name: "ignores the group", bad: &fakeMember{name: "bad", latency: 20 * time.Millisecond, noGroup: true},
			stage: StageCreate, want: "opened outside the group", windows: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			good := []*fakeMember{
				{name: "g1", shift: 2 * time.Second, latency: time.Millisecond},
				{name: "g2", shift: -2 * time.Second},
				{name: "g3", startDelay: 5 * time.Millisecond},
			}
			fs := append([]*fakeMember{good[0], tc.bad}, good[1:]...)
			ms, _ := members(t, fs...)
			o := fast()
			o.AckTimeout = 300 * time.Millisecond
			_, err := New(o).Start(context.Background(), ms, Spec{Request: windows.CreateRequest{Duration: "1m"}})
			var se *StartError
			if !errors.As(err, &se) {
				t.Fatalf("error %v (%T), want a *StartError", err, err)
			}
			if len(se.Failed) != 1 || se.Failed[0].Agent != tc.bad.Agent() || se.Failed[0].Stage != tc.stage {
				t.Fatalf("failed: %v", se.Failed)
			}
			if !contains(err.Error(), tc.bad.Agent()) || !contains(err.Error(), tc.want) {
				t.Errorf("error does not name the agent and why (%q):\n%v", tc.want, err)
			}
			if tc.name == "refuses" && !errors.Is(err, windows.ErrNoSpace) {
				t.Error("the agent's domain error is not reachable with errors.Is")
			}
			for _, f := range good {
				st := f.state()
				switch {
				case !tc.windows && st != "":
					t.Errorf("%s: a window (%s) was made although the clocks failed the group", f.name, st)
				case tc.windows && st != windows.StateCancelled && st != windows.StateFinalizing:
					t.Errorf("%s: left %q, want cancelled (not started yet) or finalizing (stopped)", f.name, st)
				}
			}
			time.Sleep(20 * time.Millisecond) // past any timer that might have fired late
			for _, f := range good {
				if st := f.state(); st == windows.StateCapturing || st == windows.StateRequested {
					t.Errorf("%s: left %s by a failed group", f.name, st)
				}
			}
			if tc.notStopped != (len(se.NotStopped) == 1) {
				t.Errorf("not stopped: %v", se.NotStopped)
			}
			if tc.notStopped && (se.NotStopped[0].Agent != tc.bad.Agent() || !contains(err.Error(), "NOT stopped")) {
				t.Errorf("the unreachable window is not reported: %v", err)
			}
			rec := se.Record
			if rec.State != "failed" || rec.Error != err.Error() || len(rec.Members) != 4 {
				t.Errorf("record: %+v", rec)
			}
			if bm := rec.Members[1]; bm.Error == "" || bm.Agent != tc.bad.Agent() {
				t.Errorf("the bad member's record: %+v", bm)
			}
			for _, f := range good {
				if tc.windows && (f.stored == nil || f.stored.State != "failed") {
					t.Errorf("%s: failed record not stored: %+v", f.name, f.stored)
				}
			}
		})
	}
}

// A create in flight when another member refused is let finish (cancelling it could let
// it land after the cleanup), and its window is then stopped.
func TestCreateInFlightIsAwaitedAndStopped(t *testing.T) {
	slow := &fakeMember{name: "slow", createSlow: 80 * time.Millisecond}
	bad := &fakeMember{name: "bad", latency: 20 * time.Millisecond, refuse: errors.New("window w9 is already capturing")}
	ms, _ := members(t, slow, bad)
	_, err := New(fast()).Start(context.Background(), ms, Spec{})
	var se *StartError
	if !errors.As(err, &se) || len(se.Failed) != 1 || se.Failed[0].Agent != bad.Agent() {
		t.Fatalf("%v", err)
	}
	if st := slow.state(); st != windows.StateCancelled {
		t.Errorf("the slow member's window is %q, want cancelled", st)
	}
	if se.Stopped != 1 {
		t.Errorf("stopped %d, want 1", se.Stopped)
	}
}

func TestStartInterrupted(t *testing.T) {
	fs := []*fakeMember{{name: "a", shift: time.Second}, {name: "b"}}
	ms, _ := members(t, fs...)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel) // while it waits for T
	o := fast()
	o.MinLead = 500 * time.Millisecond
	_, err := New(o).Start(ctx, ms, Spec{})
	var se *StartError
	if !errors.As(err, &se) || !errors.Is(err, context.Canceled) || len(se.Failed) != 0 || se.Stopped != 2 {
		t.Fatalf("%v", err)
	}
	if !contains(err.Error(), "interrupted while waiting for the start time") {
		t.Errorf("%v", err)
	}
	for _, f := range fs {
		if st := f.state(); st != windows.StateCancelled {
			t.Errorf("%s: %s, want cancelled", f.name, st)
		}
	}
}

// A record that cannot be stored is a warning: the group started.
func TestStoreFailureIsAWarning(t *testing.T) {
	fs := []*fakeMember{{name: "a"}, {name: "b", setGroupErr: errors.New("the data dir is read-only")}}
	ms, _ := members(t, fs...)
	res, err := New(fast()).Start(context.Background(), ms, Spec{})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Warnings) != 1 || !contains(res.Warnings[0], fs[1].Agent()) || !contains(res.Warnings[0], "read-only") {
		t.Errorf("warnings: %q", res.Warnings)
	}
	if fs[0].stored == nil {
		t.Error("the other member's record is missing")
	}
}

// 40 agents through a fan-out of 5: never more than 5 calls at once.
func TestConcurrencyIsBounded(t *testing.T) {
	var fs []*fakeMember
	for i := range 40 {
		fs = append(fs, &fakeMember{name: fmt.Sprintf("h%02d", i), latency: time.Millisecond, shift: time.Duration(i-20) * time.Second})
	}
	ms, maxSeen := members(t, fs...)
	o := fast()
	o.Concurrency, o.Probes = 5, 2
	res, err := New(o).Start(context.Background(), ms, Spec{})
	if err != nil {
		t.Fatal(err)
	}
	if n := maxSeen.Load(); n > 5 || n < 2 {
		t.Errorf("%d calls at once, want at most 5 (and a fan-out)", n)
	}
	if len(res.Record.Members) != 40 {
		t.Errorf("%d members", len(res.Record.Members))
	}
}

// A short window can be over before its confirmation is asked for: it counts.
func TestStartedAndAlreadyOver(t *testing.T) {
	fs := []*fakeMember{{name: "a"}, {name: "b"}}
	ms, _ := members(t, fs...)
	over := &finishesAtOnce{fs[1]}
	ms[1] = over
	res, err := New(fast()).Start(context.Background(), ms, Spec{})
	if err != nil {
		t.Fatal(err)
	}
	if st := res.Record.Members[1].State; st != "ready" {
		t.Errorf("state %s, want ready", st)
	}
}

// finishesAtOnce reports its window ready (with StartedAt) once it was capturing.
type finishesAtOnce struct{ *fakeMember }

func (f *finishesAtOnce) Window(ctx context.Context, id string) (*windows.Manifest, error) {
	w, err := f.fakeMember.Window(ctx, id)
	if err == nil && w.State == windows.StateCapturing {
		w.State = windows.StateReady
	}
	return w, err
}

func TestNewGroupIDAndHostDir(t *testing.T) {
	at := time.Date(2025, 1, 2, 15, 4, 5, 0, time.FixedZone("x", 3600))
	id := NewGroupID(at)
	if !windows.ValidGroupID(id) || !strings.HasPrefix(id, "g-20250102-140405-") || len(id) != len("g-20250102-140405-ab12") {
		t.Errorf("id %q", id)
	}
	if NewGroupID(at) == id && NewGroupID(at) == id {
		t.Errorf("ids repeat: %q", id)
	}
	for in, want := range map[string]string{
		"http://gpu-1:7477":         "gpu-1_7477",
		"https://10.0.0.7:7477/api": "10.0.0.7_7477",
		"http://[::1]:7477":         "__1_7477",
		"http://gpu-2":              "gpu-2",
		"::not a url":               "agent",
	} {
		if got := HostDir(in); got != want {
			t.Errorf("HostDir(%q) = %q, want %q", in, got, want)
		}
	}
}

// A refusal ends the create fan-out: members not asked yet are never asked.
func TestRefusalEndsTheFanOut(t *testing.T) {
	bad := &fakeMember{name: "bad", refuse: errors.New("unknown backend")}
	rest := []*fakeMember{{name: "b"}, {name: "c"}}
	ms, _ := members(t, bad, rest[0], rest[1])
	o := fast()
	o.Concurrency = 1
	_, err := New(o).Start(context.Background(), ms, Spec{})
	var se *StartError
	if !errors.As(err, &se) {
		t.Fatal(err)
	}
	for i, f := range rest {
		if f.window() != nil {
			t.Errorf("%s was asked after the group had failed", f.name)
		}
		if gm := se.Record.Members[i+1]; gm.State != "none" || !contains(gm.Error, "not asked") {
			t.Errorf("%s: %+v", f.name, gm)
		}
	}
}

// A create that got no answer in time may still have made its window: the cleanup finds
// it by the group id. One whose window is not there (yet) is reported as not stopped.
func TestTimedOutCreate(t *testing.T) {
	slow := &fakeMember{name: "slow", createSlow: 300 * time.Millisecond}
	ms, _ := members(t, slow, &fakeMember{name: "ok"})
	o := fast()
	o.CallTimeout = 100 * time.Millisecond
	_, err := New(o).Start(context.Background(), ms, Spec{})
	var se *StartError
	if !errors.As(err, &se) || len(se.Failed) != 1 || se.Failed[0].Stage != StageCreate || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("%v", err)
	}
	if st := slow.state(); st != windows.StateCancelled {
		t.Errorf("the timed-out create's window is %q, want cancelled through the group id", st)
	}
	if len(se.NotStopped) != 0 {
		t.Errorf("not stopped: %v", se.NotStopped)
	}

	// This one's request never makes a window while the coordinator looks.
	lost := &fakeMember{name: "lost", createLost: 300 * time.Millisecond}
	ms, _ = members(t, lost, &fakeMember{name: "ok2"})
	_, err = New(o).Start(context.Background(), ms, Spec{})
	if !errors.As(err, &se) || len(se.NotStopped) != 1 || !contains(err.Error(), "if the request still lands, that window starts at") {
		t.Errorf("%v", err)
	}
}

// Interrupted while the clocks are read: no member is blamed, nothing was created.
func TestStartInterruptedWhileProbing(t *testing.T) {
	fs := []*fakeMember{{name: "a", latency: 20 * time.Millisecond}, {name: "b", latency: 20 * time.Millisecond}}
	ms, _ := members(t, fs...)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(30*time.Millisecond, cancel)
	_, err := New(fast()).Start(ctx, ms, Spec{})
	var se *StartError
	if !errors.As(err, &se) || len(se.Failed) != 0 || !contains(err.Error(), "interrupted while reading the agents' clocks") {
		t.Fatalf("%v", err)
	}
	for _, f := range fs {
		if f.window() != nil {
			t.Errorf("%s: a window was made", f.name)
		}
	}
}
