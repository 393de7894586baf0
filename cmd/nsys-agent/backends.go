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
	"github.com/nsys-agent/nsys-agent/agent/pluginhost"
	"github.com/nsys-agent/nsys-agent/agent/windows"
	"github.com/nsys-agent/nsys-agent/nsys"
)

func backendsCommand() *cli.Command {
	return clientCommand(&cli.Command{
		Name:      "backends",
		Usage:     "list the capture backends, built in and plugins, and why any cannot be used",
		ArgsUsage: " ",
		Description: `Without --agent, lists the backends built into this binary and the plugins in
--plugin-dir (default: the folder of this binary), each started and asked for its Info
as the agent would, and whether this host can use them (nsys found?). Plugin files that
would not be run are listed under "skipped" with why (not executable, writable by others,
another backend's name, built for another API version, ...). With --agent (or
NSYS_AGENT_ADDR), asks running agents which backends their windows can use: a session
armed with --arm cuda-profiler, for one, takes no nsys windows.

   nsys-agent backends
   nsys-agent backends --plugin-dir /usr/local/lib/nsys-agent
   nsys-agent backends --agent gpu1:7477,gpu2:7477 -o json`,
		Flags:  clientFlags(nsysFlag(), pluginDirFlag()),
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
// `run` would, and the plugins in the plugin dir, loaded (and ended) the way `run` would.
func localBackends(c *cli.Context) error {
	format := c.String("output")
	if format != "table" && format != "json" {
		return usagef("-o must be table or json, not %q", format)
	}
	dir, err := pluginDir(c)
	if err != nil {
		return err
	}
	_, nsysErr := nsys.Locate(c.String("nsys"))
	entries, err := backends.Builtin(c.Context, nil, version, nsysErr)
	if err != nil {
		return err
	}
	host, err := agent.LoadPlugins(c.Context, dir, pluginhost.Options{})
	if err != nil {
		if c.IsSet("plugin-dir") {
			return usagef("--plugin-dir: %v", err)
		}
		return err
	}
	defer host.Close()
	if entries, err = agent.PluginEntries(c.Context, entries, host.Plugins(), nil); err != nil {
		return err
	}
	reg, err := windows.NewRegistry(entries...)
	if err != nil {
		return err
	}
	builtin := map[string]bool{}
	for _, n := range agent.BuiltinNames {
		builtin[n] = true
	}
	list := agent.BackendStatuses(reg, agent.Origins{Builtin: builtin, Plugins: host})
	if format == "json" {
		enc := json.NewEncoder(c.App.Writer)
		enc.SetIndent("", "  ")
		return enc.Encode(list)
	}
	printBackends(c.App.Writer, list)
	return nil
}

// printBackends is the table of backends, then why each unusable one is, then the
// plugin files that were skipped and why.
func printBackends(w io.Writer, list []agent.BackendStatus) {
	tw := newTable(w)
	fmt.Fprintln(tw, "BACKEND\tVERSION\tSOURCE\tCAPABILITIES\tOPTIONS\tCAPTURES WITH\tSTATUS")
	var skipped []agent.BackendStatus
	for _, b := range list {
		if b.Skipped {
			skipped = append(skipped, b)
			continue
		}
		source := b.Source
		if source == "" { // an agent older than plugins
			source = "plugin"
			if b.Builtin {
				source = agent.SourceBuiltin
			}
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
		opts := make([]string, 0, len(b.Options))
		for _, o := range b.Options {
			opts = append(opts, o.Name)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", b.Name, b.Version, source, orDash(strings.Join(caps, ",")),
			orDash(strings.Join(opts, ",")), orDash(b.CapturesWith), status)
	}
	_ = tw.Flush()
	for _, b := range list {
		if b.Unavailable != "" && !b.Skipped {
			fmt.Fprintf(w, "%s: %s\n", b.Name, b.Unavailable)
		}
	}
	if len(skipped) > 0 {
		fmt.Fprintln(w, "\nskipped plugin files:")
		for _, b := range skipped {
			fmt.Fprintf(w, "  %s: %s\n", b.Source, strings.ReplaceAll(b.Unavailable, "\n", "\n    "))
		}
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
