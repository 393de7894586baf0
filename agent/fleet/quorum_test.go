package fleet

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nsys-agent/nsys-agent/agent/windows"
)

// With MinMembers 3 of 4, each way one member can fail leaves it out: the three others
// capture on, the group's record says who was left out and why, and the left-out
// member's window is stopped where it exists and can be reached.
func TestQuorumLeavesOneOut(t *testing.T) {
	for _, tc := range []struct {
		name    string
		bad     *fakeMember
		stage   Stage
		warning bool // its window may exist but cannot be stopped
	}{
		{"refuses", &fakeMember{name: "bad", refuse: &windows.Error{Kind: windows.ErrNoSpace, Msg: "the data dir has 1 GiB free"}}, StageCreate, false},
		{"clock unreachable", &fakeMember{name: "bad", noClock: true}, StageClock, false},
		{"fails at T", &fakeMember{name: "bad", failAtStart: "CUPTI is in use"}, StageStart, false},
		{"vanishes after accepting", &fakeMember{name: "bad", vanish: true}, StageStart, true},
		{"never starts", &fakeMember{name: "bad", neverStarts: true}, StageStart, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			good := []*fakeMember{{name: "g1", shift: time.Second}, {name: "g2", shift: -time.Second}, {name: "g3", startDelay: 5 * time.Millisecond}}
			fs := append([]*fakeMember{good[0], tc.bad}, good[1:]...)
			ms, _ := members(t, fs...)
			o := fast()
			o.AckTimeout = 300 * time.Millisecond
			res, err := New(o).Start(context.Background(), ms, Spec{Request: windows.CreateRequest{Duration: "1m"}, MinMembers: 3})
			if err != nil {
				t.Fatalf("a group of 4 with one failure and MinMembers 3 failed: %v", err)
			}
			if len(res.LeftOut) != 1 || res.LeftOut[0].Agent != tc.bad.Agent() || res.LeftOut[0].Stage != tc.stage {
				t.Fatalf("left out: %v", res.LeftOut)
			}
			for _, f := range good {
				if st := f.state(); st != windows.StateCapturing {
					t.Errorf("%s: %s, want capturing", f.name, st)
				}
			}
			// A member that vanished cannot be told: its window may capture on, and a
			// warning says so; every other left-out window is over.
			if st := tc.bad.state(); !tc.warning && (st == windows.StateCapturing || st == windows.StateRequested) {
				t.Errorf("the left-out member's window is %s", st)
			}
			if tc.warning != (len(res.Warnings) == 1 && contains(res.Warnings[0], "left out of the group, may still capture")) {
				t.Errorf("warnings %q", res.Warnings)
			}
			rec := res.Record
			if rec.State != "capturing" || len(rec.Members) != 4 || rec.Members[1].Error == "" || rec.Members[1].StartedAt != nil || rec.SkewNs <= 0 || rec.FireSkewNs <= 0 {
				t.Errorf("record: %+v", rec)
			}
			for _, i := range []int{0, 2, 3} {
				if m := rec.Members[i]; m.State != "capturing" || m.Error != "" || m.StartedAt == nil {
					t.Errorf("member %d: %+v", i, m)
				}
			}
		})
	}
}

// One failure more than MinMembers allows fails the group: every window stopped.
func TestQuorumNotReached(t *testing.T) {
	good := []*fakeMember{{name: "g1"}, {name: "g2"}}
	bad := []*fakeMember{{name: "b1", failAtStart: "CUPTI is in use"}, {name: "b2", neverStarts: true}}
	ms, _ := members(t, good[0], bad[0], good[1], bad[1])
	o := fast()
	o.AckTimeout = 300 * time.Millisecond
	_, err := New(o).Start(context.Background(), ms, Spec{Request: windows.CreateRequest{Duration: "1m"}, MinMembers: 3})
	var se *StartError
	if !errors.As(err, &se) || len(se.Failed) != 2 {
		t.Fatalf("want a StartError naming both, got %v", err)
	}
	for _, f := range append(good, bad...) {
		if st := f.state(); st == windows.StateCapturing || st == windows.StateRequested {
			t.Errorf("%s: left %s", f.name, st)
		}
	}
	if _, err := New(o).Start(context.Background(), ms, Spec{Request: windows.CreateRequest{Duration: "1m"}, MinMembers: 5}); !errors.Is(err, ErrInvalid) {
		t.Errorf("MinMembers above the members: %v", err)
	}
}
