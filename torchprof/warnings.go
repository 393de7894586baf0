package torchprof

import (
	"fmt"
	"strconv"
)

// Warning counts events (or rows) of one input with one kind of malformed field. Merge
// keeps such events unchanged (as SGLang's merger does); analyze skips them, since a
// kernel without a time is no time.
type Warning struct {
	Input   string `json:"input"`
	Problem string `json:"problem"`
	Action  string `json:"action"` // "skipped", "kept unchanged", ...
	Events  int64  `json:"events"`
	// FirstOffset is the uncompressed byte offset of the first such event (Kineto).
	FirstOffset int64 `json:"first_offset,omitempty"`
}

func (w Warning) String() string {
	at := ""
	if w.FirstOffset > 0 {
		at = fmt.Sprintf(" (the first at uncompressed offset %d)", w.FirstOffset)
	}
	events := "events"
	if w.Events == 1 {
		events = "event"
	}
	return fmt.Sprintf("%s: %d %s: %s%s; %s", w.Input, w.Events, events, w.Problem, at, w.Action)
}

// problem is a kind of malformed event; checkEvent finds the first of an event's.
type problem uint8

const (
	probNone problem = iota
	probTsNotNumber
	probDurNotNumber
	probDurNegative
	probNoPid
	// Found by analyze only: fields merge does not need, and a trace's oddities.
	probNoTsDur
	probTsRange
	probDurRange
	probManyNames
	nProblems
)

var problemText = [nProblems]string{
	probTsNotNumber:  "ts is not a number",
	probDurNotNumber: "dur is not a number",
	probDurNegative:  "dur is negative",
	probNoPid:        "no pid",
	probNoTsDur:      "GPU activity without ts or dur",
	probTsRange:      "ts out of range (beyond ±9e15 µs)",
	probDurRange:     "dur out of range (beyond 9e15 µs)",
	probManyNames:    fmt.Sprintf("kernels beyond %d distinct names (or %d MiB of them)", maxKernelNames, maxKernelNameBytes>>20),
}

// actionFor is what the reader did with events of kind k, when not action.
func actionFor(k problem, action string) string {
	if k == probManyNames {
		return "counted as " + strconv.Quote(otherKernels) + " or " + strconv.Quote(otherCommKernels)
	}
	return action
}

// checkEvent says what is wrong with the fields every reader relies on: a ts or dur
// that is not a JSON number (a string, null, an object, NaN, ...), a negative dur, no
// pid. A missing ts or dur is fine here (metadata and instant events have none).
func checkEvent(ev []byte, f *eventFields) problem {
	if f.ts.ok() && !isNumber(f.ts.of(ev)) {
		return probTsNotNumber
	}
	if f.dur.ok() {
		d := f.dur.of(ev)
		if !isNumber(d) {
			return probDurNotNumber
		}
		if d[0] == '-' {
			if v, err := strconv.ParseFloat(string(d), 64); err != nil || v < 0 {
				return probDurNegative // -0 and -0.0 are zero
			}
		}
	}
	if !f.pid.ok() {
		return probNoPid
	}
	return probNone
}

// isNumber tells a JSON number from the other values the scanner lets through (it has
// validated the syntax): strings, literals, containers, NaN and ±Infinity.
func isNumber(raw []byte) bool {
	if len(raw) == 0 {
		return false
	}
	c := raw[0]
	if c == '-' && len(raw) > 1 {
		c = raw[1]
	}
	return c >= '0' && c <= '9'
}

// problems counts one input's malformed events per kind.
type problems struct {
	n     [nProblems]int64
	first [nProblems]int64
}

func (p *problems) add(k problem, offset int64) {
	if p.n[k] == 0 {
		p.first[k] = offset
	}
	p.n[k]++
}

// warnings lists the kinds seen, in a fixed order.
func (p *problems) warnings(input, action string) []Warning {
	var ws []Warning
	for k := probNone + 1; k < nProblems; k++ {
		if p.n[k] > 0 {
			ws = append(ws, Warning{Input: input, Problem: problemText[k], Action: actionFor(k, action), Events: p.n[k], FirstOffset: p.first[k]})
		}
	}
	return ws
}
