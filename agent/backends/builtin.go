package backends

import (
	"context"

	"github.com/nsys-agent/nsys-agent/agent/windows"
	"github.com/nsys-agent/nsys-agent/nsys"
)

// Builtin is the one list of the backends built into the agent, for a session driven by
// ctl (nil: no session, as in `nsys-agent backends` without an agent; nsysErr then says
// why nsys cannot be used, or nil when it can). Plugins are added beside these.
func Builtin(ctx context.Context, ctl *nsys.Controller, version string, nsysErr error) ([]windows.Entry, error) {
	nb := &Nsys{Ctl: ctl, Version: version}
	why := nb.Unavailable()
	if nsysErr != nil {
		why = nsysErr.Error()
	}
	e, err := windows.EntryOf(ctx, nb, why)
	if err != nil {
		return nil, err
	}
	return []windows.Entry{e}, nil
}
