package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/nsys-agent/nsys-agent/agent/windows"
	"github.com/urfave/cli/v2"
)

func waitCommand() *cli.Command {
	return clientCommand(&cli.Command{
		Name:      "wait",
		Usage:     "wait until a window (default: the newest) is ready, failed or cancelled",
		ArgsUsage: "[WINDOW]",
		Description: `Follows a window, with the progress bar stop shows, until it has ended: ready (exit 0),
failed or cancelled (exit 1). For windows that end by themselves (--duration, --steps)
or that someone else stops; a window that only 'nsys-agent stop' ends is waited for
until then.

   nsys-agent start --duration 30s --name warmup
   nsys-agent wait warmup
   nsys-agent wait --timeout 5m -o json`,
		Flags: clientFlags(
			&cli.DurationFlag{Name: "timeout", Usage: "give up after `D` (exit 1; the window goes on); 0: never"},
		),
		Action: runWait,
	})
}

func runWait(c *cli.Context) error {
	pos, err := positional(c, 0, 1, "at most one WINDOW")
	if err != nil {
		return err
	}
	word := "latest"
	if len(pos) == 1 {
		word = pos[0]
	}
	timeout := c.Duration("timeout")
	if timeout < 0 {
		return usagef("wait: --timeout %s: want 0 (never) or more", timeout)
	}
	s, err := setupClients(c, "output")
	if err != nil {
		return err
	}
	defer s.close()
	var bar *progressBar
	if len(s.agents) == 1 {
		bar = newProgressBar(c.App.ErrWriter)
	}
	outs := fanOut(c.Context, s, func(ctx context.Context, ac *apiClient) (any, error) {
		id, err := ac.resolveWindow(ctx, word)
		if err != nil {
			return nil, err
		}
		return followWindow(ctx, ac, id, bar, timeout)
	})
	if isGroupRef(word) {
		skipLeftOut(outs)
	}
	return report(c.App.Writer, s, outs, func(w io.Writer, v any) { printManifest(w, v.(*windows.Manifest)) })
}

// followWindow waits for window id to end, drawing bar, and returns it with the error
// its end means (failed, cancelled). timeout > 0 bounds the wait.
func followWindow(ctx context.Context, ac *apiClient, id string, bar *progressBar, timeout time.Duration) (*windows.Manifest, error) {
	wctx := ctx
	if timeout > 0 {
		var cancel context.CancelFunc
		wctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	last := &windows.Manifest{ID: id}
	final, err := waitWindow(wctx, ac, id, func(m *windows.Manifest) {
		last = m
		bar.update(m)
	})
	bar.done()
	if err != nil {
		if timeout > 0 && ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
			return last, &clientError{Agent: ac.base, Message: fmt.Sprintf("window %s is still %s after %s", id, last.State, timeout),
				Hint: "it goes on; wait again with " + ac.command("wait", id)}
		}
		return nil, err
	}
	return final, windowOutcome(ac, final)
}
