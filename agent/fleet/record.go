package fleet

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/nsys-agent/nsys-agent/agent/windows"
)

// record is the group as the coordinator sees it now: every time on its own clock.
func (g *group) record(state, errMsg string) windows.GroupRecord {
	rec := windows.GroupRecord{ID: g.id, Coordinator: g.c.o.Coordinator, State: state, Error: errMsg,
		Members: make([]windows.GroupMember, len(g.ms))}
	if !g.at.IsZero() {
		rec.StartAt = g.at.UTC()
	}
	var starts, fires []time.Time
	for i, mb := range g.ms {
		gm := windows.GroupMember{Agent: mb.m.Agent(), Host: mb.host,
			OffsetNs: mb.off.OffsetNs, UncertaintyNs: mb.off.UncertaintyNs, RTTNs: mb.off.RTTNs}
		if w := mb.win; w != nil {
			gm.Window, gm.State = w.ID, string(w.State)
			gm.FiredAt = toCoordinator(w.FiredAt, mb.off.OffsetNs)
			gm.StartedAt = toCoordinator(w.StartedAt, mb.off.OffsetNs)
		}
		switch {
		case mb.err != nil:
			gm.Error = mb.err.Err.Error()
			if gm.State == "" {
				gm.State = string(windows.StateFailed)
			}
		case mb.stopErr != nil:
			gm.Error = mb.stopErr.Err.Error()
		case gm.State == "" && !mb.asked:
			gm.State, gm.Error = "none", "not asked: the group had failed already"
		case gm.State == "":
			gm.State = "none"
			gm.Error = "its create was interrupted; no window of the group was found there"
		}
		if gm.StartedAt != nil {
			starts = append(starts, *gm.StartedAt)
			if gm.FiredAt != nil {
				fires = append(fires, *gm.FiredAt)
			}
		}
		rec.Members[i] = gm
	}
	rec.SkewNs = spread(starts)
	if len(fires) == len(starts) {
		// Only when every member that started says when its timer fired: agents that do
		// not would make the spread look better than it is.
		rec.FireSkewNs = spread(fires)
	}
	return rec
}

// toCoordinator converts a time read on a member to the coordinator's clock.
func toCoordinator(t *time.Time, offsetNs int64) *time.Time {
	if t == nil {
		return nil
	}
	c := t.Add(-time.Duration(offsetNs)).UTC()
	return &c
}

// spread is the latest minus the earliest of ts (0 for fewer than two).
func spread(ts []time.Time) int64 {
	if len(ts) < 2 {
		return 0
	}
	lo, hi := ts[0], ts[0]
	for _, t := range ts[1:] {
		if t.Before(lo) {
			lo = t
		}
		if t.After(hi) {
			hi = t
		}
	}
	return int64(hi.Sub(lo))
}

// store puts the group's record on every member that has a window of the group and
// answers: the whole record on the first windows.RecordKeepers of them (rec.Keepers), the
// rest of it with their own entry alone on the others. A failure is a warning, not a
// group failure: pull writes group.json from what the pulled members hold. rec gets its
// MemberCount and Keepers.
func (g *group) store(ctx context.Context, rec *windows.GroupRecord) []string {
	eligible := func(mb *member) bool { return mb.win != nil && !mb.silent && mb.win.Group == g.id }
	rec.MemberCount = len(g.ms)
	rec.Keepers = nil
	// Keepers are members whose capture started, where there are enough: a member left
	// out of the group (Spec.MinMembers) has a window nobody will pull.
	keeper := make([]bool, len(g.ms))
	for _, started := range []bool{true, false} {
		for i, mb := range g.ms {
			if len(rec.Keepers) < windows.RecordKeepers && !keeper[i] && eligible(mb) && mb.acked == started {
				keeper[i] = true
				rec.Keepers = append(rec.Keepers, mb.m.Agent())
			}
		}
	}
	warn := make([]string, len(g.ms))
	g.c.each(len(g.ms), func(i int) {
		mb := g.ms[i]
		if !eligible(mb) {
			return
		}
		mine := *rec
		if !keeper[i] {
			mine = rec.ForMember(i)
		}
		w, err := call(g.c, ctx, func(ctx context.Context) (*windows.Manifest, error) { return mb.m.SetGroup(ctx, mb.win.ID, mine) })
		if err != nil {
			warn[i] = fmt.Sprintf("%s: storing the group's record in window %s failed: %v (the keepers of the whole record: %s)", mb.m.Agent(), mb.win.ID, err, strings.Join(rec.Keepers, ", "))
			return
		}
		mb.win = w
	})
	var out []string
	for _, w := range warn {
		if w != "" {
			out = append(out, w)
		}
	}
	return out
}
