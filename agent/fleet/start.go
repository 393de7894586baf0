package fleet

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/nsys-agent/nsys-agent/agent/windows"
)

// Spec is a group window to open.
type Spec struct {
	Group string    // the group's id; "" makes one (NewGroupID)
	At    time.Time // the start on the coordinator's clock; zero: now plus a lead (see lead)
	// Request is the window every member opens. Start sets its Group and StartAt (in each
	// member's own clock); they must be empty here.
	Request windows.CreateRequest
	// MinMembers is how many members must confirm their capture for the group to start
	// (0: all of them). Up to len(members) − MinMembers members may fail: each is left
	// out (its window, if any, stopped), named in Result.LeftOut and in the record with
	// its error, and the others capture on. One failure more fails the group as a whole.
	MinMembers int
}

// Result is a group that started: every member confirmed its capture (or, with
// Spec.MinMembers, enough of them; LeftOut are the others).
type Result struct {
	Record windows.GroupRecord // state "capturing"; stored on every member that took it
	// Windows are the members' windows as last seen, in member order (a zero Manifest
	// for a left-out member that has none).
	Windows  []windows.Manifest
	Warnings []string // a record that could not be stored, a start time too close
	// LeftOut are the members that failed a group started with Spec.MinMembers, in member
	// order; their windows were stopped where they could be (Warnings name the others).
	LeftOut []*MemberError
}

// pollFailures is how many calls in a row may fail while a member's capture is awaited
// before the member counts as gone: one lost answer is no reason to fail a group.
const pollFailures = 3

// member is the coordinator's view of one member during a start.
type member struct {
	m       Member
	host    string
	off     Offset
	win     *windows.Manifest // last seen
	asked   bool              // a create was sent: a window may exist even without an answer
	acked   bool              // its capture was confirmed
	err     *MemberError      // it failed the group
	stopErr *MemberError      // its window may exist but could not be stopped
	silent  bool              // its last call failed: no point storing a record there
	unsure  bool              // its create got no answer: its window may exist, or appear later
	gone    bool              // it stopped answering while its capture was awaited
	polls   int               // calls in a row that failed while its capture was awaited
}

func (mb *member) fail(stage Stage, err error) {
	mb.err = &MemberError{Agent: mb.m.Agent(), Stage: stage, Err: err}
}

// group is one Start in progress.
type group struct {
	c    *Coordinator
	id   string
	at   time.Time // T, on the coordinator's clock
	ms   []*member
	need int   // members that must confirm their capture (Spec.MinMembers, or all)
	why  error // the start was interrupted (no member's fault)
}

// Start opens spec's window on every member at one instant, T: it measures each
// member's clock, schedules each window for T written in that member's clock, and waits
// until every member confirmed its capture. If members refuse, cannot be reached, fail
// their windows or do not confirm within AckTimeout after T — more of them than
// Spec.MinMembers lets the group go on without (none by default) — or ctx ends, every
// other member's window is stopped, the failed group's record is stored where a window
// exists, and the error is a *StartError naming each failed member and why. Errors
// wrapping ErrInvalid mean nothing was sent.
func (c *Coordinator) Start(ctx context.Context, members []Member, spec Spec) (*Result, error) {
	g, err := c.newGroup(members, spec)
	if err != nil {
		return nil, err
	}
	var warnings []string
	offs, fanOut := c.Offsets(ctx, members)
	for i, o := range offs {
		g.ms[i].off = o
		if o.Err != nil && ctx.Err() == nil { // interrupted: no member's fault
			g.ms[i].fail(StageClock, o.Err)
		}
	}
	now := c.o.Now()
	g.at = spec.At
	if g.at.IsZero() {
		g.at = now.Add(c.lead(offs, fanOut))
	} else if need := c.lead(offs, fanOut) - c.o.MinLead; g.at.Sub(now) < need {
		warnings = append(warnings, fmt.Sprintf("the start time is %s away, less than the %s the agents need to be told: some may start late (the skew says how late)",
			g.at.Sub(now).Round(time.Millisecond), need.Round(time.Millisecond)))
	}
	if ctx.Err() != nil {
		g.why = fmt.Errorf("interrupted while reading the agents' clocks: %w", context.Cause(ctx))
	}
	if g.failed() {
		return nil, g.abort(ctx, warnings)
	}
	g.create(ctx, spec.Request)
	if g.failed() {
		return nil, g.abort(ctx, warnings)
	}
	g.await(ctx)
	if g.failed() {
		return nil, g.abort(ctx, warnings)
	}
	leftOut, w := g.leaveOut(ctx)
	warnings = append(warnings, w...)
	rec := g.record("capturing", "")
	warnings = append(warnings, g.store(ctx, &rec)...)
	res := &Result{Record: rec, Warnings: warnings, LeftOut: leftOut}
	for _, mb := range g.ms {
		var w windows.Manifest // a left-out member may have none
		if mb.win != nil {
			w = *mb.win
		}
		res.Windows = append(res.Windows, w)
	}
	return res, nil
}

