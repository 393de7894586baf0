package agenttest

import (
	"context"
	"testing"
	"time"

	"github.com/nsys-agent/nsys-agent/agent/windows"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// waitState polls the fake until window id is in state want.
func waitState(t *testing.T, s *Service, id string, want windows.State) *windows.Manifest {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for {
		m, err := s.Window(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if m.State == want {
			return m
		}
		if time.Now().After(deadline) {
			t.Fatalf("window %s is %s, want %s", id, m.State, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A scheduled window starts by itself at its start_at, read on the fake's shifted clock.
func TestAutoStartOnTheShiftedClock(t *testing.T) {
	for _, shift := range []time.Duration{-3 * time.Second, 0, 90 * time.Minute} {
		t.Run(shift.String(), func(t *testing.T) {
			s := New(t)
			s.AutoStart, s.StartDelay = true, 5*time.Millisecond
			s.SetClockShift(shift)
			events, unsubscribe := s.Subscribe()
			defer unsubscribe()
			at := s.Now().Add(80 * time.Millisecond)
			m, err := s.CreateWindow(context.Background(), windows.CreateRequest{Group: "g-test", StartAt: at.Format(time.RFC3339Nano)}, windows.Local(windows.TriggerAPI))
			if err != nil {
				t.Fatal(err)
			}
			if m.State != windows.StateRequested || !m.StartAt.Equal(at) || m.Group != "g-test" {
				t.Fatalf("created %+v", m)
			}
			if d := m.CreatedAt.Sub(time.Now()); d < shift-time.Second || d > shift+time.Second {
				t.Errorf("created_at is %s from the real clock, want the shift %s", d, shift)
			}
			m = waitState(t, s, "g-test", windows.StateCapturing)
			if m.FiredAt == nil || m.FiredAt.Before(at) || m.FiredAt.Sub(at) > 200*time.Millisecond {
				t.Errorf("fired at %v, scheduled %s", m.FiredAt, at)
			}
			if m.StartedAt == nil || m.StartedAt.Sub(*m.FiredAt) < 5*time.Millisecond || m.Clock == nil || m.Clock.WallNs != m.StartedAt.UnixNano() {
				t.Errorf("started %v after firing %v, clock %+v", m.StartedAt, m.FiredAt, m.Clock)
			}
			select {
			case ev := <-events:
				if ev.Window == nil || ev.Window.State != windows.StateCapturing {
					t.Errorf("event %+v", ev)
				}
			case <-time.After(time.Second):
				t.Error("the start was not announced")
			}
		})
	}
}

func TestAutoStartFailsOrIsCancelled(t *testing.T) {
	s := New(t)
	s.AutoStart, s.FailAtStart = true, "CUPTI is in use"
	at := s.Now().Add(30 * time.Millisecond).Format(time.RFC3339Nano)
	if _, err := s.CreateWindow(context.Background(), windows.CreateRequest{StartAt: at}, windows.Local(windows.TriggerAPI)); err != nil {
		t.Fatal(err)
	}
	m := waitState(t, s, "w1", windows.StateFailed)
	if m.Error != "starting the capture failed: CUPTI is in use" || m.StartedAt != nil {
		t.Errorf("failed window %+v", m)
	}
	if st := s.Status(context.Background()); st.Active != nil {
		t.Errorf("a failed start still holds the active place: %+v", st.Active)
	}

	s.FailAtStart = ""
	at = s.Now().Add(50 * time.Millisecond).Format(time.RFC3339Nano)
	if _, err := s.CreateWindow(context.Background(), windows.CreateRequest{StartAt: at}, windows.Local(windows.TriggerAPI)); err != nil {
		t.Fatal(err)
	}
	if got := s.Scheduled(); len(got) != 1 || got[0] != "w2" {
		t.Errorf("scheduled %v", got)
	}
	if m, err := s.StopWindow(context.Background(), "w2", windows.Local(windows.TriggerAPI)); err != nil || m.State != windows.StateCancelled {
		t.Fatalf("stop: %v %+v", err, m)
	}
	time.Sleep(100 * time.Millisecond)
	if m, _ := s.Window(context.Background(), "w2"); m.State != windows.StateCancelled || m.FiredAt != nil {
		t.Errorf("a cancelled window started anyway: %+v", m)
	}
}
