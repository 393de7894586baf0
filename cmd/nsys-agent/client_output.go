package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/nsys-agent/nsys-agent/agent"
	"github.com/nsys-agent/nsys-agent/agent/cost"
	"github.com/nsys-agent/nsys-agent/agent/triggers"
	"github.com/nsys-agent/nsys-agent/agent/windows"
	"github.com/nsys-agent/nsys-agent/plugins/layerwise"
	"github.com/nsys-agent/nsys-agent/torchprof/verdict"
)

// outcome is one agent's answer to a command. A value may come with an error (a stop
// whose window failed still has its manifest).
type outcome struct {
	agent string
	value any
	err   error
}

// fanOut runs fn on every agent in parallel and returns the outcomes in --agent order.
func fanOut(ctx context.Context, s *clientSetup, fn func(ctx context.Context, c *apiClient) (any, error)) []outcome {
	outs := make([]outcome, len(s.agents))
	var wg sync.WaitGroup
	for i, c := range s.agents {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v, err := fn(ctx, c)
			if rv := reflect.ValueOf(v); v != nil && rv.Kind() == reflect.Pointer && rv.IsNil() {
				// A nil pointer in an interface is not a nil interface: it would print as
				// "null" or crash a printer.
				v = nil
			}
			outs[i] = outcome{agent: c.base, value: v, err: err}
		}()
	}
	wg.Wait()
	return outs
}

// agentResultJSON is one row of -o json with several agents.
type agentResultJSON struct {
	Agent  string `json:"agent"`
	OK     bool   `json:"ok"`
	Error  string `json:"error,omitempty"`
	Code   string `json:"code,omitempty"`
	Result any    `json:"result,omitempty"`
}

