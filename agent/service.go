package agent

import (
	"context"
	"time"

	"github.com/nsys-agent/nsys-agent/agent/triggers"
	"github.com/nsys-agent/nsys-agent/agent/windows"
)

// Service is what the HTTP API serves. The API only translates HTTP to these calls and
// errors to status codes (errors.go); agent/agenttest has a fake for API and client tests.
type Service interface {
	Status(ctx context.Context) Status
	Backends(ctx context.Context) []BackendStatus
	// CreateWindow opens a window; StopWindow stops the one with this id ("" = the active
	// one) and returns at once while finalizing goes on in the background.
	CreateWindow(ctx context.Context, req windows.CreateRequest, who windows.Requester) (*windows.Manifest, error)
	StopWindow(ctx context.Context, id string, who windows.Requester) (*windows.Manifest, error)
	Windows(ctx context.Context) []windows.Manifest
	Window(ctx context.Context, id string) (*windows.Manifest, error)
	// ArtifactPath resolves an artifact of a window to a file inside the data dir.
	ArtifactPath(ctx context.Context, id, name string) (string, *windows.Artifact, error)
	// Subscribe streams events until cancel is called.
	Subscribe() (events <-chan windows.Event, cancel func())

	// Retention (issue 15, item 3): DeleteWindow removes a finished, unpinned window and
	// its folder; PinWindow pins (true) or unpins a window. Pinned windows are never
	// removed.
	DeleteWindow(ctx context.Context, id string, who windows.Requester) (*windows.Manifest, error)
	PinWindow(ctx context.Context, id string, pinned bool, who windows.Requester) (*windows.Manifest, error)
	// Triggers (issue 15, triggers part): windows that open by themselves. Triggers lists
	// them with their fires and why they did not fire; AddTrigger arms one more.
	Triggers(ctx context.Context) []triggers.Status
	AddTrigger(ctx context.Context, spec triggers.Spec, who windows.Requester) (*triggers.Status, error)
	// Group windows (issue 14): Clock reads the agent's clocks (a coordinator estimates
	// its offset from the round trip); SetGroup stores the coordinator's record of the
	// group a window belongs to.
	Clock(ctx context.Context) windows.ClockReading
	SetGroup(ctx context.Context, id string, rec windows.GroupRecord) (*windows.Manifest, error)
}

// daemon is the Service of a running agent: the window state machine, plus what only the
// agent knows (the target, the session, where each backend comes from). Its Clock is the
// Manager's: GET /v1/clock answers the clock the manifests are written on.
type daemon struct {
	*windows.Manager
	version      string
	target       *Supervisor // nil: no target
	session      SessionStatus
	sessionState func(ctx context.Context) (string, error) // nil: not asked
	origins      Origins
	triggers     *triggers.Set // issue 15, triggers part (nil: none)
}

func (d *daemon) Status(ctx context.Context) Status {
	st := Status{Agent: d.version, Session: d.session, Windows: d.Count(), Active: d.Active()}
	if t := d.target; t != nil {
		st.Target = TargetStatus{State: "running", Command: t.Command, PID: t.PID(), LogTail: t.Tail(10)}
		if exited, code := t.Exited(); exited {
			st.Target.State = "exited"
			st.Target.ExitCode = &code
		} else {
			st.Target.Ranks = t.Ranks()
		}
	} else {
		st.Target.State = "none"
	}
	if d.sessionState != nil && st.Target.State == "running" {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if s, err := d.sessionState(cctx); err == nil {
			st.Session.State = s
		} else {
			st.Session.State = "unknown: " + err.Error()
		}
	}
	return st
}

func (d *daemon) Backends(ctx context.Context) []BackendStatus {
	return BackendStatuses(d.Manager.Backends(), d.origins)
}
