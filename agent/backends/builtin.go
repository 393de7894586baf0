package backends

import (
	"context"
	"time"

	"github.com/nsys-agent/nsys-agent/agent/windows"
	"github.com/nsys-agent/nsys-agent/nsys"
	"github.com/nsys-agent/nsys-agent/plugins/shared"
)

// BuiltinOptions is what the built-in backends learn of the agent beyond its session.
type BuiltinOptions struct {
	// ServerURL is the server's own HTTP address (--server-url, or the demo target's):
	// the cuda-profiler backend opens its windows there.
	ServerURL string
	// RangeWait bounds the cuda-profiler backend's wait for a capture range (0: the
	// default, DefaultRangeWait).
	RangeWait time.Duration
	// TargetLog is the target's output (<data-dir>/target.log), where nsys names the raw
	// stream of each capture range it ends.
	TargetLog string
}

// Builtin is the one list of the backends built into the agent, for a session driven by
// ctl (nil: no session, as in `nsys-agent backends` without an agent; nsysErr then says
// why nsys cannot be used, or nil when it can). Plugins are added beside these. The
// first usable one is the default: nsys for a session armed start-later or launch,
// cuda-profiler for one armed cuda-profiler (nsys windows are refused there).
func Builtin(ctx context.Context, ctl *nsys.Controller, version string, nsysErr error, opts ...BuiltinOptions) ([]windows.Entry, error) {
	var o BuiltinOptions
	if len(opts) > 0 {
		o = opts[0]
	}
	nb := &Nsys{Ctl: ctl, Version: version}
	cb := &CudaProfiler{Ctl: ctl, Version: version, ServerURL: o.ServerURL, RangeWait: o.RangeWait, TargetLog: o.TargetLog}
	var out []windows.Entry
	for _, b := range []interface {
		shared.Backend
		Unavailable() string
	}{nb, cb} {
		why := b.Unavailable()
		if nsysErr != nil {
			why = nsysErr.Error()
		}
		e, err := windows.EntryOf(ctx, b, why)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, nil
}