// newGroup checks the members and the spec before anything is sent.
func (c *Coordinator) newGroup(members []Member, spec Spec) (*group, error) {
	switch {
	case len(members) == 0:
		return nil, invalidf("a group needs at least one agent")
	case len(members) > windows.MaxGroupMembers:
		return nil, invalidf("%d agents, at most %d in one group", len(members), windows.MaxGroupMembers)
	case spec.Request.Group != "" || spec.Request.StartAt != "":
		return nil, invalidf("the request's group and start_at are set by the coordinator: give Spec.Group and Spec.At")
	case spec.MinMembers < 0 || spec.MinMembers > len(members):
		return nil, invalidf("at least %d members must start, of %d agents: want 1 to %d", spec.MinMembers, len(members), len(members))
	}
	id := spec.Group
	if id == "" {
		id = NewGroupID(c.o.Now())
	}
	if !windows.ValidGroupID(id) {
		return nil, invalidf("group id %q: want g- and then letters, digits, '.', '_', '-' (at most 64 in all, no '..')", id)
	}
	if !spec.At.IsZero() {
		if ago := c.o.Now().Sub(spec.At); ago > 0 {
			return nil, invalidf("the start time %s is %s in the past", spec.At.UTC().Format(time.RFC3339Nano), ago.Round(time.Millisecond))
		}
	}
	probe := spec.Request
	probe.Group = id
	if err := probe.Validate(); err != nil {
		return nil, invalidf("%v", err)
	}
	g := &group{c: c, id: id, need: len(members)}
	if spec.MinMembers > 0 {
		g.need = spec.MinMembers
	}
	agents, hosts := map[string]bool{}, map[string]string{}
	for _, m := range members {
		a, h := m.Agent(), HostDir(m.Agent())
		if agents[a] {
			return nil, invalidf("agent %s is given twice", a)
		}
		if other, dup := hosts[h]; dup {
			return nil, invalidf("agents %s and %s would share the folder %s in a pulled group: give each host once", other, a, h)
		}
		agents[a], hosts[h] = true, a
		g.ms = append(g.ms, &member{m: m, host: h})
	}
	return g, nil
}

// failed says whether the group as a whole failed: interrupted, or more members failed
// than may be left out (none, unless Spec.MinMembers says otherwise).
func (g *group) failed() bool {
	return g.why != nil || g.failures() > len(g.ms)-g.need
}

func (g *group) failures() int {
	n := 0
	for _, mb := range g.ms {
		if mb.err != nil {
			n++
		}
	}
	return n
}

// leaveOut stops the windows of members that failed a group that started without them
// (Spec.MinMembers), and returns them and a warning for each window that may exist but
// could not be stopped.
func (g *group) leaveOut(ctx context.Context) ([]*MemberError, []string) {
	var out []*MemberError
	var failed []*member
	for _, mb := range g.ms {
		if mb.err != nil {
			out, failed = append(out, mb.err), append(failed, mb)
		}
	}
	ctx = context.WithoutCancel(ctx)
	g.c.each(len(failed), func(i int) { g.stop(ctx, failed[i]) })
	var warn []string
	for _, mb := range failed {
		if mb.stopErr != nil {
			warn = append(warn, fmt.Sprintf("%s, left out of the group, may still capture: %v; stop it by the group id once it answers", mb.stopErr.Agent, mb.stopErr.Err))
		}
	}
	return out, warn
}

