package fleet

import (
	"context"
	"errors"
	"testing"
	"time"
)

// The estimate is within its uncertainty of the true shift, for symmetric and lopsided
// trips alike: the agent read its clock somewhere inside the round trip.
func TestOffsetsWithinUncertainty(t *testing.T) {
	fs := []*fakeMember{
		{name: "a", shift: -3 * time.Second},
		{name: "b", shift: 2500 * time.Millisecond, latency: 2 * time.Millisecond},
		{name: "c", shift: 45 * time.Second, latency: 4 * time.Millisecond, upShare: 0.9},
		{name: "d", shift: -700 * time.Microsecond, latency: 3 * time.Millisecond, upShare: 0.1},
	}
	ms, _ := members(t, fs...)
	offs, fanOut := New(Options{}).Offsets(context.Background(), ms)
	if fanOut <= 0 {
		t.Errorf("fan-out time %s", fanOut)
	}
	for i, o := range offs {
		f := fs[i]
		if o.Err != nil {
			t.Fatalf("%s: %v", f.name, o.Err)
		}
		if o.RTTNs < int64(f.latency) {
			t.Errorf("%s: rtt %s below the fake's latency %s", f.name, time.Duration(o.RTTNs), f.latency)
		}
		if o.UncertaintyNs != o.RTTNs/2 {
			t.Errorf("%s: uncertainty %d, want rtt/2 = %d", f.name, o.UncertaintyNs, o.RTTNs/2)
		}
		if e := o.OffsetNs - int64(f.shift); abs(e) > o.UncertaintyNs+int64(time.Microsecond) {
			t.Errorf("%s: offset %s, true %s: off by %s, beyond ±%s", f.name, time.Duration(o.OffsetNs), f.shift,
				time.Duration(e), time.Duration(o.UncertaintyNs))
		}
	}
	// A lopsided trip errs in the direction the estimate cannot see, but by less than
	// its uncertainty: c's request is slow, so its clock was read late.
	if c := offs[2]; c.OffsetNs-int64(fs[2].shift) <= 0 {
		t.Errorf("c: a slow request trip should make the estimate high, got %s", time.Duration(c.OffsetNs-int64(fs[2].shift)))
	}
}

func TestOffsetsKeepTheShortestRoundTrip(t *testing.T) {
	// The first probe is slow (a connection being set up); the rest are quick.
	f := &slowFirst{fakeMember: fakeMember{name: "a", shift: time.Second}}
	ms, _ := members(t, &f.fakeMember)
	ms[0] = f
	offs, _ := New(Options{Probes: 4}).Offsets(context.Background(), ms)
	if offs[0].Err != nil {
		t.Fatal(offs[0].Err)
	}
	if offs[0].RTTNs >= int64(20*time.Millisecond) {
		t.Errorf("rtt %s: the slow first probe was kept", time.Duration(offs[0].RTTNs))
	}
	if f.calls != 4 {
		t.Errorf("%d probes, want 4", f.calls)
	}
}

type slowFirst struct {
	fakeMember
	calls int
}

func (s *slowFirst) Clock(ctx context.Context) (r windowsClock, err error) {
	s.calls++
	if s.calls == 1 {
		time.Sleep(40 * time.Millisecond)
	}
	return s.fakeMember.Clock(ctx)
}

func TestOffsetsUnreachableAndOld(t *testing.T) {
	fs := []*fakeMember{{name: "up"}, {name: "down", noClock: true}}
	ms, _ := members(t, fs...)
	offs, _ := New(Options{}).Offsets(context.Background(), ms)
	if offs[0].Err != nil || !errors.Is(offs[1].Err, errRefused) {
		t.Errorf("errors: %v, %v", offs[0].Err, offs[1].Err)
	}
	old := &oldClock{fakeMember{name: "old"}}
	offs, _ = New(Options{}).Offsets(context.Background(), []Member{old})
	if offs[0].Err == nil || !contains(offs[0].Err.Error(), "no wall clock") {
		t.Errorf("an agent answering a zero clock: %v", offs[0].Err)
	}
}

type oldClock struct{ fakeMember }

func (o *oldClock) Clock(ctx context.Context) (windowsClock, error) { return windowsClock{}, nil }

func TestLead(t *testing.T) {
	c := New(Options{MinLead: time.Second})
	for _, tc := range []struct {
		rtts   []time.Duration
		fanOut time.Duration
		want   time.Duration
	}{
		{[]time.Duration{time.Millisecond}, 10 * time.Millisecond, time.Second},
		{[]time.Duration{time.Millisecond, 300 * time.Millisecond}, 200 * time.Millisecond, 1100 * time.Millisecond},
		{nil, 2 * time.Second, 2 * time.Second},
	} {
		var offs []Offset
		for _, r := range tc.rtts {
			offs = append(offs, Offset{RTTNs: int64(r)})
		}
		if got := c.lead(offs, tc.fanOut); got != tc.want {
			t.Errorf("lead(%v, %s) = %s, want %s", tc.rtts, tc.fanOut, got, tc.want)
		}
	}
}

func abs(n int64) int64 {
	if n < 0 {
		return -n
	}
	return n
}
