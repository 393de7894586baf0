package fleet

import (
	"context"
	"fmt"
	"time"
)

// Offset is one agent's clock against the coordinator's.
type Offset struct {
	// OffsetNs is the agent's wall clock minus the coordinator's: a time t read on the
	// agent is t - OffsetNs on the coordinator's clock. The true offset lies within
	// ±UncertaintyNs of it (half the round trip of the probe it came from).
	OffsetNs      int64
	UncertaintyNs int64
	RTTNs         int64 // the shortest round trip of the probes
	Err           error // the agent's clock could not be read: the other fields are zero
}

// Offsets measures every member's clock, at most Concurrency members at a time, and
// says how long the whole fan-out took (a start time must leave the creates that long).
func (c *Coordinator) Offsets(ctx context.Context, members []Member) ([]Offset, time.Duration) {
	out := make([]Offset, len(members))
	begin := c.o.Now()
	c.each(len(members), func(i int) { out[i] = c.probe(ctx, members[i]) })
	return out, c.o.Now().Sub(begin)
}

// probe reads m's clock Probes times and keeps the reading with the shortest round trip,
// NTP-style: the agent read its clock somewhere between the request's send (t0) and the
// answer's arrival (t1), so taking the midpoint errs by at most half the round trip, and
// the shortest round trip is the one least disturbed by queueing on either side. The
// first probe also pays for the connection's set-up, which the minimum discards.
func (c *Coordinator) probe(ctx context.Context, m Member) Offset {
	best := Offset{RTTNs: -1}
	for i := range c.o.Probes {
		if i > 0 {
			if err := sleep(ctx, c.o.ProbeGap); err != nil {
				return Offset{Err: err}
			}
		}
		t0 := c.o.Now()
		r, err := call(c, ctx, m.Clock)
		t1 := c.o.Now()
		if err != nil {
			// An agent that cannot answer its clock now will not start on time either:
			// fail it before anything is created anywhere.
			return Offset{Err: fmt.Errorf("reading its clock: %w", err)}
		}
		if r.WallNs == 0 {
			return Offset{Err: fmt.Errorf("reading its clock: the agent answered no wall clock (an agent older than group windows? update it)")}
		}
		rtt := t1.Sub(t0) // monotonic: immune to the coordinator's clock being set meanwhile
		if best.RTTNs >= 0 && int64(rtt) >= best.RTTNs {
			continue
		}
		mid := t0.UnixNano() + int64(rtt)/2
		best = Offset{OffsetNs: r.WallNs - mid, UncertaintyNs: int64(rtt) / 2, RTTNs: int64(rtt)}
	}
	return best
}

// lead is how far ahead of now the coordinator puts a start time it picks: at least
// MinLead, and enough for the creates to reach every member, which take about as long as
// the clock fan-out did (one call per agent against Probes, but through the same bounded
// fan-out) plus three of the slowest round trips, a margin for a member that answers
// slower now than while it was probed.
func (c *Coordinator) lead(offs []Offset, fanOut time.Duration) time.Duration {
	var slowest int64
	for _, o := range offs {
		slowest = max(slowest, o.RTTNs)
	}
	return max(c.o.MinLead, 3*time.Duration(slowest)+fanOut)
}
