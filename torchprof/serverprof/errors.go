package serverprof

import (
	"errors"
	"fmt"
)

// The kinds of error the client returns. Every error it returns for a server's answer or
// a bad request is an *Error whose message says what failed and what to do; errors.Is
// matches it against these. A cancelled context comes back as itself (errors.Is(err,
// context.Canceled)).
var (
	// ErrInvalid: the request itself is wrong (a window id that is not one path element,
	// a relative dir, negative steps); nothing was sent.
	ErrInvalid = errors.New("invalid profiling request")
	// ErrNotFound: the server has no such route (an older version, profiling not enabled,
	// or a URL that is not the server's).
	ErrNotFound = errors.New("profiling route not found")
	// ErrUnsupported: the server cannot do what the request asks (steps on vLLM, an
	// activity the server does not know, a field its /start_profile does not take);
	// nothing was sent.
	ErrUnsupported = errors.New("unsupported by this server")
	// ErrAlreadyRunning: a profile is already in progress on the server.
	ErrAlreadyRunning = errors.New("a profile is already in progress")
	// ErrNotRunning: no profile is in progress on the server.
	ErrNotRunning = errors.New("no profile in progress")
	// ErrServerDown: the server could not be reached, or closed the connection.
	ErrServerDown = errors.New("server unreachable")
	// ErrTimeout: the server did not answer in time. After a stop it may still be
	// writing its traces.
	ErrTimeout = errors.New("server did not answer in time")
	// ErrRefused: the server answered with an error the client cannot classify; the
	// message carries the status and a bounded, sanitized piece of the body.
	ErrRefused = errors.New("server refused the request")
)

// Error is an error of one of the kinds above.
type Error struct {
	Kind  error
	Msg   string
	Cause error // the transport or file-system error behind it, if any
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

func wrapf(kind, cause error, format string, a ...any) error {
	return &Error{Kind: kind, Msg: fmt.Sprintf(format, a...), Cause: cause}
}
