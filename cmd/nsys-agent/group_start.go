package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nsys-agent/nsys-agent/agent/fleet"
	"github.com/nsys-agent/nsys-agent/agent/windows"
	"github.com/urfave/cli/v2"
)

// groupStartWanted says whether start opens a group window: two or more agents and
// --sync or --at. One agent, or neither flag, keeps the plain start (each agent at once).
func groupStartWanted(c *cli.Context, s *clientSetup, req windows.CreateRequest) (bool, error) {
	sync, at := c.Bool("sync"), c.String("at") != ""
	if sync && at {
		return false, usagef("start: --sync and --at: give one (--sync picks a start time itself, --at is yours)")
	}
	group := (sync || at) && len(s.agents) >= 2
	if c.IsSet("group") {
		if !group {
			return false, usagef("start: --group names a group window: give two or more agents (--agent A,B) and --sync or --at")
		}
		if id := c.String("group"); !windows.ValidGroupID(id) {
			return false, usagef("start: --group %q: want g- and then letters, digits, '.', '_', '-' (at most 64 in all, no '..'), e.g. g-prefill-1", id)
		}
	}
	if c.IsSet("start-timeout") && c.Duration("start-timeout") <= 0 {
		return false, usagef("start: --start-timeout %s: want more than 0", c.Duration("start-timeout"))
	}
	if c.IsSet("min-members") {
		if n := c.Int("min-members"); !group || n < 1 || n > len(s.agents) {
			return false, usagef("start: --min-members %d: with --sync or --at and several agents, 1 to the number of agents (%d)", n, len(s.agents))
		}
	}
	return group, nil
}

// runGroupStart opens req on every agent at one instant through agent/fleet and prints
// the group's record.
func runGroupStart(c *cli.Context, s *clientSetup, req windows.CreateRequest) error {
	var at time.Time
	if req.StartAt != "" {
		at, _ = time.Parse(time.RFC3339, req.StartAt) // createRequest wrote it
		req.StartAt = ""                              // the coordinator writes each member's
	}
	coord := fleet.New(fleet.Options{AckTimeout: c.Duration("start-timeout")})
	res, err := coord.Start(c.Context, groupMembers(s), fleet.Spec{Group: c.String("group"), At: at, Request: req, MinMembers: c.Int("min-members")})
	var se *fleet.StartError
	switch {
	case errors.As(err, &se):
		s.warn(se.Warnings)
		printGroupRecord(c.App.Writer, s, &se.Record)
		return groupStartError(s, se)
	case errors.Is(err, fleet.ErrInvalid):
		return usagef("start: %s", strings.TrimPrefix(err.Error(), fleet.ErrInvalid.Error()+": "))
	case err != nil:
		return err
	}
	s.warn(res.Warnings)
	if len(res.LeftOut) > 0 {
		var why []string
		for _, f := range res.LeftOut {
			why = append(why, f.Error())
		}
		s.warn([]string{fmt.Sprintf("group %s started with %d of %d agents (--min-members %d); left out: %s",
			res.Record.ID, len(s.agents)-len(res.LeftOut), len(s.agents), c.Int("min-members"), strings.Join(why, "; "))})
	}
	rec := res.Record
	if c.Bool("wait") {
		err = waitGroup(c.Context, s, &rec)
	}
	printGroupRecord(c.App.Writer, s, &rec)
	return err
}

// groupStartError is a failed group start as the person at the terminal needs it: who
// failed and why (the StartError says it), and the command that stops a window left
// behind.
func groupStartError(s *clientSetup, se *fleet.StartError) error {
	if len(se.NotStopped) == 0 {
		return se
	}
	var agents []string
	for _, f := range se.NotStopped {
		agents = append(agents, f.Agent)
	}
	return fmt.Errorf("%w; once they answer, run %s", se, s.commandOn(agents, "stop", se.Record.ID))
}

// waitGroup follows every member's window to its end (at most groupFanOut at once) and
// records the final states in rec; an error names the members whose window did not end
// ready.
func waitGroup(ctx context.Context, s *clientSetup, rec *windows.GroupRecord) error {
	leftOut := map[string]bool{} // members a --min-members start went on without
	for _, m := range rec.Members {
		if m.Error != "" && m.StartedAt == nil {
			leftOut[m.Agent] = true
		}
	}
	outs := boundedFanOut(ctx, s, groupFanOut, func(ctx context.Context, ac *apiClient) (any, error) {
		if leftOut[ac.base] {
			return nil, nil
		}
		id := rec.ID
		for _, m := range rec.Members {
			if m.Agent == ac.base && m.Window != "" {
				id = m.Window
			}
		}
		return followWindow(ctx, ac, id, nil, 0)
	})
	var failed []string
	for _, o := range outs {
		if leftOut[o.agent] {
			continue
		}
		if m, ok := o.value.(*windows.Manifest); ok {
			for i := range rec.Members {
				if rec.Members[i].Agent == o.agent {
					rec.Members[i].State, rec.Members[i].Error = string(m.State), m.Error
				}
			}
		}
		if o.err != nil {
			failed = append(failed, o.agent+": "+o.err.Error())
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("group %s: %d of %d windows did not end ready: %s", rec.ID, len(failed), len(outs), strings.Join(failed, "; "))
	}
	return nil
}

// warn writes warnings on stderr.
func (s *clientSetup) warn(warnings []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, w := range warnings {
		fmt.Fprintf(s.stderr, "nsys-agent: warning: %s\n", w)
	}
}

// commandOn is a suggested command for these agents, with the flags that reach them
// the way this command did (token file, TLS files).
func (s *clientSetup) commandOn(agents []string, words ...string) string {
	ac := &apiClient{hintFlags: []string{"--agent", strings.Join(agents, ",")}}
	if len(s.agents) > 0 {
		ac.hintFlags = append(ac.hintFlags, fileFlagsOf(s.agents[0].hintFlags)...)
	}
	return ac.command(words...)
}

// fileFlagsOf drops the --agent pair from a client's hint flags.
func fileFlagsOf(flags []string) []string {
	var out []string
	for i := 0; i < len(flags); i++ {
		if flags[i] == "--agent" {
			i++
			continue
		}
		out = append(out, flags[i])
	}
	return out
}
