package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/nsys-agent/nsys-agent/agent"
	"github.com/nsys-agent/nsys-agent/agent/windows"
	"github.com/urfave/cli/v2"
)

func statusCommand() *cli.Command {
	return clientCommand(&cli.Command{
		Name:      "status",
		Usage:     "show the agent's target, nsys session and active window",
		ArgsUsage: " ",
		Description: `Asks the agent how its target server is doing (running, or exited with its log tail),
which nsys session holds it, and which window is capturing.

   nsys-agent status
   nsys-agent status --agent gpu1:7477,gpu2:7477 -o json`,
		Flags: clientFlags(),
		Action: func(c *cli.Context) error {
			return runQuery(c, 0, func(ctx context.Context, ac *apiClient, _ []string) (any, error) {
				var st agent.Status
				if err := ac.call(ctx, http.MethodGet, "/v1/status", nil, &st); err != nil {
					return nil, err
				}
				return &st, nil
			}, func(w io.Writer, _ *apiClient, v any) { printStatus(w, v.(*agent.Status)) })
		},
	})
}

func windowsCommand() *cli.Command {
	return clientCommand(&cli.Command{
		Name:      "windows",
		Usage:     "list the agent's windows, newest first",
		ArgsUsage: " ",
		Description: `Lists every window the agent knows: id, name, state, when, how long it captured, and
its files. A GROUP column appears when a window belongs to a group window ('nsys-agent
start --sync' on several agents).

   nsys-agent windows
   nsys-agent windows -o json`,
		Flags: clientFlags(),
		Action: func(c *cli.Context) error {
			return runQuery(c, 0, func(ctx context.Context, ac *apiClient, _ []string) (any, error) {
				var ws []windows.Manifest
				if err := ac.call(ctx, http.MethodGet, "/v1/windows", nil, &ws); err != nil {
					return nil, err
				}
				ws = newestFirst(ws)
				return windowsAt{ws, listedAt(ctx, ac, ws)}, nil
			}, func(w io.Writer, ac *apiClient, v any) { l := v.(windowsAt); printWindows(w, ac, l.list, l.now) })
		},
	})
}

func showCommand() *cli.Command {
	return clientCommand(&cli.Command{
		Name:      "show",
		Usage:     "show one window: state, who asked, where the GPU time went, artifacts",
		ArgsUsage: "WINDOW",
		Description: `Shows one window: its state (and why it failed), who opened and stopped it, where the
GPU time went (windows with --export), and its files with their sizes and sha256.
WINDOW is an id, a name, latest or active.

A group id (g-...) shows the group window on every agent given: the group's start
time, each member's window, clock offset ± uncertainty, capture start (on the
coordinating host's clock) and state now, then the start skew. Give every member with
--agent (a note names members the group's record lists that --agent lacks); -o json
prints {"id", "record", "members": [{"agent", "host", "window", "error"}]}.

   nsys-agent show latest
   nsys-agent show warmup -o json
   nsys-agent show g-20250102-150405-ab12 --agent gpu1:7477,gpu2:7477`,
		Flags: clientFlags(),
		Action: func(c *cli.Context) error {
			if pos, _ := c.Context.Value(trailingArgsKey{}).([]string); len(pos) == 1 && isGroupRef(pos[0]) {
				return runShowGroup(c, pos[0]) // group_show.go
			}
			return runQuery(c, 1, func(ctx context.Context, ac *apiClient, args []string) (any, error) {
				m, err := ac.lookup(ctx, args[0])
				if err != nil {
					return nil, err // not m: a nil *Manifest in an interface is not nil
				}
				return manifestAt{m, listedAt(ctx, ac, []windows.Manifest{*m})}, nil
			}, func(w io.Writer, _ *apiClient, v any) { s := v.(manifestAt); printManifestAt(w, s.m, s.now) })
		},
	})
}

