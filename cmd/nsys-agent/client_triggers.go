package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/nsys-agent/nsys-agent/agent/triggers"
)

func triggersCommand() *cli.Command {
	return clientCommand(&cli.Command{
		Name:      "triggers",
		Usage:     "list the agent's triggers: what each watches, the windows it opened, why it did not fire",
		ArgsUsage: " ",
		Description: `Lists the triggers that open windows by themselves (run --trigger-log, --trigger-metric,
or POST /v1/triggers): the condition, how many windows each opened of its maximum and
when the last one was, the newest value its source gave, and, when its condition held
and no window opened, why: cooldown, max-reached, window-active (another window was
capturing), target-down, start-failed.

   nsys-agent triggers
   nsys-agent triggers -o json`,
		Flags: clientFlags(),
		Action: func(c *cli.Context) error {
			return runQuery(c, 0, func(ctx context.Context, ac *apiClient, _ []string) (any, error) {
				var ts []triggers.Status
				if err := ac.call(ctx, http.MethodGet, "/v1/triggers", nil, &ts); err != nil {
					return nil, err
				}
				if ts == nil {
					ts = []triggers.Status{}
				}
				return ts, nil
			}, func(w io.Writer, _ *apiClient, v any) { printTriggers(w, v.([]triggers.Status), time.Now()) })
		},
	})
}

func printTriggers(w io.Writer, ts []triggers.Status, now time.Time) {
	if len(ts) == 0 {
		fmt.Fprintln(w, "no triggers; arm one with `nsys-agent run --trigger-log REGEX` (or --trigger-metric 'NAME<X'), or POST /v1/triggers")
		return
	}
	tw := newTable(w)
	fmt.Fprintln(tw, "TRIGGER\tCONDITION\tWINDOWS\tFIRED\tLAST FIRE\tLAST VALUE\tNOT FIRED")
	for _, t := range ts {
		last := "-"
		if n := len(t.Fires); n > 0 {
			f := t.Fires[n-1]
			last = formatTime(f.At) + " " + f.Window
		}
		value := "-"
		if t.LastValue != nil {
			value = fmt.Sprintf("%g", *t.LastValue)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s, cooldown %s\t%d/%d\t%s\t%s\t%s\n", t.Name, t.Condition, t.Duration, t.Cooldown,
			t.Fired, t.Max, last, value, notFired(t, now))
	}
	tw.Flush()
	for _, t := range ts {
		if t.SourceError != "" {
			fmt.Fprintf(w, "%s cannot read its source: %s\n", t.Name, t.SourceError)
		}
	}
}

// notFired says why the trigger is not firing now, then how often each reason held.
func notFired(t triggers.Status, now time.Time) string {
	var now1 string
	switch {
	case t.Fired >= t.Max:
		now1 = "max reached"
	case t.CooldownUntil != nil && now.Before(*t.CooldownUntil):
		now1 = "cooling down for " + humanDuration(t.CooldownUntil.Sub(now).Round(time.Second))
	}
	var counts []string
	for r, n := range t.Skipped {
		counts = append(counts, fmt.Sprintf("%s ×%d", r, n))
	}
	slices.Sort(counts)
	parts := slices.DeleteFunc([]string{now1, strings.Join(counts, ", ")}, func(s string) bool { return s == "" })
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, "; ")
}
