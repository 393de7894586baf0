package windows

import (
	"errors"
	"fmt"
)

// Domain errors. The state machine returns only these (wrapped in *Error with a message
// that says what to do); the API maps each to an HTTP status in one place.
var (
	ErrInvalid      = errors.New("invalid request")        // a field is wrong; the message names it
	ErrWindowActive = errors.New("a window is active")     // a window is already requested or capturing
	ErrNoWindow     = errors.New("no window to stop")      // nothing capturing, or the window is past capturing
	ErrTargetDown   = errors.New("target down")            // the server or its session is gone
	ErrNotFound     = errors.New("not found")              // no such window or artifact
	ErrCancelled    = errors.New("cancelled while queued") // the caller gave up while the start waited
	ErrNoSpace      = errors.New("not enough disk space")  // the data dir is below its free-space floor
	ErrPinned       = errors.New("window pinned")          // a pinned window cannot be removed; unpin it first
)

// Error is a domain error: a kind above and a message for the person reading it. Cause,
// when set, is the backend error behind it.
type Error struct {
	Kind  error
	Msg   string
	Cause error
}

func (e *Error) Error() string { return e.Msg }

func (e *Error) Unwrap() []error {
	if e.Cause != nil {
		return []error{e.Kind, e.Cause}
	}
	return []error{e.Kind}
}

func errorf(kind error, format string, a ...any) error {
	return &Error{Kind: kind, Msg: fmt.Sprintf(format, a...)}
}
