// Package windows is the capture-window state machine: requested → capturing →
// finalizing → ready | failed | cancelled, one capture at a time per target, finalizing in
// the background, manifests on disk. It knows backends through the contract in
// plugins/shared and the target through a small interface; it speaks neither HTTP nor
// nsys. Its errors are domain errors (errors.go); the API maps them to HTTP codes.
//
// The JSON types in this file are the wire contract shared with the client commands and
// documented in docs/api.md.
package windows

import (
	"encoding/json"
	"maps"
	"strings"
	"time"
)

// State is a window's place in its life.
type State string

const (
	StateRequested  State = "requested"
	StateCapturing  State = "capturing"
	StateFinalizing State = "finalizing"
	StateReady      State = "ready"
	StateFailed     State = "failed"
	StateCancelled  State = "cancelled"
)

// Terminal reports whether a window in this state will not change again.
func (s State) Terminal() bool {
	return s == StateReady || s == StateFailed || s == StateCancelled
}

// Trigger says what opened or closed a window.
type Trigger string

const (
	TriggerAPI        Trigger = "api"         // a client's request
	TriggerDuration   Trigger = "duration"    // the window's own --duration ran out
	TriggerSteps      Trigger = "steps"       // the server stopped after --steps engine steps
	TriggerRecovered  Trigger = "recovered"   // adopted from a previous agent
	TriggerShutdown   Trigger = "shutdown"    // the agent is shutting down
	TriggerTargetExit Trigger = "target-exit" // the target died during the window
)

// Retention (issue 15, item 3): a window stopped because its capture outgrew its budget.
const TriggerBudget Trigger = "budget"

// TriggerFiredPrefix starts the Trigger of a window a trigger opened: "trigger:<name>".
const TriggerFiredPrefix = "trigger:"

// Fired is the Trigger of a window the trigger named name opened.
func Fired(name string) Trigger { return Trigger(TriggerFiredPrefix + name) }

// IsFired reports whether t names a trigger (agent/triggers) rather than a person or the
// agent's own timers.
func IsFired(t Trigger) bool { return strings.HasPrefix(string(t), TriggerFiredPrefix) }

// Artifact is one file a window produced, beside its manifest.
type Artifact struct {
	Name   string `json:"name"`
	Kind   string `json:"kind"` // nsys-rep, qdstrm, sqlite, trace, merged-trace, summary, html, log
	Rank   *int   `json:"rank,omitempty"`
	Bytes  int64  `json:"bytes"`
	SHA256 string `json:"sha256"`
}

// Requester says who or what asked for a state change.
type Requester struct {
	Remote  string  `json:"remote"`             // remote address, or "local" for the agent itself
	TokenID string  `json:"token_id,omitempty"` // short, non-secret fingerprint of the token used
	Trigger Trigger `json:"trigger,omitempty"`  // api, duration, steps, shutdown, ...
}

// Local is a Requester for the agent's own decisions.
func Local(t Trigger) Requester { return Requester{Remote: "local", Trigger: t} }

// Progress reports finalize progress (0..1) with a human step name.
type Progress struct {
	Step     string  `json:"step"`
	Fraction float64 `json:"fraction"`
}

