package agent

import (
	"context"
	"errors"
	"log/slog"

	"github.com/nsys-agent/nsys-agent/agent/triggers"
	"github.com/nsys-agent/nsys-agent/agent/windows"
)

func (d *daemon) Triggers(ctx context.Context) []triggers.Status {
	if d.triggers == nil {
		return []triggers.Status{}
	}
	return d.triggers.List()
}

func (d *daemon) AddTrigger(ctx context.Context, spec triggers.Spec, who windows.Requester) (*triggers.Status, error) {
	if d.triggers == nil {
		return nil, &windows.Error{Kind: windows.ErrTargetDown, Msg: "this agent takes no triggers (it has no target)"}
	}
	st, err := d.triggers.Add(spec)
	if err != nil {
		return nil, err
	}
	return &st, nil
}

// startTriggers arms the triggers of `run --trigger-*` on the target's output and the
// server's metrics; windows they open go through the state machine like any other.
func startTriggers(specs []triggers.Spec, mgr *windows.Manager, sup *Supervisor, serverURL string, log *slog.Logger) (*triggers.Set, error) {
	set := triggers.New(triggers.Options{Open: mgr.CreateWindow, Lines: sup.Subscribe, ServerURL: serverURL, Log: log.With("part", "triggers")})
	for _, s := range specs {
		if _, err := set.Add(s); err != nil {
			set.Close()
			if errors.Is(err, windows.ErrInvalid) {
				return nil, configErrorf("--trigger-*: %v", err)
			}
			return nil, err
		}
	}
	return set, nil
}