// create schedules the window on every member whose clock was read. The refusal that
// fails the group (the first, unless Spec.MinMembers allows more) ends the fan-out:
// members not asked yet are not asked at all (at 1 000 agents, most of them). Creates
// already sent are let finish, not cancelled: a cancelled request may still reach its
// agent after the cleanup looked there, and leave a window behind that nobody stops.
func (g *group) create(ctx context.Context, req windows.CreateRequest) {
	var refused atomic.Int64
	refused.Add(int64(g.failures())) // clocks that could not be read
	allowed := int64(len(g.ms) - g.need)
	g.c.each(len(g.ms), func(i int) {
		mb := g.ms[i]
		if mb.err != nil || refused.Load() > allowed || ctx.Err() != nil {
			return
		}
		r := req
		r.Group = g.id
		// T in this member's clock: a time on the coordinator's clock plus the offset.
		r.StartAt = g.at.Add(time.Duration(mb.off.OffsetNs)).UTC().Format(time.RFC3339Nano)
		mb.asked = true
		w, err := call(g.c, ctx, func(ctx context.Context) (*windows.Manifest, error) { return mb.m.Create(ctx, r) })
		switch {
		case err != nil && ctx.Err() != nil:
			// Interrupted: whether the window exists is unknown; the cleanup looks for it
			// by the group id.
			mb.unsure = true
		case err != nil:
			mb.fail(StageCreate, err)
			// No answer in time: the request may still land. A refusal leaves nothing.
			mb.unsure = errors.Is(err, context.DeadlineExceeded)
			mb.silent = true
			refused.Add(1)
		case w.Group != g.id:
			mb.win = w
			mb.fail(StageCreate, fmt.Errorf("window %s was opened outside the group (the agent does not know group windows; update it)", w.ID))
			refused.Add(1)
		default:
			mb.win = w
		}
	})
	if ctx.Err() != nil {
		g.why = fmt.Errorf("interrupted while scheduling the windows: %w", context.Cause(ctx))
	}
}

// await asks each member for its window until every one confirmed its capture, one
// failed, or AckTimeout after T passed. It starts as soon as every window is scheduled,
// not at T: a member that dies or loses its window during the lead then fails the group
// while every other window is still only scheduled, and the cleanup cancels them before
// any capture begins. Before T it asks every preStartPolls × PollEvery (1 s by default:
// 1 000 agents × a lead of minutes stay cheap), and from a first failed call on, every
// PollEvery, as after T, so that a dead agent is told from a lost answer within a few
// PollEvery.
func (g *group) await(ctx context.Context) {
	deadline := g.at.Add(g.c.o.AckTimeout)
	for {
		var pending []*member
		for _, mb := range g.ms {
			if !mb.acked && mb.err == nil {
				pending = append(pending, mb)
			}
		}
		if len(pending) == 0 {
			return
		}
		var failed atomic.Bool
		g.c.each(len(pending), func(i int) {
			if g.poll(ctx, pending[i]) {
				failed.Store(true)
			}
		})
		now := g.c.o.Now()
		switch {
		case ctx.Err() != nil:
			g.interrupted(ctx)
			return
		case failed.Load() && g.failed():
			return
		case now.After(deadline):
			for _, mb := range pending {
				if !mb.acked {
					mb.fail(StageStart, fmt.Errorf("window %s was still %s %s after the start time", mb.win.ID, mb.win.State, g.c.o.AckTimeout))
				}
			}
			return
		}
		next := g.c.o.PollEvery
		if untilT := g.at.Sub(now); untilT > 0 && !g.failing(pending) {
			next = min(preStartPolls*g.c.o.PollEvery, untilT)
		}
		if sleep(ctx, next) != nil {
			g.interrupted(ctx)
			return
		}
	}
}

// interrupted notes that ctx ended the wait, before T or after it.
func (g *group) interrupted(ctx context.Context) {
	what := "the captures to start"
	if g.c.o.Now().Before(g.at) {
		what = "the start time"
	}
	g.why = fmt.Errorf("interrupted while waiting for %s: %w", what, context.Cause(ctx))
}

// preStartPolls spaces the polls before T: every preStartPolls × PollEvery.
const preStartPolls = 10

// failing says whether a member's last call failed (a dead agent is told from a lost
// answer by the calls that follow).
func (g *group) failing(pending []*member) bool {
	for _, mb := range pending {
		if mb.polls > 0 {
			return true
		}
	}
	return false
}

