package pluginhost

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nsys-agent/nsys-agent/plugins/shared"
)

// Plugin is a backend served by a plugin process. It is a shared.Backend with every
// optional capability (a plugin that lacks one answers as if it had none), so the agent
// treats it as it treats a built-in. Its process stays up between windows; after a
// crash, or a kill for a call that did not return, the next window relaunches it.
type Plugin struct {
	file string // the file found in the plugin dir
	path string // what runs (the file, links resolved)
	info shared.Info
	o    Options

	mu     sync.Mutex
	proc   *process       // nil after a failed relaunch
	last   *process       // the previous process, for errors after a failed relaunch
	target *shared.Target // the last Configure, replayed on a relaunched process
	closed bool
	starts int // launches, the first included
}

var (
	_ shared.Backend    = (*Plugin)(nil)
	_ shared.Configurer = (*Plugin)(nil)
	_ shared.Finalizer  = (*Plugin)(nil)
	_ shared.Waiter     = (*Plugin)(nil)
	_ shared.Salvager   = (*Plugin)(nil)
	_ shared.Launcher   = (*Plugin)(nil)
)

// Name is the backend's name (from its Info).
func (p *Plugin) Name() string { return p.info.Name }

// File is the plugin's file in the plugin dir; Path is what runs (links resolved).
func (p *Plugin) File() string { return p.file }
func (p *Plugin) Path() string { return p.path }

// PID is the running process's pid (0: not running).
func (p *Plugin) PID() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.proc == nil || p.proc.client.Exited() {
		return 0
	}
	return p.proc.pid
}

// Launches counts the processes started for this plugin, the first included.
func (p *Plugin) Launches() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.starts
}

// Info is the fingerprint taken at load; a relaunched process must answer the same name
// and API version.
func (p *Plugin) Info(context.Context) (shared.Info, error) { return p.info, nil }

func (p *Plugin) Start(ctx context.Context, w shared.Window) error {
	ctx, cancel := p.bounded(ctx)
	defer cancel()
	return p.call(ctx, "Start", true, func(ctx context.Context, b shared.Backend) error {
		return b.Start(ctx, w)
	})
}

// Stop, Wait and Salvage act on a capture the process holds: a process that died took
// the capture with it, so they report the death rather than relaunch.
func (p *Plugin) Stop(ctx context.Context, w shared.Window, pr shared.Progress) (res shared.Result, err error) {
	err = p.call(ctx, "Stop", false, func(ctx context.Context, b shared.Backend) error {
		res, err = b.Stop(ctx, w, pr)
		return err
	})
	return res, err
}

func (p *Plugin) Wait(ctx context.Context, w shared.Window) (res shared.Result, err error) {
	err = p.call(ctx, "Wait", false, func(ctx context.Context, b shared.Backend) error {
		wt, ok := b.(shared.Waiter)
		if !ok {
			return shared.Wrap(shared.ErrUnsupported, fmt.Errorf("backend %s cannot end a window by steps", p.info.Name))
		}
		res, err = wt.Wait(ctx, w)
		return err
	})
	return res, err
}

func (p *Plugin) Salvage(ctx context.Context, w shared.Window, pr shared.Progress) (res shared.Result, err error) {
	err = p.call(ctx, "Salvage", false, func(ctx context.Context, b shared.Backend) error {
		s, ok := b.(shared.Salvager)
		if !ok {
			return nil
		}
		res, err = s.Salvage(ctx, w, pr)
		return err
	})
	return res, err
}

// Finalize works on files in the window's folder, not on a capture: a plugin that died
// since (or a post-processor whose Start never ran) is relaunched for it.
func (p *Plugin) Finalize(ctx context.Context, w shared.Window, pr shared.Progress) (res shared.Result, err error) {
	err = p.call(ctx, "Finalize", true, func(ctx context.Context, b shared.Backend) error {
		f, ok := b.(shared.Finalizer)
		if !ok {
			return nil
		}
		res, err = f.Finalize(ctx, w, pr)
		return err
	})
	return res, err
}

// Configure tells the plugin about the target; a relaunched process is told again.
func (p *Plugin) Configure(ctx context.Context, t shared.Target) error {
	p.mu.Lock()
	p.target = &t
	p.mu.Unlock()
	ctx, cancel := p.bounded(ctx)
	defer cancel()
	return p.call(ctx, "Configure", true, func(ctx context.Context, b shared.Backend) error {
		if c, ok := b.(shared.Configurer); ok {
			return c.Configure(ctx, t)
		}
		return nil
	})
}

