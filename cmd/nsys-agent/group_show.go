package main

import (
	"fmt"
	"strings"

	"github.com/nsys-agent/nsys-agent/agent/fleet"
	"github.com/nsys-agent/nsys-agent/agent/windows"
	"github.com/urfave/cli/v2"
)

// groupView is what `show GROUP -o json` prints: the group's record (the newest a member
// holds; absent when none does) and each agent's window of the group now.
type groupView struct {
	ID      string               `json:"id"`
	Record  *windows.GroupRecord `json:"record,omitempty"`
	Members []groupMemberView    `json:"members"`
}

type groupMemberView struct {
	Agent  string            `json:"agent"`
	Host   string            `json:"host"` // its folder in a pulled group
	Window *windows.Manifest `json:"window,omitempty"`
	Error  string            `json:"error,omitempty"` // the agent did not answer
}

// runShowGroup shows group id on every agent given.
func runShowGroup(c *cli.Context, id string) error {
	s, err := setupClients(c, "output")
	if err != nil {
		return err
	}
	defer s.close()
	outs, rec := groupWindows(c.Context, s, id, "show")
	view := groupView{ID: id, Record: rec}
	now := map[string]memberNow{}
	var failed []string
	for _, o := range outs {
		mv := groupMemberView{Agent: o.agent, Host: fleet.HostDir(o.agent)}
		if m, ok := o.value.(*windows.Manifest); ok {
			mv.Window, now[o.agent] = m, memberNow{window: m}
		}
		if o.err != nil {
			mv.Error, now[o.agent] = o.err.Error(), memberNow{err: o.err.Error()}
			failed = append(failed, o.agent+": "+o.err.Error())
		}
		view.Members = append(view.Members, mv)
	}
	if s.json() {
		writeJSON(c.App.Writer, view)
	} else {
		table := rec
		if table == nil {
			table = &windows.GroupRecord{ID: id}
		}
		// Every agent asked gets a row, in the record or not.
		for _, o := range outs {
			known := false
			for _, m := range table.Members {
				if base, err := normalizeAgentURL(m.Agent); err == nil && base == o.agent {
					known = true
				}
			}
			if !known {
				table.Members = append(table.Members, windows.GroupMember{Agent: o.agent, Host: fleet.HostDir(o.agent)})
			}
		}
		writeGroupTable(c.App.Writer, table, now)
		if rec == nil && len(failed) < len(outs) {
			fmt.Fprintf(c.App.Writer, "no member holds the group's record (did its start finish?): clock offsets and skew are unknown\n")
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("show %s: %d of %d agents failed: %s", id, len(failed), len(outs), strings.Join(failed, "; "))
	}
	return nil
}
