package windows

import (
	"context"
	"fmt"
	"regexp"
	"time"
)

// Group windows (issue 14): the same window opened on several agents at one instant, by a
// client that coordinates them (agent/fleet). An agent knows of its group only what the
// coordinator tells it: the group id in the create request, and the group's record once
// every member acknowledged its capture (or one failed).

// groupIDPattern is what a group id may be: it is used as a window reference in URLs and
// as a folder name by pull, so it has the window name's alphabet and must not look like a
// window id (those start with "w" and a digit) or a keyword ("latest", "active").
var groupIDPattern = regexp.MustCompile(`^g-[A-Za-z0-9._-]{1,62}$`)

// ValidGroupID says whether id can name a group.
func ValidGroupID(id string) bool { return groupIDPattern.MatchString(id) && !containsDotDot(id) }

func containsDotDot(s string) bool {
	for i := 0; i+1 < len(s); i++ {
		if s[i] == '.' && s[i+1] == '.' {
			return true
		}
	}
	return false
}

// ClockReading is an agent's clocks read at one instant: its wall clock (the clock of
// every time in its manifests, and of a request's start_at) and CLOCK_MONOTONIC. GET
// /v1/clock answers one; a window records one when its capture starts.
type ClockReading struct {
	WallNs int64 `json:"wall_ns"` // Unix nanoseconds
	MonoNs int64 `json:"mono_ns"` // CLOCK_MONOTONIC nanoseconds
}

// GroupRecord is the group as its coordinator saw it: stored in every member's manifest
// (PUT /v1/windows/{id}/group) and written as group.json by `pull GROUP`.
type GroupRecord struct {
	ID          string        `json:"id"`
	Coordinator string        `json:"coordinator,omitempty"` // the client's host name
	StartAt     time.Time     `json:"start_at"`              // on the coordinator's clock
	State       string        `json:"state"`                 // capturing, failed
	Error       string        `json:"error,omitempty"`       // why the group failed: which agent and why
	Members     []GroupMember `json:"members"`
	// SkewNs is the spread (latest minus earliest) of the members' capture starts on the
	// coordinator's clock; FireSkewNs the spread of the moments their timers fired, the
	// part the clock estimates decide (the rest is each backend's start latency).
	SkewNs     int64 `json:"skew_ns"`
	FireSkewNs int64 `json:"fire_skew_ns"`
	// MemberCount is how many members the group has (0 in records of before it was
	// kept: then Members is every member). Only the record's keepers hold every member;
	// each other member holds the rest of the record with its own entry alone (see
	// ForMember). Keepers are the agents (URLs as in Members) that hold the whole record.
	MemberCount int      `json:"member_count,omitempty"`
	Keepers     []string `json:"keepers,omitempty"`
}

// RecordKeepers is how many members hold a group's whole record. The whole record on
// every member is N² bytes in all: at 1 000 hosts, ~300 kB stored N times (~300 MB sent
// by the coordinator) and a 300 kB manifest in every listing of each agent's windows.
// Three copies survive two members lost; the others each keep their own clock offset,
// which is what pulling and aligning their files needs.
const RecordKeepers = 3

// Whole says whether the record lists every member of the group.
func (r *GroupRecord) Whole() bool { return r.MemberCount == 0 || len(r.Members) >= r.MemberCount }

// ForMember is what member i (not a keeper) stores: the record with Members holding its
// own entry alone.
func (r *GroupRecord) ForMember(i int) GroupRecord {
	c := r.Clone()
	c.Members = []GroupMember{r.Members[i]}
	return c
}

// Clone is a copy of the record that shares no slice with it (a member's times are
// pointers to values never changed in place).
func (r *GroupRecord) Clone() GroupRecord {
	c := *r
	c.Members = append([]GroupMember(nil), r.Members...)
	c.Keepers = append([]string(nil), r.Keepers...)
	return c
}

// GroupMember is one agent of a group.
type GroupMember struct {
	Agent  string `json:"agent"`            // the URL the coordinator used
	Host   string `json:"host"`             // its folder name in a pulled group (gpu-1_7477)
	Window string `json:"window,omitempty"` // the window id on that agent
	// OffsetNs is the agent's wall clock minus the coordinator's, estimated from request
	// round trips (NTP-style: the probe with the shortest round trip wins); the true
	// offset lies within ±UncertaintyNs of it.
	OffsetNs      int64      `json:"offset_ns"`
	UncertaintyNs int64      `json:"uncertainty_ns"`
	RTTNs         int64      `json:"rtt_ns"`
	FiredAt       *time.Time `json:"fired_at,omitempty"`   // its timer fired, on the coordinator's clock
	StartedAt     *time.Time `json:"started_at,omitempty"` // its capture was confirmed, on the coordinator's clock
	State         string     `json:"state"`                // the window's state when the record was made
	Error         string     `json:"error,omitempty"`
}

// SetGroup stores the coordinator's record of the group window id belongs to (a window
// reference, as Window takes: a group id names this agent's window of it), saves and
// announces it. A record of another group, or for a window of no group, is refused.
func (m *Manager) SetGroup(ctx context.Context, id string, rec GroupRecord) (*Manifest, error) {
	if len(rec.Members) > MaxGroupMembers || len(rec.Keepers) > MaxGroupMembers {
		return nil, errorf(ErrInvalid, "members: %d, keepers: %d, at most %d each", len(rec.Members), len(rec.Keepers), MaxGroupMembers)
	}
	m.mu.Lock()
	w, err := m.resolveLocked(id)
	switch {
	case err != nil:
		m.mu.Unlock()
		return nil, err
	case w.Group == "":
		m.mu.Unlock()
		return nil, errorf(ErrInvalid, "id: window %s belongs to no group; only a window created with a group takes a group record", w.ID)
	case w.Group != rec.ID:
		m.mu.Unlock()
		return nil, errorf(ErrInvalid, "id: window %s is a member of group %s, not of group %q", w.ID, w.Group, rec.ID)
	}
	r := rec.Clone()
	w.GroupInfo = &r
	wid := w.ID
	m.mu.Unlock()
	if err := m.trySave(wid); err != nil {
		return nil, fmt.Errorf("window %s: saving its group record: %w; free some space in %s and send it again", wid, err, m.o.Store.Root)
	}
	if c := m.copyOf(wid); c != nil {
		return c, nil
	}
	// A DELETE came between the set and the save: never answer 200 with no window.
	return nil, errorf(ErrNotFound, "window %s was removed while its group record was stored", wid)
}

// MaxGroupMembers bounds a group record a client may store in a manifest: twice the
// 1 000 hosts docs/fleet.md plans for; such a record (about 300 bytes a member) stays
// below the API's 1 MiB request body limit.
const MaxGroupMembers = 2048
