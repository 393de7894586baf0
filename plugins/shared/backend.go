// Package shared is the backend contract: what a capture backend implements, whether it
// is built into the agent (nsys, and cuda-profiler later) or a plugin binary served over
// hashicorp/go-plugin gRPC (torch, layerwise-nvtx). Its types are its own — no HTTP
// request types, funcs or loggers — so every one of them can cross a process boundary.
// It will be the only importer of the generated proto code.
package shared

import (
	"context"
	"encoding/json"
	"slices"
	"time"
)

// APIVersion is the version of this contract. It changes only on a breaking change; a
// plugin built for another version is refused with both numbers named.
const APIVersion = 1

// Capability is something a backend can do beyond Start and Stop.
type Capability string

const (
	// CapSteps: the backend can bound a window by engine steps (Window.Steps).
	CapSteps Capability = "steps"
	// CapExport: the backend can export its report to SQLite (Window.Export).
	CapExport Capability = "export"
	// CapSummary: the backend answers "where did the GPU time go" in Result.Summary.
	CapSummary Capability = "summary"
	// CapNsysSession: the backend drives the agent's nsys session, so at most one window
	// of any such backend captures at a time.
	CapNsysSession Capability = "nsys-session"
)

// Info describes a backend: what `nsys-agent backends` prints and what a window may ask.
type Info struct {
	Name         string       `json:"name"`
	Version      string       `json:"version"`
	APIVersion   int          `json:"api_version"`
	Capabilities []Capability `json:"capabilities,omitempty"`
	Description  string       `json:"description,omitempty"`
	// Options are the window options the backend accepts (Window.Options); the agent
	// refuses a window that names any other, listing these.
	Options []Option `json:"options,omitempty"`
	// CapturesWith names a built-in backend that captures this backend's windows: the
	// agent runs that backend's Start, Stop, Wait and Finalize, then this backend's
	// Finalize over the files they left. Such a backend post-processes (layerwise-nvtx
	// turns a cuda-profiler report into a per-layer table) and is never asked to Start or
	// Stop, so the nsys session stays driven by the agent alone. "" = it captures itself.
	CapturesWith string `json:"captures_with,omitempty"`
	// Interfaces names the optional interfaces the backend implements. A plugin's client
	// value implements all of them (one it lacks answers as the contract says: no-op,
	// unchanged launch, or ErrUnsupported for Wait), so the host reads this, filled by
	// the plugin's side from the backend's Go type, to know which ones are real.
	// InterfacesOf says the same of an in-process backend.
	Interfaces []Interface `json:"interfaces,omitempty"`
}

// Option is one window option a backend accepts: `start --option NAME=VALUE`.
type Option struct {
	Name  string `json:"name"`
	Usage string `json:"usage,omitempty"`
}

// Has reports whether the backend declared capability c.
func (i Info) Has(c Capability) bool {
	return slices.Contains(i.Capabilities, c)
}

// Target is what a backend learns of the server at Configure: where its API answers, the
// nsys session it runs under and its processes.
type Target struct {
	ServerURL string `json:"server_url,omitempty"`
	Session   string `json:"session,omitempty"`
	Mode      string `json:"mode,omitempty"` // how the session was armed: start-later, launch, cuda-profiler
	Nsys      string `json:"nsys,omitempty"` // the nsys binary every command for the session must use
	PIDs      []int  `json:"pids,omitempty"`
	// Trace is what the session's nsys traces (cuda, nvtx, osrt, ...; nil = unknown). A
	// torch profiler in a server whose CUDA nsys traces records no GPU work: CUPTI takes
	// one subscriber (measured on the H200, docs/nsys-facts.md).
	Trace []string `json:"trace,omitempty"`
}

// Window is one capture as a backend sees it. Dir is absolute and the backend writes only
// there; everything in it becomes an artifact of the window.
type Window struct {
	ID       string            `json:"id"`
	Dir      string            `json:"dir"`
	Name     string            `json:"name,omitempty"`
	Duration time.Duration     `json:"duration,omitempty"`
	Steps    int               `json:"steps,omitempty"`
	Export   bool              `json:"export,omitempty"`
	Options  map[string]string `json:"options,omitempty"`
}

// Result is what a Stop, Finalize or Wait produced.
type Result struct {
	// Artifacts names the files the backend wrote in Window.Dir (the agent lists every
	// file there anyway; this says which ones the backend vouches for).
	Artifacts []string `json:"artifacts,omitempty"`
	Warnings  []string `json:"warnings,omitempty"`
	// Summary is the compact per-rank answer to "where did the GPU time go", as JSON; the
	// agent copies it into the window's manifest.
	Summary json.RawMessage `json:"summary,omitempty"`
}

// Merge appends r2 to r (a Stop's result followed by a Finalize's).
func (r Result) Merge(r2 Result) Result {
	r.Artifacts = append(r.Artifacts, r2.Artifacts...)
	r.Warnings = append(r.Warnings, r2.Warnings...)
	if len(r2.Summary) > 0 {
		r.Summary = r2.Summary
	}
	return r
}

// Backend captures windows one way. One failing backend fails its window with a clear
// error; it never takes the agent down.
type Backend interface {
	Info(ctx context.Context) (Info, error)
	// Start begins the capture and returns once capturing is confirmed.
	Start(ctx context.Context, w Window) error
	// Stop ends the capture and leaves the window's files in w.Dir. It may take long
	// (report generation, import) and reports its steps on p. On error, whatever was
	// produced stays in w.Dir and is kept as partial artifacts.
	Stop(ctx context.Context, w Window, p Progress) (Result, error)
}

// Configurer is an optional capability: the backend is told about the target once,
// before its first window.
type Configurer interface {
	Configure(ctx context.Context, t Target) error
}

// Finalizer is an optional capability: work on a stopped window's files that no longer
// touches the target (an export, an analysis). It runs after Stop, while the next window
// may already be capturing.
type Finalizer interface {
	Finalize(ctx context.Context, w Window, p Progress) (Result, error)
}

// Launch is the server's launch as the agent is about to make it: the command, its extra
// environment and how nsys arms the session.
type Launch struct {
	Argv []string `json:"argv"`
	Env  []string `json:"env,omitempty"` // KEY=VALUE added to the server's environment
	Arm  string   `json:"arm,omitempty"` // start-later, launch or cuda-profiler; "" = the agent's default
	// Changes says, one line each, what a Launcher changed and why, for the user.
	Changes []string `json:"changes,omitempty"`
}

// Launcher is an optional capability: the backend adjusts the server's launch before the
// agent makes it (layerwise-nvtx adds SGLang's NVTX flags and arms for cudaProfilerApi).
// It runs only when the user chose the backend at launch (`run --backend NAME`) and
// returns the launch to make, with Changes saying what it changed; an error stops the
// launch before any server starts.
type Launcher interface {
	PrepareLaunch(ctx context.Context, l Launch) (Launch, error)
}

// Salvager is an optional capability: when the target dies during a capture, the agent
// asks the backend for what the capture left (nsys: the raw stream its front-end wrote as
// the target died, imported so it can be opened). The window fails either way; this only
// decides what it keeps.
type Salvager interface {
	Salvage(ctx context.Context, w Window, p Progress) (Result, error)
}

// Waiter is an optional capability of server-driven backends: with Window.Steps the
// server stops by itself, and Wait returns once the window's files are complete.
type Waiter interface {
	Wait(ctx context.Context, w Window) (Result, error)
}
