// Package agent is the nsys-agent daemon: it supervises a target launched under nsys,
// runs capture windows through backends, keeps their manifests on disk and serves the
// HTTP API. The JSON types in this file are the wire contract shared with the client
// commands (cmd/nsys-agent) and documented in docs/api.md.
package agent

import "time"

// WindowState is a window's place in its life: requested → capturing → finalizing →
// ready | failed | cancelled.
type WindowState string

const (
	StateRequested  WindowState = "requested"
	StateCapturing  WindowState = "capturing"
	StateFinalizing WindowState = "finalizing"
	StateReady      WindowState = "ready"
	StateFailed     WindowState = "failed"
	StateCancelled  WindowState = "cancelled"
)

// Terminal reports whether a window in this state will not change again.
func (s WindowState) Terminal() bool {
	return s == StateReady || s == StateFailed || s == StateCancelled
}

// Artifact is one file a window produced, beside its manifest.
type Artifact struct {
	Name   string `json:"name"`
	Kind   string `json:"kind"` // nsys-rep, qdstrm, sqlite, trace, merged-trace, summary, html, log
	Rank   *int   `json:"rank,omitempty"`
	Bytes  int64  `json:"bytes"`
	SHA256 string `json:"sha256"`
}

// Requester says who asked for a state change.
type Requester struct {
	Remote  string `json:"remote"`             // remote address, or "local" for in-process triggers
	TokenID string `json:"token_id,omitempty"` // short, non-secret fingerprint of the token used
}

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
	State       WindowState       `json:"state"`
	Trigger     string            `json:"trigger"` // api, duration, steps, log:<regex>, ...
	RequestedBy Requester         `json:"requested_by"`
	StoppedBy   *Requester        `json:"stopped_by,omitempty"`
	Session     string            `json:"session,omitempty"`
	Duration    string            `json:"duration,omitempty"` // auto-stop after, as requested
	Steps       int               `json:"steps,omitempty"`
	Export      bool              `json:"export,omitempty"` // also export the report to SQLite
	CreatedAt   time.Time         `json:"created_at"`
	StartedAt   *time.Time        `json:"started_at,omitempty"`
	StoppedAt   *time.Time        `json:"stopped_at,omitempty"`
	FinishedAt  *time.Time        `json:"finished_at,omitempty"`
	Progress    *Progress         `json:"progress,omitempty"`
	Error       string            `json:"error,omitempty"`
	Warnings    []string          `json:"warnings,omitempty"`
	Artifacts   []Artifact        `json:"artifacts"`
	Summary     any               `json:"summary,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
}

// CreateWindowRequest is the body of POST /v1/windows.
type CreateWindowRequest struct {
	Backend  string `json:"backend,omitempty"`  // default "nsys"
	Duration string `json:"duration,omitempty"` // Go duration ("5s"); auto-stop
	Steps    int    `json:"steps,omitempty"`    // server-driven backends: stop after N steps
	Name     string `json:"name,omitempty"`     // label; [A-Za-z0-9._-], no "..", at most 64
	StartAt  string `json:"start_at,omitempty"` // RFC 3339 time to start at (optional)
	Export   bool   `json:"export,omitempty"`   // also export the report to SQLite
}

// TargetStatus describes the supervised server.
type TargetStatus struct {
	State    string   `json:"state"` // starting, running, exited
	Command  []string `json:"command"`
	PID      int      `json:"pid"`                 // the nsys front-end
	Ranks    []int    `json:"ranks,omitempty"`     // descendant pids (target and its workers)
	ExitCode *int     `json:"exit_code,omitempty"` // once exited
	LogTail  []string `json:"log_tail,omitempty"`
}

// SessionStatus describes the nsys session the target runs under.
type SessionStatus struct {
	Name    string `json:"name"`
	Mode    string `json:"mode"`
	State   string `json:"state,omitempty"`
	Nsys    string `json:"nsys"`
	Version string `json:"version"`
}

// Status is GET /v1/status.
type Status struct {
	Agent   string        `json:"agent"` // version
	Target  TargetStatus  `json:"target"`
	Session SessionStatus `json:"session"`
	Active  *Manifest     `json:"active_window,omitempty"`
	Windows int           `json:"windows"`
}

// Event is one server-sent event on GET /v1/events (event name = Type).
type Event struct {
	Type   string    `json:"type"` // window, target
	Window *Manifest `json:"window,omitempty"`
	Target string    `json:"target,omitempty"`
	Time   time.Time `json:"time"`
}

// ErrorBody is every error response: {"error":{"code":"window_active","message":"..."}}.
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail carries a stable code for scripts and a message for people.
type ErrorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Error codes.
const (
	CodeBadRequest   = "bad_request"
	CodeUnauthorized = "unauthorized"
	CodeForbidden    = "forbidden"
	CodeNotFound     = "not_found"
	CodeWindowActive = "window_active"
	CodeNoWindow     = "no_active_window"
	CodeTargetDown   = "target_down"
	CodeInternal     = "internal"
)
