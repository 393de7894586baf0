package agent

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"

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

// triggersFile keeps the triggers and the windows they opened across agent restarts that
// adopt the same target (agent/triggers/state.go).
const triggersFile = "triggers.json"

// startTriggers arms the triggers of `run --trigger-*` on the target's output and the
// server's metrics, then those the agent's last run had armed through the API when it
// adopted the same target; windows they open go through the state machine like any
// other.
func startTriggers(specs []triggers.Spec, mgr *windows.Manager, sup *Supervisor, serverURL, dataDir, session string, log *slog.Logger) (*triggers.Set, error) {
	set := triggers.New(triggers.Options{Open: mgr.CreateWindow, Lines: sup.Subscribe, ServerURL: serverURL, Log: log.With("part", "triggers"),
		StatePath: filepath.Join(dataDir, triggersFile), Session: session})
	for _, s := range specs {
		if _, err := set.Add(s); err != nil {
			set.Close()
			if errors.Is(err, windows.ErrInvalid) {
				return nil, configErrorf("--trigger-*: %v", err)
			}
			return nil, err
		}
	}
	set.Resume()
	return set, nil
}
