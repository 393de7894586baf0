package shared

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestStatusMapping drives the one mapper directly with what can come off the wire: the
// serving side's answers (toStatus) and what gRPC itself says when there is no answer.
func TestStatusMapping(t *testing.T) {
	live := context.Background()
	dead, kill := context.WithCancel(context.Background())
	kill()
	partial := &Result{Artifacts: []string{"report1.qdstrm"}, Warnings: []string{"import failed"}}
	cases := []struct {
		name         string
		caller, done context.Context
		err          error
		kind         error // nil: none of the contract's or context's kinds
		msg          string
		wantPartial  bool
	}{
		{"busy", live, live, toStatus(Wrap(ErrBusy, errors.New("Configuring is not allowed in this state.")), nil), ErrBusy, "Configuring is not allowed in this state.", false},
		{"target gone keeps the partial result", live, live, toStatus(fmt.Errorf("session: %w", Wrap(ErrTargetGone, errors.New("There are no active sessions."))), partial), ErrTargetGone, "session: There are no active sessions.", true},
		{"unsupported", live, live, toStatus(Wrap(ErrUnsupported, errors.New("no steps")), nil), ErrUnsupported, "no steps", false},
		{"a backend relaying a plugin's exit keeps its message", live, live, toStatus(Wrap(ErrPluginExited, errors.New("torch helper died")), nil), ErrPluginExited, "torch helper died", false},
		{"plain", live, live, toStatus(errors.New("disk full"), partial), nil, "disk full", true},
		{"the backend's own timeout", live, live, toStatus(fmt.Errorf("nsys stop: %w", context.DeadlineExceeded), nil), context.DeadlineExceeded, "nsys stop: context deadline exceeded", false},
		{"an answer of the backend wins over a plugin that died after it", live, dead, toStatus(Wrap(ErrBusy, errors.New("busy")), nil), ErrBusy, "busy", false},
		{"the caller's cancel wins over everything", dead, dead, toStatus(Wrap(ErrBusy, errors.New("busy")), partial), context.Canceled, "busy", true},
		{"the caller's cancel as gRPC says it", dead, live, status.Error(codes.Canceled, "context canceled"), context.Canceled, "context canceled", false},
		{"a broken connection", live, live, status.Error(codes.Unavailable, "error reading from server: EOF"), ErrPluginExited,
			"backend plugin's Stop failed: its process exited or stopped answering (error reading from server: EOF)", false},
		{"a call cut by the plugin's exit", live, dead, status.Error(codes.Canceled, "context canceled"), ErrPluginExited,
			"backend plugin's Stop failed: its process exited or stopped answering (context canceled)", false},
		{"an older plugin without the call", live, live, status.Error(codes.Unimplemented, "unknown method Wait"), ErrUnsupported, "unknown method Wait", false},
		{"a failure of an unknown kind (a newer plugin's)", live, live, failure(codes.Unknown, "newer-kind", "odd", nil), nil, "odd", false},
		{"not a status at all", live, live, errors.New("dial unix: no such file"), nil, "dial unix: no such file", false},
	}
	every := []error{ErrBusy, ErrTargetGone, ErrUnsupported, ErrPluginExited, context.Canceled, context.DeadlineExceeded}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res, err := fromStatus(c.caller, c.done, "Stop", c.err)
			if err == nil || err.Error() != c.msg {
				t.Errorf("error %v, want text %q", err, c.msg)
			}
			for _, k := range every {
				if errors.Is(err, k) != (k == c.kind) {
					t.Errorf("errors.Is(%v, %v) = %v", err, k, k != c.kind)
				}
			}
			if got := !reflect.DeepEqual(res, Result{}); got != c.wantPartial {
				t.Errorf("partial result %+v, want one: %v", res, c.wantPartial)
			} else if got && !reflect.DeepEqual(res, *partial) {
				t.Errorf("partial result %+v, want %+v", res, *partial)
			}
		})
	}
	if _, err := fromStatus(live, live, "Stop", nil); err != nil {
		t.Errorf("nil error maps to %v", err)
	}
	if toStatus(nil, partial) != nil {
		t.Error("toStatus(nil) must be nil")
	}
}

func TestKindsHaveDistinctCodesAndNames(t *testing.T) {
	codesSeen, names := map[codes.Code]bool{}, map[string]bool{}
	for _, k := range kinds {
		if codesSeen[k.code] || names[k.name] {
			t.Errorf("%v shares its code %v or name %q with another kind", k.kind, k.code, k.name)
		}
		codesSeen[k.code], names[k.name] = true, true
	}
}
