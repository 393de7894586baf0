package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/nsys-agent/nsys-agent/agent/windows"
)

// isGroupRef says whether what the user typed names a group window (g-...) rather than
// one window.
func isGroupRef(word string) bool { return windows.ValidGroupID(word) }

// groupWindows asks every agent for its window of group id (an agent resolves a group id
// to its own window of the group) and returns the answers in --agent order with the
// newest group record they hold. The agents are the ones given: a record's member list
// comes from an agent, and following it would send this client's token to whatever
// addresses an agent wrote there. Members the record lists but --agent lacks are named
// in a note, with the command that includes them.
func groupWindows(ctx context.Context, s *clientSetup, id, command string) ([]outcome, *windows.GroupRecord) {
	outs := boundedFanOut(ctx, s, groupFanOut, func(ctx context.Context, ac *apiClient) (any, error) {
		m, err := ac.window(ctx, id)
		if err != nil {
			return nil, err
		}
		return m, nil
	})
	rec := newestRecord(outs)
	if rec != nil {
		s.noteMissingMembers(rec, command)
	}
	return outs, rec
}

// noteMissingMembers names the members of rec that this command was not given; for a
// record that lists only the given members' own entries (none of them keeps the whole
// record), it names the keepers instead.
func (s *clientSetup) noteMissingMembers(rec *windows.GroupRecord, command string) {
	given := map[string]bool{}
	var all []string
	for _, ac := range s.agents {
		given[ac.base] = true
		all = append(all, ac.base)
	}
	if !rec.Whole() {
		var keepers []string
		for _, k := range rec.Keepers {
			if base, err := normalizeAgentURL(k); err == nil && !given[base] {
				keepers = append(keepers, base)
			}
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		if len(keepers) == 0 {
			fmt.Fprintf(s.stderr, "nsys-agent: group %s has %d members; the agents given hold only their own entries of its record, and no agent named as keeping the whole record answered\n", rec.ID, rec.MemberCount)
			return
		}
		fmt.Fprintf(s.stderr, "nsys-agent: group %s has %d members; the %d given hold only their own entries of its record, whose whole (every member and its clock offset) %s keep: to see every member, run %s\n",
			rec.ID, rec.MemberCount, len(rec.Members), strings.Join(keepers, ", "), s.commandOn(append(all, keepers[0]), command, rec.ID))
		return
	}
	var missing []string
	for _, m := range rec.Members {
		base, err := normalizeAgentURL(m.Agent)
		if err != nil || given[base] {
			continue
		}
		missing = append(missing, base)
		all = append(all, base)
	}
	if len(missing) == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	fmt.Fprintf(s.stderr, "nsys-agent: group %s has %d more members than --agent gives: %s; to include them, run %s\n",
		rec.ID, len(missing), strings.Join(missing, ", "), s.commandOn(all, command, rec.ID))
}

// newestRecord is the group's record as the members hold it. A keeper holds it whole;
// if whole copies disagree (one was stored again, or one store failed), the newest wins:
// the one whose latest time (its start, a member's timer or capture start) is latest.
// Without a keeper among them, it is the newest partial copy listing the own entries of
// every member that answered (each holds its own alone), in their order. nil when no
// member holds one.
func newestRecord(outs []outcome) *windows.GroupRecord {
	var whole, part *windows.GroupRecord
	var wholeAt, partAt time.Time
	var own []windows.GroupMember
	seen := map[string]bool{}
	for _, o := range outs {
		m := manifestOf(o.value)
		if m == nil || m.GroupInfo == nil {
			continue
		}
		r, at := m.GroupInfo, recordTime(m.GroupInfo)
		if r.Whole() {
			if whole == nil || at.After(wholeAt) {
				whole, wholeAt = r, at
			}
			continue
		}
		if part == nil || at.After(partAt) {
			part, partAt = r, at
		}
		for _, gm := range r.Members {
			if !seen[gm.Agent] {
				seen[gm.Agent] = true
				own = append(own, gm)
			}
		}
	}
	best := whole
	if best == nil {
		best = part
	}
	if best == nil {
		return nil
	}
	cp := best.Clone()
	if whole == nil {
		cp.Members = own
	}
	return &cp
}

func recordTime(r *windows.GroupRecord) time.Time {
	at := r.StartAt
	for _, m := range r.Members {
		for _, t := range []*time.Time{m.FiredAt, m.StartedAt} {
			if t != nil && t.After(at) {
				at = *t
			}
		}
	}
	return at
}

// manifestOf is the window an outcome carries: a window command's manifest, or the one a
// pull read (nil for anything else).
func manifestOf(v any) *windows.Manifest {
	switch v := v.(type) {
	case *windows.Manifest:
		return v
	case *pullResult:
		return v.manifest
	}
	return nil
}

// leftOut is a member a `start --min-members` went on without: its window never
// captured, so there is nothing of it to stop, wait for or pull, and its absence is no
// failure of the command that asks.
type leftOut struct {
	Reason string `json:"left_out"` // its error in the group's record
}

// skipLeftOut turns the failures of the members the group's newest record marks as left
// out (an error and no capture start, in a group that started) into leftOut outcomes. A
// left-out member that answers without an error (one whose window, against all odds,
// captures) is stopped or pulled like any other.
func skipLeftOut(outs []outcome) {
	rec := newestRecord(outs)
	if rec == nil || rec.State != "capturing" {
		return
	}
	why := map[string]string{}
	for _, m := range rec.Members {
		if base, err := normalizeAgentURL(m.Agent); err == nil && m.Error != "" && m.StartedAt == nil {
			why[base] = m.Error
		}
	}
	for i := range outs {
		if r, ok := why[outs[i].agent]; ok && outs[i].err != nil {
			outs[i] = outcome{agent: outs[i].agent, value: leftOut{Reason: r}}
		}
	}
}
