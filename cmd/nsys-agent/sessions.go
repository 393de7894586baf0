package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/nsys-agent/nsys-agent/nsys"
)

func nsysFlag() cli.Flag {
	return &cli.StringFlag{Name: "nsys", Usage: "path of the nsys binary (default: $NSYS_AGENT_NSYS, PATH, known install dirs)", EnvVars: []string{nsys.EnvNsys}}
}

func sessionsCommand() *cli.Command {
	return &cli.Command{
		Name:  "sessions",
		Usage: "list the nsys sessions on this host, parsed",
		Description: `Runs 'nsys sessions list' with the same nsys the agent uses and prints its rows.
Sessions are system-wide: other users' and unrelated sessions are listed too.

   nsys-agent sessions
   nsys-agent sessions -o json     # [{"id","time","state","launch","name"}]`,
		Flags: []cli.Flag{
			nsysFlag(),
			outputFlag("output", "o"),
		},
		Action: func(c *cli.Context) error {
			format := c.String("output")
			if format != "table" && format != "json" {
				return usagef("-o must be table or json, not %q", format)
			}
			path, err := nsys.Locate(c.String("nsys"))
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(c.Context, 30*time.Second)
			defer cancel()
			list, err := nsys.ListSessions(ctx, nsys.NewExecRunner(path))
			if err != nil {
				return err
			}
			return printSessions(c.App.Writer, format, list)
		},
	}
}

func printSessions(w io.Writer, format string, list []nsys.Session) error {
	if format == "json" {
		if list == nil {
			list = []nsys.Session{}
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(list)
	}
	if len(list) == 0 {
		fmt.Fprintln(w, "no nsys sessions on this host")
		return nil
	}
	tw := newTable(w)
	fmt.Fprintln(tw, "ID\tTIME\tSTATE\tLAUNCH\tNAME")
	for _, s := range list {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", s.ID, s.Time, s.State, s.Launch, s.Name)
	}
	return tw.Flush()
}