// Manifest is <data-dir>/windows/<id>/manifest.json, written atomically.
type Manifest struct {
	ID          string            `json:"id"`
	Name        string            `json:"name,omitempty"`
	Backend     string            `json:"backend"`
	State       State             `json:"state"`
	Trigger     Trigger           `json:"trigger"` // what opened it: api, duration, steps, recovered, ...
	RequestedBy Requester         `json:"requested_by"`
	StoppedBy   *Requester        `json:"stopped_by,omitempty"`
	Session     string            `json:"session,omitempty"`
	Duration    string            `json:"duration,omitempty"` // auto-stop after, as requested
	Steps       int               `json:"steps,omitempty"`
	Export      bool              `json:"export,omitempty"`  // also export the report to SQLite
	Options     map[string]string `json:"options,omitempty"` // backend-specific, as requested
	CreatedAt   time.Time         `json:"created_at"`
	StartAt     *time.Time        `json:"start_at,omitempty"` // a scheduled window's start, as requested
	StartedAt   *time.Time        `json:"started_at,omitempty"`
	StoppedAt   *time.Time        `json:"stopped_at,omitempty"`
	FinishedAt  *time.Time        `json:"finished_at,omitempty"`
	Progress    *Progress         `json:"progress,omitempty"`
	Error       string            `json:"error,omitempty"`
	Warnings    []string          `json:"warnings,omitempty"`
	Artifacts   []Artifact        `json:"artifacts"`
	Summary     json.RawMessage   `json:"summary,omitempty"` // the backend's compact answer to "where did the GPU time go"
	// Cost is what the window cost the server (throughput before, during and after it),
	// set by the agent's cost watcher once the "after" span has passed.
	Cost json.RawMessage `json:"cost,omitempty"`
	// Verdict says whether the capture is complete and readable (ok, warning, broken,
	// with one line per finding and its fix), set by the agent's checks once it is ready.
	Verdict json.RawMessage   `json:"verdict,omitempty"`
	Labels  map[string]string `json:"labels,omitempty"`
	// Retention (issue 15, item 3). Pinned: never removed by a budget or `rm`
	// (`nsys-agent pin`); MaxBytes: the capture is stopped early once it writes more.
	Pinned   bool  `json:"pinned,omitempty"`
	MaxBytes int64 `json:"max_bytes,omitempty"`
	// Group windows (issue 14, group.go). Group is the id of the group this window
	// belongs to; FiredAt when a scheduled window's timer fired; Clock the agent's clocks
	// read as the capture was confirmed; GroupInfo the coordinator's record of the group.
	Group     string        `json:"group,omitempty"`
	FiredAt   *time.Time    `json:"fired_at,omitempty"`
	Clock     *ClockReading `json:"clock,omitempty"`
	GroupInfo *GroupRecord  `json:"group_info,omitempty"`
}

func (w *Manifest) clone() Manifest {
	c := *w
	c.Artifacts = append([]Artifact{}, w.Artifacts...)
	c.Warnings = append([]string(nil), w.Warnings...)
	c.Summary = append(json.RawMessage(nil), w.Summary...)
	c.Cost = append(json.RawMessage(nil), w.Cost...)
	c.Verdict = append(json.RawMessage(nil), w.Verdict...)
	c.Options = maps.Clone(w.Options)
	c.Labels = maps.Clone(w.Labels)
	if w.Progress != nil {
		p := *w.Progress
		c.Progress = &p
	}
	if w.StoppedBy != nil {
		s := *w.StoppedBy
		c.StoppedBy = &s
	}
	if w.GroupInfo != nil {
		g := w.GroupInfo.Clone()
		c.GroupInfo = &g
	}
	return c
}

// CreateRequest is the body of POST /v1/windows.
type CreateRequest struct {
	Backend  string `json:"backend,omitempty"`  // default "nsys"
	Duration string `json:"duration,omitempty"` // Go duration ("5s"); auto-stop
	Steps    int    `json:"steps,omitempty"`    // server-driven backends: stop after N steps
	Name     string `json:"name,omitempty"`     // label; [A-Za-z0-9._-], no "..", at most 64
	StartAt  string `json:"start_at,omitempty"` // RFC 3339 time to start at (optional)
	Export   bool   `json:"export,omitempty"`   // also export the report to SQLite
	// Options are backend-specific settings (`start --option NAME=VALUE`); the backend's
	// Info lists the names it accepts, every other name is refused.
	Options map[string]string `json:"options,omitempty"`
	// MaxBytes stops the capture early once it has written more than this (0: the agent's
	// --max-window-bytes).
	MaxBytes int64 `json:"max_bytes,omitempty"`
	// Group makes this window a member of a group window (issue 14): a window reference
	// equal to it finds this window, and an agent holds at most one window of a group.
	Group string `json:"group,omitempty"`
	// Labels go into the manifest as they are. Set by the agent itself (a trigger records
	// its name and the value that fired it), never from a request body.
	Labels map[string]string `json:"-"`
}

// Event is one change the state machine announces (GET /v1/events; event name = Type).
type Event struct {
	Type   string    `json:"type"` // window, target, removed
	Window *Manifest `json:"window,omitempty"`
	Target string    `json:"target,omitempty"`
	Time   time.Time `json:"time"`
}
