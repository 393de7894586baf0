package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/nsys-agent/nsys-agent/agent/windows"
)

// printGroupRecord prints a group's record: as it is with -o json, else as a table.
func printGroupRecord(w io.Writer, s *clientSetup, rec *windows.GroupRecord) {
	if s.json() {
		writeJSON(w, rec)
		return
	}
	writeGroupTable(w, rec, nil)
}

// memberNow is a member's window as an agent answers now (show), or why it did not.
type memberNow struct {
	window *windows.Manifest
	err    string
}

// writeGroupTable prints the group's fields, one row per member, and the skew. now, when
// given, holds each member's window as it is now, by agent URL: its state, files and
// size replace the record's state.
func writeGroupTable(w io.Writer, rec *windows.GroupRecord, now map[string]memberNow) {
	tw := newTable(w)
	fmt.Fprintf(tw, "GROUP\t%s\n", rec.ID)
	state := dash(rec.State)
	if now != nil && rec.State != "" {
		state += " (at its start)"
	}
	fmt.Fprintf(tw, "STATE\t%s\n", state)
	if !rec.StartAt.IsZero() {
		fmt.Fprintf(tw, "START AT\t%s (on %s's clock, the times below too)\n", formatClock(rec.StartAt, true), dash(rec.Coordinator))
	}
	if !rec.Whole() {
		fmt.Fprintf(tw, "MEMBERS\t%d, %d of them below (the agents given); the whole record is kept by %s\n", rec.MemberCount, len(rec.Members), strings.Join(rec.Keepers, ", "))
	}
	tw.Flush()
	fmt.Fprintln(w)

	tw = newTable(w)
	withErr := false
	for _, m := range rec.Members {
		withErr = withErr || m.Error != "" || now[m.Agent].err != ""
	}
	header := "AGENT\tWINDOW\tCLOCK OFFSET\tSTARTED\tSTATE"
	if now != nil {
		header += "\tFILES\tSIZE"
	}
	if withErr {
		header += "\tERROR"
	}
	fmt.Fprintln(tw, header)
	for _, m := range rec.Members {
		started := "-"
		if m.StartedAt != nil {
			started = formatClock(*m.StartedAt, false)
			if !rec.StartAt.IsZero() {
				started += " (" + signed(m.StartedAt.Sub(rec.StartAt)) + ")"
			}
		}
		offset := "-"
		if m.RTTNs > 0 {
			offset = signed(time.Duration(m.OffsetNs)) + " ±" + precise(time.Duration(m.UncertaintyNs))
		}
		row := fmt.Sprintf("%s\t%s\t%s\t%s\t%s", m.Agent, dash(m.Window), offset, started, dash(m.State))
		errText := m.Error
		if now != nil {
			n := now[m.Agent]
			files, size := "-", "-"
			if n.window != nil {
				row = fmt.Sprintf("%s\t%s\t%s\t%s\t%s", m.Agent, n.window.ID, offset, started, n.window.State)
				files, size = fmt.Sprint(len(n.window.Artifacts)), humanBytes(artifactBytes(n.window))
				errText = n.window.Error
			} else if n.err != "" {
				row = fmt.Sprintf("%s\t%s\t%s\t%s\t%s", m.Agent, dash(m.Window), offset, started, "unreachable")
				errText = n.err
			}
			row += "\t" + files + "\t" + size
		}
		if withErr {
			row += "\t" + dash(errText)
		}
		fmt.Fprintln(tw, row)
	}
	tw.Flush()

	tw = newTable(w)
	fmt.Fprintln(w)
	if skew := groupSkew(rec); skew != "" {
		fmt.Fprintf(tw, "SKEW\t%s\n", skew)
	}
	if rec.Error != "" && now != nil {
		// show: why the group failed (start prints it on stderr as its error).
		fmt.Fprintf(tw, "ERROR\t%s\n", rec.Error)
	}
	tw.Flush()
}

// groupSkew is "1.2ms between the captures' starts, 0.4ms between the timers", or ""
// when fewer than two members started.
func groupSkew(rec *windows.GroupRecord) string {
	started := 0
	for _, m := range rec.Members {
		if m.StartedAt != nil {
			started++
		}
	}
	if started < 2 {
		return ""
	}
	s := precise(time.Duration(rec.SkewNs)) + " between the captures' starts"
	if rec.FireSkewNs > 0 {
		s += ", " + precise(time.Duration(rec.FireSkewNs)) + " between the timers"
	}
	var worst int64
	for _, m := range rec.Members {
		worst = max(worst, m.UncertaintyNs)
	}
	if worst > 0 {
		s += " (clock offsets known to ±" + precise(time.Duration(worst)) + ")"
	}
	return s
}

// formatClock is a time to the microsecond, with the date or without.
func formatClock(t time.Time, date bool) string {
	if date {
		return t.Local().Format("2006-01-02 15:04:05.000000")
	}
	return t.Local().Format("15:04:05.000000")
}

// signed is a duration with its sign, to the microsecond: +1.5ms, -3.000012s.
func signed(d time.Duration) string {
	if d >= 0 {
		return "+" + precise(d)
	}
	return "-" + precise(-d)
}

// precise is a duration to the microsecond (below one, as it is).
func precise(d time.Duration) string {
	if d < time.Microsecond && d > -time.Microsecond {
		return d.String()
	}
	return d.Round(time.Microsecond).String()
}
