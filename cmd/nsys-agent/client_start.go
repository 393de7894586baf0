package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/nsys-agent/nsys-agent/agent/fleet"
	"github.com/nsys-agent/nsys-agent/agent/windows"
	"github.com/urfave/cli/v2"
)

func startCommand() *cli.Command {
	return clientCommand(&cli.Command{
		Name:      "start",
		Usage:     "open a capture window on the agent's target",
		ArgsUsage: " ",
		Description: `Opens a window: nsys captures the target from now until the window is stopped, by
'nsys-agent stop', by its --duration, or after --steps engine steps. --at schedules it
(at most 24 h ahead); 'nsys-agent stop' before then cancels it.

   nsys-agent start --duration 5s --name warmup
   nsys-agent start --duration 5s --wait && nsys-agent pull latest --dir ./reports
   nsys-agent start --at 30s --duration 10s
   nsys-agent start --export --agent gpu1:7477,gpu2:7477     # on two hosts, each at once

Group windows: with two or more agents, --sync (or --at T) opens one window on all of
them at the same instant, a group with an id (g-20250102-150405-ab12, or --group NAME).
The client measures each agent's clock against its own from request round trips (the
shortest of 8, NTP-style), picks a start time a little ahead (at least 1s, more for
slow or many agents) and schedules every window for that time written in each agent's
own clock. The group has started once every agent confirmed its capture; if one
refuses, cannot be reached, fails its start or does not confirm within --start-timeout
after the start time, every other agent's window is stopped (a scheduled one
cancelled) and the command exits 1 naming each failed agent and why. With
--min-members N, up to all but N agents may fail: they are left out (their windows
stopped), named in a warning and in the group's record, and the others capture on.
It prints the group id, each agent's window, clock offset ± uncertainty, start on this
host's clock and state, then the start skew (latest minus earliest start). The group
id works wherever a WINDOW goes: windows, show, stop, wait, pull.

   nsys-agent start --sync --duration 10s --agent gpu1:7477,gpu2:7477,gpu3:7477
   nsys-agent start --at 2025-01-02T15:04:05Z --group g-prefill-1 --duration 10s --agent gpu1:7477,gpu2:7477
   nsys-agent start --sync --duration 10s --wait -o json --agent gpu1:7477,gpu2:7477 > group.json
   nsys-agent start --sync --min-members 15 --duration 10s --agent "$(paste -sd, hosts.txt)"   # 16 hosts, one may fail
   nsys-agent pull g-prefill-1 --dir ./run1 --agent gpu1:7477,gpu2:7477   # run1/<host>/, run1/group.json`,
		Flags: clientFlags(
			&cli.StringFlag{Name: "backend", Usage: "capture `BACKEND` (default: the agent's; 'nsys-agent backends --agent URL' lists them)"},
			&cli.StringFlag{Name: "duration", Usage: "stop by itself after `D` (5s, 1m; at most 24h)"},
			&cli.IntFlag{Name: "steps", Usage: "server-driven backends: stop after `N` steps"},
			&cli.StringFlag{Name: "name", Usage: "`LABEL` for the window: letters, digits, '.', '_', '-'"},
			&cli.StringFlag{Name: "at", Usage: "start at `T`: an RFC 3339 time, or a delay such as 30s"},
			&cli.BoolFlag{Name: "export", Usage: "also export the report to SQLite"},
			&cli.StringSliceFlag{Name: "option", Aliases: []string{"O"}, Usage: "backend option `NAME=VALUE`, repeatable (e.g. -O mem=true for torch; 'nsys-agent backends' lists each backend's)"},
			&cli.BoolFlag{Name: "wait", Usage: "wait until the window has ended (needs --duration or --steps), with stop's progress bar"},
			&cli.StringFlag{Name: "max-bytes", Usage: "stop the window early once its capture has written `SIZE` (default: the agent's --max-window-bytes)"},
			// Group windows (issue 14): group_start.go.
			&cli.BoolFlag{Name: "sync", Usage: "with several agents: start them together, a little in the future, as one group window"},
			&cli.StringFlag{Name: "group", Usage: "with --sync or --at and several agents: the group's `ID` (g-...; default g-<UTC time>-<random>)"},
			&cli.DurationFlag{Name: "start-timeout", Value: fleet.DefaultAckTimeout, Usage: "group windows: how long after the start time every agent has to confirm its capture"},
			&cli.IntFlag{Name: "min-members", Usage: "group windows: at least `N` agents must confirm their capture; the others that fail are left out, their windows stopped (default: every agent must)"},
		),
		Action: runStart,
	})
}

