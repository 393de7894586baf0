package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/nsys-agent/nsys-agent/agent/fleet"
	"github.com/nsys-agent/nsys-agent/agent/windows"
	"github.com/nsys-agent/nsys-agent/internal/atomicfile"
	"github.com/urfave/cli/v2"
)

// groupFileName is the group's record in a pulled group folder, beside one folder per host.
const groupFileName = "group.json"

// groupPullResult is what `pull GROUP -o json` prints.
type groupPullResult struct {
	Group     string               `json:"group"`
	Dir       string               `json:"dir"`
	GroupFile string               `json:"group_file,omitempty"` // "" when it could not be written
	Record    *windows.GroupRecord `json:"record,omitempty"`
	Agents    []agentResultJSON    `json:"agents"`
}

// runPullGroup pulls every agent's window of group id into DIR/<host>/ (files and
// manifest.json, no window folder: a host has one window of a group) and writes
// DIR/group.json, the group's record. An agent that fails leaves the others' files.
func runPullGroup(c *cli.Context, s *clientSetup, id, dir string, o pullOptions) error {
	groupPath := filepath.Join(dir, groupFileName)
	if !o.force && !ownGroupFile(groupPath, id) {
		return &clientError{Message: fmt.Sprintf("%s: not group %s's record, kept; nothing was downloaded", groupPath, id),
			Hint: "to replace it, add --force; or pull into another --dir"}
	}
	hosts := map[string]string{}
	for _, ac := range s.agents {
		h := fleet.HostDir(ac.base)
		if err := checkLocalName(h); err != nil || h == groupFileName {
			return usagef("pull: agent %s gives no usable folder name (%q)", ac.base, h)
		}
		if other, dup := hosts[h]; dup {
			return usagef("pull: agents %s and %s would share the folder %s: give each host once", other, ac.base, h)
		}
		hosts[h] = ac.base
	}
	outs := boundedFanOut(c.Context, s, groupFanOut, func(ctx context.Context, ac *apiClient) (any, error) {
		o := o
		o.dir, o.flat = filepath.Join(dir, fleet.HostDir(ac.base)), true
		o.again = []string{"pull", id, "--dir", dir}
		res, err := pullWindow(ctx, ac, id, o)
		if err != nil {
			return nil, err
		}
		return res, nil
	})
	skipLeftOut(outs)

	res := groupPullResult{Group: id, Dir: dir}
	var failed []string
	for _, o := range outs {
		row := agentResultJSON{Agent: o.agent, OK: o.err == nil, Result: o.value}
		if o.err != nil {
			row.Error = o.err.Error()
			if ce, ok := o.err.(*clientError); ok {
				row.Code = ce.Code
			}
			failed = append(failed, o.agent+": "+o.err.Error())
		}
		res.Agents = append(res.Agents, row)
	}
	var writeErr error
	if len(failed) < len(outs) {
		rec, notes := groupFile(id, outs)
		s.noteMissingMembers(rec, "pull")
		for _, n := range notes {
			fmt.Fprintf(s.stderr, "nsys-agent: %s\n", n)
		}
		if writeErr = writeGroupFile(groupPath, rec); writeErr == nil {
			res.GroupFile = groupPath
		}
		res.Record = rec
	}
	if s.json() {
		writeJSON(c.App.Writer, res)
	} else {
		printGroupPull(c.App.Writer, &res, outs)
	}
	switch {
	case len(failed) > 0:
		msg := fmt.Sprintf("pull %s: %d of %d agents failed: %s", id, len(failed), len(outs), strings.Join(failed, "; "))
		if len(failed) < len(outs) {
			msg += "; the others' files are in " + dir
		}
		return errors.New(msg)
	case writeErr != nil:
		return fmt.Errorf("pull %s: every window was pulled, but writing %s failed: %w", id, groupPath, writeErr)
	}
	return nil
}

// groupFile is group.json's record: the newest the pulled members hold, with each
// pulled member's Host set to the folder its files went into. A member the record lacks
// (its start never finished, or the record is another coordinator's) is added, marked
// as having no measured offset (RTTNs 0).
func groupFile(id string, outs []outcome) (*windows.GroupRecord, []string) {
	var notes []string
	pulled := make([]outcome, 0, len(outs))
	for _, o := range outs {
		if r, ok := o.value.(*pullResult); ok && r.manifest != nil {
			pulled = append(pulled, outcome{agent: o.agent, value: r.manifest})
		}
	}
	rec := newestRecord(pulled)
	if rec == nil {
		rec = &windows.GroupRecord{ID: id, State: "unknown",
			Error: "no member holds the group's record (did its start finish?): clock offsets are unknown"}
		notes = append(notes, fmt.Sprintf("group %s: no member holds the group's record: %s lists the members without clock offsets, so their timelines cannot be aligned", id, groupFileName))
	}
	for _, o := range pulled {
		m := o.value.(*windows.Manifest)
		host := fleet.HostDir(o.agent)
		found := false
		for i := range rec.Members {
			if base, err := normalizeAgentURL(rec.Members[i].Agent); err == nil && base == o.agent {
				rec.Members[i].Host, found = host, true
				if rec.Members[i].Window == "" {
					rec.Members[i].Window = m.ID
				}
			}
		}
		if !found {
			rec.Members = append(rec.Members, windows.GroupMember{Agent: o.agent, Host: host, Window: m.ID, State: string(m.State),
				Error: "not in the group's record: its clock offset was not measured"})
			if rec.State != "unknown" {
				notes = append(notes, fmt.Sprintf("group %s: %s is not in the group's record: its clock offset is unknown", id, o.agent))
			}
		}
	}
	return rec, notes
}

// ownGroupFile reports whether path is absent or group id's record, which pull wrote
// before and may refresh.
func ownGroupFile(path, id string) bool {
	return ownJSON(path, id, func(r *windows.GroupRecord) string { return r.ID })
}

func writeGroupFile(path string, rec *windows.GroupRecord) error {
	b, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(path, append(b, '\n'), 0o600)
}

func printGroupPull(w io.Writer, res *groupPullResult, outs []outcome) {
	tw := newTable(w)
	fmt.Fprintln(tw, "AGENT\tFOLDER\tWINDOW\tFILES\tSIZE\tRESULT")
	var files int
	var bytes int64
	hosts := 0
	for _, o := range outs {
		folder := fleet.HostDir(o.agent)
		if r, ok := o.value.(*pullResult); ok {
			state := "ok"
			if r.State != string(windows.StateReady) {
				state = r.State
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", o.agent, folder, r.Window, len(r.Files), humanBytes(r.Bytes), state)
			files, bytes, hosts = files+len(r.Files), bytes+r.Bytes, hosts+1
			continue
		}
		if l, ok := o.value.(leftOut); ok {
			fmt.Fprintf(tw, "%s\t%s\t-\t-\t-\tleft out at the group's start: %s\n", o.agent, folder, l.Reason)
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t-\t-\t-\terror: %v\n", o.agent, folder, o.err)
	}
	tw.Flush()
	where := res.Dir
	if res.GroupFile != "" {
		where += " (the group's record: " + res.GroupFile + ")"
	}
	fmt.Fprintf(w, "group %s: %d of %d hosts, %d files, %s, verified, in %s\n", res.Group, hosts, len(outs), files, humanBytes(bytes), where)
}
