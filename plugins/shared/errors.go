package shared

import "errors"

// The errors every backend speaks, whatever it drives underneath. A backend maps its own
// errors onto these in one place (the nsys backend maps nsys's; the plugin client maps
// gRPC codes), and the agent maps these onto its own in one place.
var (
	// ErrBusy: a capture is running or the tool is mid-step; retry after it ends.
	ErrBusy = errors.New("backend busy")
	// ErrTargetGone: the server or its session is gone; no window can be captured.
	ErrTargetGone = errors.New("target gone")
	// ErrPluginExited: a plugin process died or stopped answering.
	ErrPluginExited = errors.New("plugin exited")
	// ErrUnsupported: the backend cannot do what the window asks (steps, export, ...).
	ErrUnsupported = errors.New("unsupported")
)

// Error is a backend error with one of the kinds above. Its text is the cause's own, so
// wrapping adds no noise for the person reading it.
type Error struct {
	Kind error
	Err  error
}

func (e *Error) Error() string   { return e.Err.Error() }
func (e *Error) Unwrap() []error { return []error{e.Kind, e.Err} }

// Wrap marks err as being of kind (ErrBusy, ...); nil stays nil.
func Wrap(kind, err error) error {
	if err == nil {
		return nil
	}
	return &Error{Kind: kind, Err: err}
}
