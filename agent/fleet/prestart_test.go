package fleet

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nsys-agent/nsys-agent/agent/windows"
)

// A member that dies after accepting its schedule, well before the start time, fails the
// group before T: every other member's window is cancelled while it is still only
// scheduled, and no timer fires. (Members were once first asked at T, when every other
// one had begun its capture, to be stopped a few polls later: 15 needless captures for
// one dead agent in the 16-agent test.)
func TestDeathBeforeTheStartCancelsEveryone(t *testing.T) {
	good := []*fakeMember{{name: "g1", shift: 2 * time.Second}, {name: "g2", shift: -time.Second, latency: time.Millisecond}}
	bad := &fakeMember{name: "bad", vanish: true}
	ms, _ := members(t, good[0], bad, good[1])
	at := time.Now().Add(time.Second)
	_, err := New(fast()).Start(context.Background(), ms, Spec{At: at, Request: windows.CreateRequest{Duration: "1m"}})
	if ended := time.Now(); !ended.Before(at) {
		t.Errorf("the group failed %s after its start time, want before it", ended.Sub(at))
	}
	var se *StartError
	if !errors.As(err, &se) || len(se.Failed) != 1 || se.Failed[0].Agent != bad.Agent() || se.Failed[0].Stage != StageStart {
		t.Fatalf("want a StartError naming %s at its start: %v", bad.Agent(), err)
	}
	if !contains(err.Error(), "the agent stopped answering") || se.Stopped != 2 {
		t.Errorf("stopped %d: %v", se.Stopped, err)
	}
	time.Sleep(time.Until(at) + 50*time.Millisecond) // past T: a timer left armed would fire
	for _, f := range good {
		if w := f.window(); w.State != windows.StateCancelled || w.FiredAt != nil {
			t.Errorf("%s: window %s, fired at %v; want cancelled before its timer fired", f.name, w.State, w.FiredAt)
		}
	}
}
