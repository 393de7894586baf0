// Package agent is the nsys-agent daemon: Run launches (or adopts) the target under nsys,
// wires the window state machine (agent/windows) to its backends (agent/backends,
// plugins) and serves the HTTP API. The JSON types here and in agent/windows are the wire
// contract shared with the client commands (cmd/nsys-agent) and documented in docs/api.md.
package agent

import (
	"github.com/nsys-agent/nsys-agent/agent/windows"
	"github.com/nsys-agent/nsys-agent/plugins/shared"
)

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
	Agent   string            `json:"agent"` // version
	Target  TargetStatus      `json:"target"`
	Session SessionStatus     `json:"session"`
	Active  *windows.Manifest `json:"active_window,omitempty"`
	Windows int               `json:"windows"`
}

// BackendStatus is one entry of GET /v1/backends: a backend the agent knows, and why a
// window cannot use it when it cannot.
type BackendStatus struct {
	shared.Info
	Builtin bool `json:"builtin"`
	// Source is where the backend comes from: SourceBuiltin, or a plugin's file.
	Source string `json:"source,omitempty"`
	// PID is a plugin's running process (0: not running now; relaunched for its next
	// window).
	PID int `json:"pid,omitempty"`
	// Skipped: a plugin file the agent did not load; Unavailable says why.
	Skipped     bool   `json:"skipped,omitempty"`
	Default     bool   `json:"default,omitempty"`
	Unavailable string `json:"unavailable,omitempty"`
}

// SourceBuiltin is the Source of a backend built into the agent.
const SourceBuiltin = "built-in"

// Health is GET /v1/health.
type Health struct {
	OK      bool   `json:"ok"`
	Version string `json:"version,omitempty"`
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
	CodeCancelled    = "cancelled"
	CodeNoSpace      = "insufficient_storage"
	CodeInternal     = "internal"
)

// CodePinned: a pinned window cannot be removed (retention, issue 15, item 3).
const CodePinned = "pinned"