// poll asks mb for its window once; true when mb failed the group.
func (g *group) poll(ctx context.Context, mb *member) bool {
	w, err := call(g.c, ctx, func(ctx context.Context) (*windows.Manifest, error) { return mb.m.Window(ctx, mb.win.ID) })
	if err != nil {
		if ctx.Err() != nil {
			return false
		}
		if mb.polls++; mb.polls >= pollFailures {
			mb.silent, mb.gone = true, true
			mb.fail(StageStart, fmt.Errorf("window %s: the agent stopped answering (%d calls in a row failed): %w", mb.win.ID, mb.polls, err))
			return true
		}
		return false
	}
	mb.polls, mb.win = 0, w
	switch {
	case w.State == windows.StateCapturing,
		w.StartedAt != nil && (w.State == windows.StateFinalizing || w.State == windows.StateReady):
		// Capturing, or already past it (a short window): it started.
		mb.acked = true
	case w.State == windows.StateFailed:
		mb.fail(StageStart, fmt.Errorf("window %s failed: %s", w.ID, orNone(w.Error)))
		return true
	case w.State == windows.StateCancelled:
		mb.fail(StageStart, fmt.Errorf("window %s was cancelled before the group started (stopped by someone else, or its agent shut down)", w.ID))
		return true
	}
	return false
}

func orNone(s string) string {
	if s == "" {
		return "no error recorded"
	}
	return s
}

// abort stops every member's window that may exist, stores the failed record where a
// window exists and returns the StartError. It runs to its end even when ctx has ended:
// an interrupted start must not leave captures behind.
func (g *group) abort(ctx context.Context, warnings []string) *StartError {
	ctx = context.WithoutCancel(ctx)
	var stopped atomic.Int64
	g.c.each(len(g.ms), func(i int) {
		if g.stop(ctx, g.ms[i]) {
			stopped.Add(1)
		}
	})
	se := &StartError{Cause: g.why, Stopped: int(stopped.Load())}
	for _, mb := range g.ms {
		if mb.err != nil {
			se.Failed = append(se.Failed, mb.err)
		}
		if mb.stopErr != nil {
			se.NotStopped = append(se.NotStopped, mb.stopErr)
		}
	}
	se.Record = g.record("failed", "")
	se.Record.Error = se.Error()
	se.Warnings = append(warnings, g.store(ctx, &se.Record)...)
	return se
}

// stop ends mb's window if it may exist and is not over; true when a stop was accepted.
// A window that may exist but cannot be stopped sets mb.stopErr.
func (g *group) stop(ctx context.Context, mb *member) bool {
	if !mb.asked || mb.win != nil && mb.win.State.Terminal() {
		return false
	}
	ref := g.id // the agent resolves it to its window of the group, even one we never saw
	if mb.win != nil && mb.win.Group != g.id {
		ref = mb.win.ID
	}
	w, err := call(g.c, ctx, func(ctx context.Context) (*windows.Manifest, error) { return mb.m.Stop(ctx, ref) })
	if err == nil {
		mb.win, mb.silent = w, false
		return true
	}
	if errors.Is(err, windows.ErrNotFound) && mb.win == nil {
		return g.unsure(mb) // its create was refused or never arrived: nothing to stop
	}
	// Refused because it is past capturing (it failed, a duration ended it): look.
	cur, gerr := call(g.c, ctx, func(ctx context.Context) (*windows.Manifest, error) { return mb.m.Window(ctx, ref) })
	switch {
	case gerr == nil && cur.State != windows.StateRequested && cur.State != windows.StateCapturing:
		mb.win, mb.silent = cur, false
		return false
	case gerr != nil && errors.Is(gerr, windows.ErrNotFound) && mb.win == nil:
		return g.unsure(mb)
	}
	mb.silent = true
	what := "its window"
	if mb.win != nil {
		what = "window " + mb.win.ID
	}
	if mb.gone {
		// Its failure already says why, at length: say only that it still does not.
		mb.stopErr = &MemberError{Agent: mb.m.Agent(), Stage: StageStop, Err: fmt.Errorf("%s: the agent still does not answer", what)}
		return false
	}
	mb.stopErr = &MemberError{Agent: mb.m.Agent(), Stage: StageStop, Err: fmt.Errorf("%s: %w", what, err)}
	return false
}

// unsure notes a member whose create got no answer and where no window of the group is
// found: the request may still land, and its window would start at T. Always false (no
// stop was made), for stop's return.
func (g *group) unsure(mb *member) bool {
	if mb.unsure {
		mb.stopErr = &MemberError{Agent: mb.m.Agent(), Stage: StageStop, Err: fmt.Errorf(
			"its create got no answer and no window of the group is there now; if the request still lands, that window starts at %s",
			g.at.UTC().Format(time.RFC3339Nano))}
	}
	return false
}