func (p *Plugin) PrepareLaunch(ctx context.Context, l shared.Launch) (out shared.Launch, err error) {
	ctx, cancel := p.bounded(ctx)
	defer cancel()
	out = l
	err = p.call(ctx, "PrepareLaunch", true, func(ctx context.Context, b shared.Backend) error {
		if ln, ok := b.(shared.Launcher); ok {
			out, err = ln.PrepareLaunch(ctx, l)
		}
		return err
	})
	return out, err
}

// bounded gives the short calls (Start, Configure, PrepareLaunch) a deadline when the
// caller set none: the state machine runs Start without one, and a plugin stuck there
// would hold the capture slot for ever.
func (p *Plugin) bounded(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, p.o.CallTimeout)
}

// call runs f on the live process (relaunching a dead one first when relaunch is set)
// and turns a death or a missed deadline into one error that names the plugin and pid.
func (p *Plugin) call(ctx context.Context, name string, relaunch bool, f func(context.Context, shared.Backend) error) error {
	pr, err := p.live(ctx, name, relaunch)
	if err != nil {
		return err
	}
	begin := time.Now()
	err = f(ctx, pr.backend)
	if err == nil {
		return nil
	}
	// A plugin's own error comes back at once; only a dead connection is worth a wait
	// for the process to be reaped, so its exit status can be told.
	wait := time.Duration(0)
	if errors.Is(err, shared.ErrPluginExited) {
		wait = 2 * time.Second
	}
	switch {
	case pr.exited(wait):
		return &ExitedError{Backend: p.info.Name, PID: pr.pid, Call: name, Status: pr.status(), Output: pr.stderr.String(), Err: err}
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		// (A stream the plugin's side reset as the deadline passed reads as the deadline:
		// plugins/shared waits that moment out.)
		why := fmt.Sprintf("%s did not return within %s", name, time.Since(begin).Round(time.Millisecond))
		p.o.Log.Warn("killing a backend plugin that did not return in time", "backend", p.info.Name, "pid", pr.pid, "call", name, "after", time.Since(begin).Round(time.Millisecond))
		pr.kill(why)
		return &TimeoutError{Backend: p.info.Name, PID: pr.pid, Call: name, After: time.Since(begin)}
	case errors.Is(err, shared.ErrPluginExited):
		// The connection is gone but the process is not: it cannot be talked to again.
		pr.kill(name + " lost its connection to the plugin")
		return &ExitedError{Backend: p.info.Name, PID: pr.pid, Call: name, Status: pr.status(), Output: pr.stderr.String(), Err: err}
	}
	return err
}

// live is the running process; a dead one is relaunched (and configured again) when
// relaunch is set, and reported otherwise.
func (p *Plugin) live(ctx context.Context, call string, relaunch bool) (*process, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, ErrClosed
	}
	pr := p.proc
	if pr != nil && !pr.client.Exited() {
		return pr, nil
	}
	if pr == nil {
		pr = p.last
	}
	if !relaunch {
		return nil, &ExitedError{Backend: p.info.Name, PID: pr.pid, Call: call, Status: pr.status(), Output: pr.stderr.String(), Err: shared.ErrPluginExited}
	}
	pr.client.Kill() // reaps it and removes what go-plugin left for it
	np, info, err := launch(ctx, p.path, p.info.Name, p.o)
	if err == nil && (info.Name != p.info.Name || info.APIVersion != p.info.APIVersion) {
		np.kill("relaunched as another backend")
		err = fmt.Errorf("it now answers as backend %q (API version %d), not %q (API version %d): restart the agent to load it anew", info.Name, info.APIVersion, p.info.Name, p.info.APIVersion)
	}
	if err == nil && p.target != nil {
		if c, ok := np.backend.(shared.Configurer); ok {
			cctx, cancel := context.WithTimeout(ctx, p.o.CallTimeout)
			err = c.Configure(cctx, *p.target)
			cancel()
			if err != nil {
				np.kill("Configure failed after relaunch")
				err = fmt.Errorf("its Configure failed: %w", err)
			}
		}
	}
	if err != nil {
		p.proc, p.last = nil, pr
		return nil, shared.Wrap(shared.ErrPluginExited, fmt.Errorf("backend plugin %s (pid %d) exited (%s) and could not be relaunched for %s: %w", p.info.Name, pr.pid, pr.status(), call, err))
	}
	p.o.Log.Warn("backend plugin relaunched after its process ended", "backend", p.info.Name, "old_pid", pr.pid, "status", pr.status(), "pid", np.pid)
	p.proc, p.last = np, pr
	p.starts++
	return np, nil
}

// close kills the process; later calls fail with ErrClosed.
func (p *Plugin) close() {
	p.mu.Lock()
	p.closed = true
	pr := p.proc
	p.mu.Unlock()
	if pr != nil {
		pr.kill("the agent shut down")
	}
}
