package nsys

import (
	"errors"
	"fmt"
	"strings"
)

// Sentinel errors; the typed errors below wrap them so callers can use errors.Is.
var (
	ErrNotInstalled    = errors.New("nsys not found")
	ErrSessionNotFound = errors.New("nsys session not found")
	ErrWrongState      = errors.New("nsys session in the wrong state")
	ErrTimeout         = errors.New("nsys command timed out")
	ErrNoReport        = errors.New("no report written")
	ErrBadSessionName  = errors.New("invalid session name")
)

// InstallHint tells a user how to get nsys.
const InstallHint = "install Nsight Systems (on Debian: sudo scripts/install-nsys.sh, which installs the " +
	"nsight-systems package from non-free) or point NSYS_AGENT_NSYS / --nsys at an nsys binary"

// NotInstalledError says nsys could not be found and where we looked.
type NotInstalledError struct {
	Looked []string
}

func (e *NotInstalledError) Error() string {
	return fmt.Sprintf("nsys not found (looked in: %s); %s", strings.Join(e.Looked, ", "), InstallHint)
}

func (e *NotInstalledError) Unwrap() error { return ErrNotInstalled }

// SessionNotFoundError: the named session is not in `nsys sessions list`.
type SessionNotFoundError struct {
	Name  string
	Known []string
}

func (e *SessionNotFoundError) Error() string {
	msg := fmt.Sprintf("nsys session %q is not running", e.Name)
	if len(e.Known) > 0 {
		msg += fmt.Sprintf(" (sessions on this host: %s)", strings.Join(e.Known, ", "))
	}
	return msg + "; check the name with 'nsys-agent sessions' — nsys itself would silently create a new, empty session"
}

func (e *SessionNotFoundError) Unwrap() error { return ErrSessionNotFound }

// WrongStateError: the session is not in a state that allows the operation.
type WrongStateError struct {
	Session string
	Op      string
	State   State
	Want    []State
	Detail  string // what nsys said, if it said anything
}

func (e *WrongStateError) Error() string {
	want := make([]string, len(e.Want))
	for i, s := range e.Want {
		want[i] = string(s)
	}
	msg := fmt.Sprintf("cannot %s session %q: it is %s", e.Op, e.Session, e.State)
	if len(want) > 0 {
		msg += fmt.Sprintf(", needs %s", strings.Join(want, " or "))
	}
	if e.Detail != "" {
		msg += fmt.Sprintf(" (nsys: %s)", e.Detail)
	}
	switch e.State {
	case StateCollection, StateRangeCollection:
		msg += "; a window is already capturing: stop it first"
	case StateGeneration, StateRangeGeneration:
		msg += "; the previous report is still being written: retry in a few seconds"
	case StateLaunched, StateDelayedCollection, StateStartRange:
		if e.Op == "stop" {
			msg += "; nothing is capturing"
		}
	}
	return msg
}

func (e *WrongStateError) Unwrap() error { return ErrWrongState }

// TimeoutError: an nsys command did not finish in time. Recovered lists what was salvaged.
type TimeoutError struct {
	Args      []string
	After     string
	Recovered []string
	Cleanup   string
}

func (e *TimeoutError) Error() string {
	msg := fmt.Sprintf("nsys %s did not finish within %s", strings.Join(e.Args, " "), e.After)
	if e.Cleanup != "" {
		msg += "; " + e.Cleanup
	}
	if len(e.Recovered) > 0 {
		msg += fmt.Sprintf("; recovered: %s", strings.Join(e.Recovered, ", "))
	} else {
		msg += "; nothing could be recovered"
	}
	return msg
}

func (e *TimeoutError) Unwrap() error { return ErrTimeout }

// NoReportError: nsys said it stopped but no report file exists.
type NoReportError struct {
	Session string
	Looked  []string
	Output  string
}

func (e *NoReportError) Error() string {
	msg := fmt.Sprintf("nsys stop on session %q wrote no report", e.Session)
	if len(e.Looked) > 0 {
		msg += fmt.Sprintf(" (looked for %s)", strings.Join(e.Looked, ", "))
	}
	if o := strings.TrimSpace(e.Output); o != "" {
		msg += fmt.Sprintf("; nsys said: %s", oneLine(o, 300))
	}
	return msg + "; for a cuda-profiler window this means the target never called cudaProfilerStart"
}

func (e *NoReportError) Unwrap() error { return ErrNoReport }

// CommandError: nsys exited non-zero with a message we do not treat specially.
type CommandError struct {
	Args     []string
	ExitCode int
	Output   string
}

func (e *CommandError) Error() string {
	return fmt.Sprintf("nsys %s failed (exit %d): %s", strings.Join(e.Args, " "), e.ExitCode, oneLine(e.Output, 400))
}

func oneLine(s string, max int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > max {
		s = s[:max] + "…"
	}
	return s
}
