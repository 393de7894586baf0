package fleet

import (
	"fmt"
	"strings"

	"github.com/nsys-agent/nsys-agent/agent/windows"
)

// Stage says where a member failed a group start.
type Stage string

const (
	StageClock  Stage = "clock"  // reading its clock, before anything was created
	StageCreate Stage = "create" // the agent refused or did not answer the scheduled window
	StageStart  Stage = "start"  // its window did not confirm its capture
	StageStop   Stage = "stop"   // cleaning up: its window could not be stopped
)

// MemberError is what went wrong with one member.
type MemberError struct {
	Agent string
	Stage Stage
	Err   error
}

func (e *MemberError) Error() string {
	what := map[Stage]string{
		StageClock:  "reading its clock failed",
		StageCreate: "scheduling its window failed",
		StageStart:  "its capture did not start",
		StageStop:   "its window could not be stopped",
	}[e.Stage]
	return fmt.Sprintf("%s: %s: %v", e.Agent, what, e.Err)
}

func (e *MemberError) Unwrap() error { return e.Err }

// StartError is a group start that failed. Every member's window the coordinator could
// reach was stopped (a scheduled one cancelled, a capturing one stopped); NotStopped
// lists those it could not reach, which may still start or capture.
type StartError struct {
	Record windows.GroupRecord // state "failed", with each member's state and error
	// Failed are the members that failed the group, in member order.
	Failed []*MemberError
	// Cause is why the group failed when no member did: the start was interrupted.
	Cause error
	// NotStopped are members whose window may exist but could not be stopped.
	NotStopped []*MemberError
	// Stopped counts the windows the cleanup stopped or cancelled.
	Stopped  int
	Warnings []string
}

func (e *StartError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "group %s failed", e.Record.ID)
	if e.Cause != nil {
		fmt.Fprintf(&b, ": %v", e.Cause)
	}
	if n := len(e.Failed); n > 0 {
		fmt.Fprintf(&b, ": %d of %d agents: ", n, len(e.Record.Members))
		for i, f := range e.Failed {
			if i > 0 {
				b.WriteString("; ")
			}
			b.WriteString(f.Error())
		}
	}
	switch {
	case e.Stopped == 1:
		b.WriteString("; the other member's window was stopped")
	case e.Stopped > 1:
		fmt.Fprintf(&b, "; the other members' %d windows were stopped", e.Stopped)
	}
	if len(e.NotStopped) > 0 {
		b.WriteString("; NOT stopped (they may still start or capture; stop them by the group id once they answer): ")
		for i, f := range e.NotStopped {
			if i > 0 {
				b.WriteString("; ")
			}
			fmt.Fprintf(&b, "%s: %v", f.Agent, f.Err)
		}
	}
	return b.String()
}

// Unwrap gives the members' errors and the cause, for errors.Is (context.Canceled, an
// agent's domain error).
func (e *StartError) Unwrap() []error {
	var out []error
	if e.Cause != nil {
		out = append(out, e.Cause)
	}
	for _, f := range e.Failed {
		out = append(out, f)
	}
	return out
}
