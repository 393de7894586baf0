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

// noteMissingMembers names the members of rec that this command was not given.
func (s *clientSetup) noteMissingMembers(rec *windows.GroupRecord, command string) {
	given := map[string]bool{}
	var all []string
	for _, ac := range s.agents {
		given[ac.base] = true
		all = append(all, ac.base)
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

// newestRecord is the group record the members hold; if they disagree (one was stored
// again, or one store failed), the newest wins: the one whose latest time (its start,
// a member's timer or capture start) is latest. nil when no member holds one.
func newestRecord(outs []outcome) *windows.GroupRecord {
	var best *windows.GroupRecord
	var bestAt time.Time
	for _, o := range outs {
		m, ok := o.value.(*windows.Manifest)
		if !ok || m.GroupInfo == nil {
			continue
		}
		if at := recordTime(m.GroupInfo); best == nil || at.After(bestAt) {
			best, bestAt = m.GroupInfo, at
		}
	}
	if best == nil {
		return nil
	}
	cp := *best
	cp.Members = append([]windows.GroupMember(nil), best.Members...)
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