func runStart(c *cli.Context) error {
	if _, err := positional(c, 0, 0, "no arguments"); err != nil {
		return err
	}
	req, err := createRequest(c, time.Now())
	if err != nil {
		return err
	}
	wait := c.Bool("wait")
	if wait && req.Duration == "" && req.Steps == 0 {
		return usagef("start: --wait needs --duration or --steps: without them only 'nsys-agent stop' ends the window, and stop waits for it itself")
	}
	s, err := setupClients(c, "output")
	if err != nil {
		return err
	}
	defer s.close()
	if group, err := groupStartWanted(c, s, req); err != nil || group {
		if err != nil {
			return err
		}
		return runGroupStart(c, s, req)
	}
	var bar *progressBar
	if wait && len(s.agents) == 1 {
		bar = newProgressBar(c.App.ErrWriter)
	}
	outs := fanOut(c.Context, s, func(ctx context.Context, ac *apiClient) (any, error) {
		var m windows.Manifest
		if err := ac.call(ctx, http.MethodPost, "/v1/windows", req, &m); err != nil {
			return nil, err
		}
		if !wait {
			return &m, nil
		}
		return followWindow(ctx, ac, m.ID, bar, 0)
	})
	// The manifest does not carry start_at: the request says when a scheduled window
	// starts.
	startAt, _ := time.Parse(time.RFC3339, req.StartAt)
	if !startAt.IsZero() && s.json() {
		for i, o := range outs {
			if m, ok := o.value.(*windows.Manifest); ok && m.State == windows.StateRequested {
				s.notef(s.agents[i], "window %s starts at %s", m.ID, startsAt(startAt, time.Now()))
			}
		}
	}
	return report(c.App.Writer, s, outs, func(w io.Writer, v any) {
		m := v.(*windows.Manifest)
		printManifest(w, m)
		if m.State == windows.StateRequested && !startAt.IsZero() {
			tw := newTable(w)
			fmt.Fprintf(tw, "STARTS\t%s\n", startsAt(startAt, time.Now()))
			tw.Flush()
		}
	})
}

// startsAt is "2025-01-02 15:04:05 (in 1m30s)".
func startsAt(at, now time.Time) string {
	return fmt.Sprintf("%s (in %s)", formatTime(at), humanDuration(at.Sub(now).Round(time.Second)))
}

// createRequest checks the flags here, with the same rules as the agent, so a typo is
// a usage error (exit 2) before anything is sent.
func createRequest(c *cli.Context, now time.Time) (windows.CreateRequest, error) {
	req := windows.CreateRequest{
		Backend:  c.String("backend"),
		Duration: c.String("duration"),
		Steps:    c.Int("steps"),
		Name:     c.String("name"),
		Export:   c.Bool("export"),
	}
	for _, kv := range c.StringSlice("option") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return req, usagef("--option: want NAME=VALUE, got %q", kv)
		}
		if _, dup := req.Options[k]; dup {
			return req, usagef("--option: %s given twice", k)
		}
		if req.Options == nil {
			req.Options = map[string]string{}
		}
		req.Options[k] = v
	}
	if at := c.String("at"); at != "" {
		if t, err := time.Parse(time.RFC3339, at); err == nil {
			req.StartAt = t.Format(time.RFC3339Nano) // a fraction of a second matters to a group
		} else if d, derr := time.ParseDuration(at); derr == nil && d >= 0 {
			// With its fraction of a second: "--at 30s" is 30 s, not 29.6.
			req.StartAt = now.Add(d).UTC().Format(time.RFC3339Nano)
		} else {
			return req, usagef("--at: want an RFC 3339 time (2025-01-02T15:04:05Z) or a delay (30s), got %q", at)
		}
	}
	if mb := c.String("max-bytes"); mb != "" { // retention (issue 15, item 3)
		n, err := parseSize(mb)
		if err != nil {
			return req, usagef("--max-bytes: %v (examples: 500MiB, 2GB)", err)
		}
		req.MaxBytes = n
	}
	if err := req.Validate(); err != nil {
		// The agent's messages name the JSON field; say the flag instead.
		return req, usagef("--%s", flagWording(err.Error()))
	}
	return req, nil
}

// flagWording turns "start_at: ..." into "at: ..." so the message names the flag.
func flagWording(msg string) string {
	if rest, ok := strings.CutPrefix(msg, "options"); ok {
		return "option" + rest
	}
	if len(msg) > len("start_at") && msg[:len("start_at")] == "start_at" {
		return "at" + msg[len("start_at"):]
	}
	return msg
}
