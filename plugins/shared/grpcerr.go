package shared

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	backendv1 "github.com/nsys-agent/nsys-agent/proto/backend/v1"
)

// The error mapping between the contract and gRPC, both ways, in one table. The plugin's
// side turns a backend's error into a status whose message is the error's own text, with
// a Failure detail naming its kind; the host's side turns it back into the same kind with
// the same text, so errors.Is(err, ErrBusy) and err.Error() read the same on both sides.
var kinds = []struct {
	kind error
	name string // Failure.kind
	code codes.Code
}{
	{ErrBusy, "busy", codes.Aborted},
	{ErrTargetGone, "target-gone", codes.FailedPrecondition},
	{ErrUnsupported, "unsupported", codes.Unimplemented},
	{ErrPluginExited, "plugin-exited", codes.Unavailable},
	{context.Canceled, "canceled", codes.Canceled},
	{context.DeadlineExceeded, "deadline-exceeded", codes.DeadlineExceeded},
}

// toStatus is the plugin's side: err (nil = success) as a gRPC status error. What the
// failing call still produced (a Stop's partial report) travels in the Failure detail,
// since the contract lets a failed call return what it left.
func toStatus(err error, partial *Result) error {
	if err == nil {
		return nil
	}
	code, kind := codes.Unknown, ""
	for _, k := range kinds {
		if errors.Is(err, k.kind) {
			code, kind = k.code, k.name
			break
		}
	}
	return failure(code, kind, err.Error(), partial)
}

// failure builds the status the serving side answers with, its Failure detail included.
func failure(code codes.Code, kind, msg string, partial *Result) error {
	f := &backendv1.Failure{Kind: kind}
	if partial != nil && !resultEmpty(*partial) {
		f.Partial = resultToProto(*partial)
	}
	st := status.New(code, msg)
	if withDetail, err := st.WithDetails(f); err == nil {
		st = withDetail
	}
	return st.Err()
}

// fromStatus is the host's side, the one mapper every client call goes through. caller
// is the context the agent passed in, done the plugin's doneCtx (cancelled by go-plugin
// when the plugin process exits). In this order:
//   - the caller's own cancellation or deadline stays context.Canceled/DeadlineExceeded:
//     nobody else is to blame;
//   - an answer of the backend (a status with a Failure detail) keeps its kind and its
//     message, and brings back the partial result it carried;
//   - anything else came from gRPC itself: a plugin whose process exited, or whose
//     connection broke (Unavailable), is ErrPluginExited, whatever the code; another code
//     (Unimplemented from an older plugin that lacks the call) maps by the table.
//
// A context kind from the plugin's side is its own context ending (its own timeout); it
// is kept, so a caller can still tell a timeout from a failure.
func fromStatus(caller, done context.Context, rpc string, err error) (Result, error) {
	if err == nil {
		return Result{}, nil
	}
	st, _ := status.FromError(err) // a non-status error reads as Unknown with its own text
	msg := st.Message()
	var f *backendv1.Failure
	for _, d := range st.Details() {
		if x, ok := d.(*backendv1.Failure); ok {
			f = x
		}
	}
	partial := resultFromProto(f.GetPartial())
	if f == nil && (st.Code() == codes.Canceled || st.Code() == codes.DeadlineExceeded) {
		// gRPC sends the caller's deadline to the plugin, whose side resets the stream when
		// it passes; that reset (Canceled, "RST_STREAM with error code: CANCEL") can reach
		// the caller a moment before its own timer fires (2 of 6 runs of the plugin host's
		// hang tests on the 2-vCPU VM). Wait that moment out so the caller hears its deadline.
		if dl, ok := caller.Deadline(); ok && time.Until(dl) < 100*time.Millisecond {
			select {
			case <-caller.Done():
			case <-time.After(time.Until(dl) + 10*time.Millisecond):
			}
		}
	}
	if cerr := caller.Err(); cerr != nil {
		if msg == "" || msg == cerr.Error() {
			return partial, cerr
		}
		return partial, Wrap(cerr, errors.New(msg))
	}
	if f != nil {
		for _, k := range kinds {
			if f.GetKind() == k.name {
				return partial, Wrap(k.kind, errors.New(msg))
			}
		}
		return partial, errors.New(msg)
	}
	if done.Err() != nil || st.Code() == codes.Unavailable {
		return partial, Wrap(ErrPluginExited, fmt.Errorf(
			"backend plugin's %s failed: its process exited or stopped answering (%s)", rpc, msg))
	}
	for _, k := range kinds {
		if st.Code() == k.code {
			return partial, Wrap(k.kind, errors.New(msg))
		}
	}
	return partial, errors.New(msg)
}

func resultEmpty(r Result) bool {
	return len(r.Artifacts) == 0 && len(r.Warnings) == 0 && len(r.Summary) == 0
}
