package pluginhost

import (
	"context"
	"fmt"
	"time"

	"github.com/nsys-agent/nsys-agent/plugins/shared"
)

// ExitedError is a call on a plugin whose process died (or stopped answering and was
// killed). The call's window fails with it; the agent and the other backends carry on,
// and the plugin is relaunched for its next window.
type ExitedError struct {
	Backend string
	PID     int
	Call    string // the backend method that failed: Start, Stop, ...
	Status  string // how it ended: "exit status 3", "signal: killed", ...
	Output  string // its last stderr lines, as tail.String gives them
	Err     error  // what the call returned
}

func (e *ExitedError) Error() string {
	return fmt.Sprintf("backend plugin %s (pid %d) exited: %s (during %s; its next window relaunches it)%s", e.Backend, e.PID, e.Status, e.Call, e.Output)
}

func (e *ExitedError) Unwrap() []error { return []error{shared.ErrPluginExited, e.Err} }

// TimeoutError is a call on a plugin that did not return before its deadline (the
// window's stop-and-finalize budget, or CallTimeout for the short calls). The plugin is
// killed, since a process stuck in one call is in no known state, and relaunched for
// its next window.
type TimeoutError struct {
	Backend string
	PID     int
	Call    string
	After   time.Duration
}

func (e *TimeoutError) Error() string {
	return fmt.Sprintf("backend plugin %s (pid %d) did not return from %s within %s; the agent killed it (its next window relaunches it)", e.Backend, e.PID, e.Call, e.After.Round(time.Millisecond))
}

func (e *TimeoutError) Unwrap() []error {
	return []error{shared.ErrPluginExited, context.DeadlineExceeded}
}

// ErrClosed is a call on a plugin after Host.Close: the agent is shutting down.
var ErrClosed = shared.Wrap(shared.ErrPluginExited, fmt.Errorf("the backend plugin was shut down with the agent"))
