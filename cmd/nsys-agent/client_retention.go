package main

// Retention commands (issue 15, item 3): rm, pin, unpin.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"

	"github.com/urfave/cli/v2"

	"github.com/nsys-agent/nsys-agent/agent/windows"
)

func rmCommand() *cli.Command {
	return clientCommand(&cli.Command{
		Name:      "rm",
		Usage:     "remove finished windows: their folders and records on the agent",
		ArgsUsage: "WINDOW...",
		Description: `Removes each WINDOW (an id, a name, latest) from the agent's data dir, report and all.
A window that is still requested, capturing or finalizing is refused (stop it first), and
so is a pinned one (unpin it first). The agent also removes the oldest finished windows by
itself when run with --keep-windows or --max-bytes; pinned windows are never removed.

   nsys-agent rm warmup
   nsys-agent rm w20260101-120000-a1b2c3 w20260101-120500-d4e5f6`,
		Flags: clientFlags(),
		Action: func(c *cli.Context) error {
			args, err := positional(c, 1, 100, "one or more WINDOWs")
			if err != nil {
				return err
			}
			s, err := setupClients(c, "output")
			if err != nil {
				return err
			}
			defer s.close()
			outs := fanOut(c.Context, s, func(ctx context.Context, ac *apiClient) (any, error) {
				return removeWindows(ctx, ac, args)
			})
			return report(c.App.Writer, s, outs, func(w io.Writer, v any) {
				for _, m := range v.([]windows.Manifest) {
					fmt.Fprintf(w, "removed %s\n", windowLabel(&m))
				}
			})
		},
	})
}

// removeWindows removes each named window in turn; one refused does not stop the others,
// and every refusal is returned.
func removeWindows(ctx context.Context, ac *apiClient, words []string) ([]windows.Manifest, error) {
	removed := []windows.Manifest{}
	var errs []error
	for _, word := range words {
		m, err := ac.lookup(ctx, word)
		if err == nil {
			var gone windows.Manifest
			if err = ac.call(ctx, http.MethodDelete, "/v1/windows/"+url.PathEscape(m.ID), nil, &gone); err == nil {
				removed = append(removed, gone)
				continue
			}
		}
		errs = append(errs, err)
	}
	return removed, errors.Join(errs...)
}

func pinCommand(pinned bool) *cli.Command {
	name, usage, desc := "pin", "keep a window: no budget or rm removes it", `Pins WINDOW (an id, a name, latest or active): the agent's --keep-windows and --max-bytes
never remove it, and 'nsys-agent rm' refuses to. The pin is kept in the window's
manifest, so it survives a restart of the agent.

   nsys-agent pin latest
   nsys-agent pin baseline`
	if !pinned {
		name, usage, desc = "unpin", "let a window be removed again", `Unpins WINDOW: it can be removed with 'nsys-agent rm', and the agent's --keep-windows and
--max-bytes apply to it again from their next pass (when a window settles, or at the
agent's next start).

   nsys-agent unpin baseline`
	}
	return clientCommand(&cli.Command{
		Name:        name,
		Usage:       usage,
		ArgsUsage:   "WINDOW",
		Description: desc,
		Flags:       clientFlags(),
		Action: func(c *cli.Context) error {
			return runQuery(c, 1, func(ctx context.Context, ac *apiClient, args []string) (any, error) {
				m, err := ac.lookup(ctx, args[0])
				if err != nil {
					return nil, err
				}
				var out windows.Manifest
				if err := ac.call(ctx, http.MethodPost, "/v1/windows/"+url.PathEscape(m.ID)+"/"+name, nil, &out); err != nil {
					return nil, err
				}
				return &out, nil
			}, func(w io.Writer, _ *apiClient, v any) {
				fmt.Fprintf(w, "%sned %s\n", name, windowLabel(v.(*windows.Manifest)))
			})
		},
	})
}

// windowLabel is "w20260101-120000-a1b2c3 (warmup, ready, 1.2 MiB)".
func windowLabel(m *windows.Manifest) string {
	name := ""
	if m.Name != "" {
		name = m.Name + ", "
	}
	return fmt.Sprintf("%s (%s%s, %s)", m.ID, name, m.State, humanBytes(artifactBytes(m)))
}
