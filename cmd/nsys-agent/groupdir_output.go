package main

import (
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"time"

	"github.com/nsys-agent/nsys-agent/torchprof"
)

// groupInfo is what merge and analyze say about a group folder (-o json "group").
type groupInfo struct {
	Dir         string     `json:"dir"`
	ID          string     `json:"id,omitempty"` // "" without group.json
	Coordinator string     `json:"coordinator,omitempty"`
	Hosts       []hostInfo `json:"hosts"`
	// Aligned: every host's clock offset is known and applied.
	Aligned bool     `json:"aligned"`
	Missing []string `json:"missing_hosts,omitempty"`
	Ignored []string `json:"ignored_folders,omitempty"`
	LeftOut []string `json:"left_out_hosts,omitempty"` // "host: why"
}

type hostInfo struct {
	Host          string `json:"host"`
	Dir           string `json:"dir"`
	Window        string `json:"window,omitempty"`
	Ranks         int    `json:"ranks"`
	OffsetKnown   bool   `json:"offset_known"`
	OffsetNs      int64  `json:"offset_ns"`
	UncertaintyNs int64  `json:"uncertainty_ns,omitempty"`
}

// info says which hosts were read; s, the analysis of an nsys group (nil otherwise),
// gives their ranks and alignment, which only the exports hold.
func (g *groupFolder) info(s *torchprof.Summary) *groupInfo {
	gi := &groupInfo{Dir: g.Dir, Missing: g.Missing, Ignored: g.Ignored, LeftOut: g.LeftOut}
	if g.Record != nil {
		gi.ID, gi.Coordinator = g.Record.ID, g.Record.Coordinator
	}
	for _, h := range g.Hosts {
		hi := hostInfo{Host: h.Name, Dir: h.Dir, Ranks: len(h.Files), OffsetKnown: offsetKnown(h.Member)}
		if h.Member != nil {
			hi.Window, hi.OffsetNs, hi.UncertaintyNs = h.Member.Window, h.Member.OffsetNs, h.Member.UncertaintyNs
		}
		gi.Hosts = append(gi.Hosts, hi)
	}
	gi.Aligned = len(torchprof.UnalignedHosts(g.files())) == 0
	if g.isNsys() && s != nil {
		for i := range gi.Hosts {
			for _, r := range s.Ranks {
				if r.Host == gi.Hosts[i].Host {
					gi.Hosts[i].Ranks++
				}
			}
		}
		gi.Aligned = len(s.UnalignedHosts) == 0
	}
	return gi
}

// printGroup says, for people, which hosts were read and whether their clocks were
// aligned.
func printGroup(w io.Writer, g *groupInfo) {
	what := "group folder " + g.Dir + " (no " + groupRecordName + ")"
	if g.ID != "" {
		what = "group " + g.ID
		if g.Coordinator != "" {
			what += " (coordinator " + g.Coordinator + ")"
		}
	}
	hosts := "hosts"
	if len(g.Hosts) == 1 {
		hosts = "host"
	}
	fmt.Fprintf(w, "%s: %d %s\n", what, len(g.Hosts), hosts)
	for _, h := range g.Hosts {
		off := "clock offset unknown"
		if h.OffsetKnown {
			off = "clock " + signedDuration(h.OffsetNs) + " from the coordinator's"
			if h.UncertaintyNs > 0 {
				off += " (±" + time.Duration(h.UncertaintyNs).String() + ")"
			}
		}
		ranks := "ranks"
		if h.Ranks == 1 {
			ranks = "rank "
		}
		fmt.Fprintf(w, "  %-24s %3d %s  %s\n", h.Host, h.Ranks, ranks, off)
	}
	for _, m := range g.Missing {
		fmt.Fprintf(w, "  %-24s not pulled: no folder %s\n", m, filepath.Join(g.Dir, m))
	}
	for _, m := range g.LeftOut {
		host, why, _ := strings.Cut(m, ": ")
		fmt.Fprintf(w, "  %-24s left out at the group's start: %s\n", host, why)
	}
	for _, m := range g.Ignored {
		fmt.Fprintf(w, "  %-24s left out: %s does not list it\n", m, groupRecordName)
	}
	switch {
	case len(g.Hosts) < 2:
	case g.Aligned:
		fmt.Fprintln(w, "timeline: aligned on the coordinator's clock")
	default:
		fmt.Fprintln(w, "timeline: "+unalignedNote(g))
	}
}

// unalignedNote says why the hosts' ranks are not on one clock, and what to do.
func unalignedNote(g *groupInfo) string {
	var hosts []string
	for _, h := range g.Hosts {
		if !h.OffsetKnown {
			hosts = append(hosts, h.Host)
		}
	}
	why := "no " + groupRecordName + " in " + g.Dir
	if g.ID != "" {
		why = groupRecordName + " has no measured clock offset for them"
	}
	return fmt.Sprintf("UNALIGNED: the clock offsets of %s are unknown (%s): each host's ranks are on its own clock, off from the others by as much as the hosts' clocks disagree; pull the group with nsys-agent pull GROUP to get them",
		strings.Join(hosts, ", "), why)
}

func signedDuration(ns int64) string {
	if ns >= 0 {
		return "+" + time.Duration(ns).String()
	}
	return time.Duration(ns).String()
}
