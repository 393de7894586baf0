package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/nsys-agent/nsys-agent/agent"
	"github.com/nsys-agent/nsys-agent/agent/backends"
	"github.com/nsys-agent/nsys-agent/agent/windows"
	"github.com/nsys-agent/nsys-agent/nsys"
)

func backendsCommand() *cli.Command {
	return clientCommand(&cli.Command{
		Name:      "backends",
		Usage:     "list the capture backends, and why any cannot be used",
		ArgsUsage: " ",
		Description: `Without --agent, lists the backends built into this binary and whether this host can
use them (nsys found?). With --agent (or NSYS_AGENT_ADDR), asks running agents which
backends their windows can use: a session armed with --arm cuda-profiler, for one, takes
no nsys windows.

   nsys-agent backends
   nsys-agent backends --agent gpu1:7477,gpu2:7477 -o json`,
		Flags:  clientFlags(nsysFlag()),
		Action: runBackends,
	})
}

func runBackends(c *cli.Context) error {
	if _, err := positional(c, 0, 0, "no arguments"); err != nil {
		return err
	}
	if !c.IsSet("agent") {
		return localBackends(c)
	}
	s, err := setupClients(c, "output")
	if err != nil {
		return err
	}
	defer s.close()
	outs := fanOut(c.Context, s, func(ctx context.Context, ac *apiClient) (any, error) {
		var list []agent.BackendStatus
		if err := ac.call(ctx, http.MethodGet, "/v1/backends", nil, &list); err != nil {
			return nil, err
		}
		return list, nil
	})
	return report(c.App.Writer, s, outs, func(w io.Writer, v any) { printBackends(w, v.([]agent.BackendStatus)) })
}

// localBackends lists the built-in backends for this host, with nsys looked up the way
// `run` would.
func localBackends(c *cli.Context) error {
	format := c.String("output")
	if format != "table" && format != "json" {
		return usagef("-o must be table or json, not %q", format)
	}
	_, nsysErr := nsys.Locate(c.String("nsys"))
	entries, err := backends.Builtin(c.Context, nil, version, nsysErr)
	if err != nil {
		return err
	}
	reg, err := windows.NewRegistry(entries...)
	if err != nil {
		return err
	}
	builtin := map[string]bool{}
	for _, e := range entries {
		builtin[e.Info.Name] = true
	}
	list := agent.BackendStatuses(reg, builtin)
	if format == "json" {
		enc := json.NewEncoder(c.App.Writer)
		enc.SetIndent("", "  ")
		return enc.Encode(list)
	}
	printBackends(c.App.Writer, list)
	return nil
}

func printBackends(w io.Writer, list []agent.BackendStatus) {
	tw := newTable(w)
	fmt.Fprintln(tw, "BACKEND\tVERSION\tKIND\tCAPABILITIES\tSTATUS")
	for _, b := range list {
		kind := "plugin"
		if b.Builtin {
			kind = "built-in"
		}
		status := "usable"
		if b.Default {
			status = "usable (default)"
		}
		if b.Unavailable != "" {
			status = "unavailable"
		}
		caps := make([]string, 0, len(b.Capabilities))
		for _, c := range b.Capabilities {
			caps = append(caps, string(c))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", b.Name, b.Version, kind, strings.Join(caps, ","), status)
	}
	_ = tw.Flush()
	for _, b := range list {
		if b.Unavailable != "" {
			fmt.Fprintf(w, "%s: %s\n", b.Name, b.Unavailable)
		}
	}
}