// runQuery is the shape of the read-only commands: nargs positional arguments, one
// call per agent, one printer (of one agent's answer: several agents' go in a table).
func runQuery(c *cli.Context, nargs int, fn func(ctx context.Context, ac *apiClient, args []string) (any, error), printOne func(io.Writer, *apiClient, any)) error {
	what := "no arguments"
	if nargs == 1 {
		what = "one WINDOW"
	}
	args, err := positional(c, nargs, nargs, what)
	if err != nil {
		return err
	}
	s, err := setupClients(c, "output")
	if err != nil {
		return err
	}
	defer s.close()
	outs := fanOut(c.Context, s, func(ctx context.Context, ac *apiClient) (any, error) { return fn(ctx, ac, args) })
	return report(c.App.Writer, s, outs, func(w io.Writer, v any) { printOne(w, s.agents[0], v) })
}

func printStatus(w io.Writer, st *agent.Status) {
	tw := newTable(w)
	fmt.Fprintf(tw, "AGENT\t%s\n", dash(st.Agent))
	t := st.Target
	target := t.State
	if t.PID != 0 {
		target += fmt.Sprintf(", pid %d", t.PID)
	}
	if len(t.Ranks) > 0 {
		target += fmt.Sprintf(", %d processes", len(t.Ranks))
	}
	if t.ExitCode != nil {
		target += fmt.Sprintf(", exit code %d", *t.ExitCode)
	}
	fmt.Fprintf(tw, "TARGET\t%s\n", dash(target))
	if len(t.Command) > 0 {
		fmt.Fprintf(tw, "COMMAND\t%s\n", strings.Join(t.Command, " "))
	}
	if ss := st.Session; ss.Name != "" {
		fmt.Fprintf(tw, "SESSION\t%s (%s, %s)\n", ss.Name, dash(ss.Mode), dash(ss.State))
		fmt.Fprintf(tw, "NSYS\t%s %s\n", ss.Nsys, ss.Version)
	}
	if a := st.Active; a != nil {
		fmt.Fprintf(tw, "ACTIVE\t%s %s (%s, %s)\n", a.ID, a.State, a.Backend, windowDuration(a, time.Now()))
	} else {
		fmt.Fprintf(tw, "ACTIVE\tnone\n")
	}
	fmt.Fprintf(tw, "WINDOWS\t%d\n", st.Windows)
	tw.Flush()
	if len(t.LogTail) > 0 {
		fmt.Fprintln(w, "\nTARGET LOG (tail):")
		for _, l := range t.LogTail {
			fmt.Fprintln(w, "  "+l)
		}
	}
}

// printWindows lists ws; now is the agent's (CAPTURED of a capturing window).
func printWindows(w io.Writer, ac *apiClient, ws []windows.Manifest, now time.Time) {
	if len(ws) == 0 {
		fmt.Fprintln(w, "no windows yet; open one with "+ac.command("start"))
		return
	}
	// Group windows (issue 14): a GROUP column only where some window has one.
	grouped := false
	for i := range ws {
		grouped = grouped || ws[i].Group != ""
	}
	group := func(m *windows.Manifest) string {
		if !grouped {
			return ""
		}
		return dash(m.Group) + "\t"
	}
	tw := newTable(w)
	header := "WINDOW\tNAME\t"
	if grouped {
		header += "GROUP\t"
	}
	fmt.Fprintln(tw, header+"BACKEND\tSTATE\tVERDICT\tCREATED\tCAPTURED\tFILES\tSIZE")
	for i := range ws {
		m := &ws[i]
		fmt.Fprintf(tw, "%s\t%s\t%s%s\t%s\t%s\t%s\t%s\t%d\t%s\n", m.ID, dash(m.Name), group(m), m.Backend, m.State, verdictCell(m.Verdict),
			formatTime(m.CreatedAt), windowDuration(m, now), len(m.Artifacts), humanBytes(artifactBytes(m)))
	}
	tw.Flush()
}