// report prints the outcomes. One agent: its value as JSON or through printOne, and its
// error returned as is. Several: a per-agent result table (or a JSON array), and an
// error if any agent failed.
func report(stdout io.Writer, s *clientSetup, outs []outcome, printOne func(w io.Writer, v any)) error {
	if len(outs) == 1 {
		o := outs[0]
		if o.value != nil {
			switch l, isLeftOut := o.value.(leftOut); {
			case s.json():
				writeJSON(stdout, o.value)
			case isLeftOut: // a group's member: the command's own printer knows windows only
				fmt.Fprintf(stdout, "%s: left out at the group's start: %s\n", o.agent, l.Reason)
			default:
				printOne(stdout, o.value)
			}
		}
		return o.err
	}
	failed := 0
	rows := make([]agentResultJSON, len(outs))
	for i, o := range outs {
		rows[i] = agentResultJSON{Agent: o.agent, OK: o.err == nil, Result: o.value}
		if o.err != nil {
			failed++
			rows[i].Error = o.err.Error()
			if ce, ok := o.err.(*clientError); ok {
				rows[i].Code = ce.Code
			}
		}
	}
	if s.json() {
		writeJSON(stdout, rows)
	} else {
		tw := newTable(stdout)
		fmt.Fprintln(tw, "AGENT\tRESULT\tWINDOW\tSTATE\tDETAIL")
		for _, o := range outs {
			window, state, detail := summarize(o.value)
			result := "ok"
			if o.err != nil {
				result, detail = "error", o.err.Error()
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", o.agent, result, dash(window), dash(state), detail)
		}
		tw.Flush()
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d agents failed", failed, len(outs))
	}
	return nil
}

// summarize gives the window, state and a short detail of a command's value for the
// per-agent table.
func summarize(v any) (window, state, detail string) {
	switch at := v.(type) { // windows and show carry the agent's now beside their value
	case windowsAt:
		v = at.list
	case manifestAt:
		v = at.m
	}
	switch v := v.(type) {
	case *windows.Manifest:
		detail = v.Backend
		if v.Progress != nil && !v.State.Terminal() {
			detail = fmt.Sprintf("%s %.0f%%", v.Progress.Step, 100*v.Progress.Fraction)
		}
		if v.Error != "" {
			detail = v.Error
		}
		return v.ID, string(v.State), detail
	case *agent.Status:
		detail = fmt.Sprintf("target %s, %d windows", v.Target.State, v.Windows)
		if v.Active != nil {
			return v.Active.ID, string(v.Active.State), detail
		}
		return "", "", detail
	case []windows.Manifest:
		if len(v) == 0 {
			return "", "", "no windows"
		}
		newest := newestFirst(v)[0]
		return newest.ID, string(newest.State), fmt.Sprintf("%d windows (newest shown)", len(v))
	case leftOut:
		return "", "left out", "left out at the group's start: " + v.Reason
	case []triggers.Status: // issue 15, triggers part
		return "", "", fmt.Sprintf("%d triggers", len(v))
	case *pullResult:
		return v.Window, v.State, fmt.Sprintf("pulled %d files, %s in %s", len(v.Files), humanBytes(v.Bytes), v.Dir)
	}
	return "", "", ""
}

func newestFirst(ws []windows.Manifest) []windows.Manifest {
	out := append([]windows.Manifest(nil), ws...)
	sort.SliceStable(out, func(i, j int) bool { return out[i].CreatedAt.After(out[j].CreatedAt) })
	return out
}

func writeJSON(w io.Writer, v any) {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func newTable(w io.Writer) *tabwriter.Writer { return tabwriter.NewWriter(w, 0, 4, 2, ' ', 0) }

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// humanBytes writes sizes in binary units: 0 B, 980 B, 1.2 KiB, 3.4 MiB.
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// humanDuration rounds to what a person reads: 850ms, 4.2s, 3m12s, 2h5m.
func humanDuration(d time.Duration) string {
	switch {
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return d.Round(100 * time.Millisecond).String()
	case d < time.Hour:
		return d.Round(time.Second).String()
	}
	return strings.TrimSuffix(d.Round(time.Minute).String(), "0s")
}

// windowDuration is how long a window captured, or has been capturing so far.
func windowDuration(m *windows.Manifest, now time.Time) string {
	if m.StartedAt == nil {
		return "-"
	}
	end := now
	if m.StoppedAt != nil {
		end = *m.StoppedAt
	}
	return humanDuration(end.Sub(*m.StartedAt))
}

func artifactBytes(m *windows.Manifest) int64 {
	var n int64
	for _, a := range m.Artifacts {
		n += a.Bytes
	}
	return n
}

func formatTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format("2006-01-02 15:04:05")
}

func rankString(r *int) string {
	if r == nil {
		return "-"
	}
	return fmt.Sprint(*r)
}

// printManifest prints one window as aligned fields and its artifacts.
func printManifest(w io.Writer, m *windows.Manifest) { printManifestAt(w, m, time.Now()) }

// printManifestAt prints m; now is the agent's (CAPTURED of a capturing window).
func printManifestAt(w io.Writer, m *windows.Manifest, now time.Time) {
	tw := newTable(w)
	field := func(k, v string) {
		if v != "" {
			fmt.Fprintf(tw, "%s\t%s\n", k, v)
		}
	}
	field("WINDOW", m.ID)
	field("NAME", m.Name)
	field("STATE", string(m.State))
	field("BACKEND", m.Backend)
	field("TRIGGER", string(m.Trigger))
	if m.Pinned { // retention (issue 15, item 3)
		field("PINNED", "yes: no budget or rm removes it")
	}
	if m.MaxBytes > 0 {
		field("MAX BYTES", humanBytes(m.MaxBytes)+" (stopped early beyond it)")
	}
	if len(m.Options) > 0 {
		var kv []string
		for _, k := range slices.Sorted(maps.Keys(m.Options)) {
			kv = append(kv, k+"="+m.Options[k])
		}
		field("OPTIONS", strings.Join(kv, " "))
	}
	if m.Steps > 0 {
		field("STEPS", fmt.Sprintf("%d engine steps (the server ends the window)", m.Steps))
	}
	field("DURATION", m.Duration)
	field("SESSION", m.Session)
	field("REQUESTED BY", requesterString(&m.RequestedBy))
	if m.StoppedBy != nil {
		field("STOPPED BY", requesterString(m.StoppedBy))
	}
	field("CREATED", formatTime(m.CreatedAt))
	if m.StartedAt != nil {
		field("CAPTURED", windowDuration(m, now))
	}
	if m.Progress != nil && !m.State.Terminal() {
		field("PROGRESS", fmt.Sprintf("%s %.0f%%", m.Progress.Step, 100*m.Progress.Fraction))
	}
	field("ERROR", m.Error)
	for _, warn := range m.Warnings {
		field("WARNING", warn)
	}
	field("GPU TIME", summaryLine(m.Summary))
	if v, ok := readVerdict(m.Verdict); ok {
		field("VERDICT", verdictCell(m.Verdict))
		for _, f := range v.Findings {
			line := f.Message
			if f.Fix != "" {
				line += " — fix: " + f.Fix
			}
			field("  "+f.Level.String(), line)
		}
	}
	cost, slow := costLines(m.Cost)
	field("COST", cost)
	field("SLOWDOWN", slow)
	tw.Flush()
	// A layerwise-nvtx window's summary is a per-layer table (top 10 per rank here; the
	// whole table is the window's layers.csv).
	var layers bytes.Buffer
	if ok, err := layerwise.WriteTable(&layers, m.Summary, 10); ok && err == nil {
		fmt.Fprintln(w)
		_, _ = w.Write(layers.Bytes())
	}
	if len(m.Artifacts) == 0 {
		return
	}
	fmt.Fprintln(w)
	tw = newTable(w)
	fmt.Fprintln(tw, "ARTIFACT\tKIND\tRANK\tSIZE\tSHA256")
	for _, a := range m.Artifacts {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", a.Name, a.Kind, rankString(a.Rank), humanBytes(a.Bytes), shortHash(a.SHA256))
	}
	tw.Flush()
}

// summaryLine is the plain answer of a window's per-rank analysis ("" without one).
func summaryLine(summary any) string {
	if summary == nil {
		return ""
	}
	raw, err := json.Marshal(summary)
	if err != nil {
		return ""
	}
	var s struct {
		Slowest string `json:"slowest_rank"`
		Reason  string `json:"reason"`
	}
	if json.Unmarshal(raw, &s) != nil || s.Slowest == "" {
		return ""
	}
	if s.Reason != "" {
		return s.Reason + " (summary.html)"
	}
	return "slowest rank: " + s.Slowest
}

// costLines says what the window cost the server: "during 0.52x, after 1.00x of 100 tok/s
// before (metric sglang:gen_throughput, after = 1m0s once ready)", and the slowdown
// finding when there is one.
func costLines(raw json.RawMessage) (line, slowdown string) {
	if len(raw) == 0 {
		return "", ""
	}
	var r cost.Result
	if json.Unmarshal(raw, &r) != nil {
		return "", ""
	}
	if r.Before == nil || r.Before.Value <= 0 {
		return r.Note, r.Slowdown
	}
	ratio := func(q *float64) string {
		if q == nil {
			return "-"
		}
		return fmt.Sprintf("%.2fx", *q)
	}
	line = fmt.Sprintf("during %s, after %s of %.4g before (%s; after = %s once ready)",
		ratio(r.DuringRatio), ratio(r.AfterRatio), r.Before.Value, r.Source, r.AfterFor)
	if r.Note != "" {
		line += "; " + r.Note
	}
	return line, r.Slowdown
}

func requesterString(r *windows.Requester) string {
	if r == nil || r.Remote == "" {
		return ""
	}
	switch {
	case r.TokenID != "":
		return fmt.Sprintf("%s (token %s)", r.Remote, r.TokenID)
	case r.Trigger != "" && r.Trigger != windows.TriggerAPI:
		return fmt.Sprintf("%s (%s)", r.Remote, r.Trigger)
	}
	return r.Remote
}

func shortHash(h string) string {
	if len(h) > 12 {
		return h[:12]
	}
	return dash(h)
}

// readVerdict decodes a window's verdict; false when it has none (yet).
func readVerdict(raw json.RawMessage) (verdict.Verdict, bool) {
	var v verdict.Verdict
	if len(raw) == 0 || json.Unmarshal(raw, &v) != nil {
		return v, false
	}
	return v, true
}

// verdictCell is "ok", "warning (2)", "broken (1)", or "-" before the checks ran.
func verdictCell(raw json.RawMessage) string {
	v, ok := readVerdict(raw)
	switch {
	case !ok:
		return "-"
	case len(v.Findings) == 0:
		return v.Level.String()
	}
	return fmt.Sprintf("%s (%d)", v.Level, len(v.Findings))
}
