package torchprof

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

// collect is a traceHandler that keeps copies of what it is given.
type collect struct {
	keys   []string
	events []string
	fields []eventFields
}

func (c *collect) topLevel(key string, raw []byte) error {
	c.keys = append(c.keys, key+"="+string(raw))
	return nil
}

func (c *collect) event(raw []byte, f *eventFields) error {
	c.events = append(c.events, string(raw))
	c.fields = append(c.fields, *f)
	return nil
}

func TestScanTrace(t *testing.T) {
	in := `{"a": [1, {"b": "}"}], "traceEvents": [ {"ph":"X","name":"k\"]","pid":1,"ts":1.5,"dur":2,"args":{"x":[1,2]}} ,
		{"pid":"p","name":"n","pid":2} ], "z": "tail", "n": -1.5e3, "t": true, "nan": NaN, "inf": -Infinity}`
	// One byte per read: every value crosses a buffer refill.
	var c collect
	if err := scanTrace(iotest.OneByteReader(strings.NewReader(in)), nil, &c); err != nil {
		t.Fatal(err)
	}
	wantKeys := []string{`a=[1, {"b": "}"}]`, `z="tail"`, `n=-1.5e3`, `t=true`, `nan=NaN`, `inf=-Infinity`}
	if strings.Join(c.keys, "|") != strings.Join(wantKeys, "|") {
		t.Errorf("keys %q, want %q", c.keys, wantKeys)
	}
	if len(c.events) != 2 {
		t.Fatalf("events %q", c.events)
	}
	ev, f := []byte(c.events[0]), c.fields[0]
	for name, want := range map[string]string{"ph": `"X"`, "name": `"k\"]"`, "pid": "1", "ts": "1.5", "dur": "2", "args": `{"x":[1,2]}`} {
		var got []byte
		switch name {
		case "ph":
			got = f.ph.of(ev)
		case "name":
			got = f.name.of(ev)
		case "pid":
			got = f.pid.of(ev)
		case "ts":
			got = f.ts.of(ev)
		case "dur":
			got = f.dur.of(ev)
		case "args":
			got = f.args.of(ev)
		}
		if string(got) != want {
			t.Errorf("%s = %s, want %s", name, got, want)
		}
	}
	// Duplicate keys: the last wins, as in Python.
	if got := c.fields[1].pid.of([]byte(c.events[1])); string(got) != "2" {
		t.Errorf("duplicate pid: got %s, want 2", got)
	}
}

func TestScanTraceErrors(t *testing.T) {
	for _, tc := range []struct {
		in     string
		offset int64 // -1: any
	}{
		{`[]`, 0},
		{`{"traceEvents": [{"pid": 1}, {"pid": 2,}]}`, 39},
		{`{"traceEvents": [{"pid": 1} {"pid": 2}]}`, 28},
		{`{"traceEvents": [{"pid": 01x}]}`, 27},
		{`{"traceEvents": [{"pid": tru}]}`, 25},
		{`{"traceEvents": [{"pid": 1}]`, 28},
		{`{"traceEvents": [{"pid": "abc`, 29},
		{`{"traceEvents": []} {}`, 20},
	} {
		var c collect
		err := scanTrace(strings.NewReader(tc.in), nil, &c)
		var se *SyntaxError
		if !errors.As(err, &se) {
			t.Errorf("%s: error %v, want a SyntaxError", tc.in, err)
			continue
		}
		if se.Offset != tc.offset {
			t.Errorf("%s: offset %d (%v), want %d", tc.in, se.Offset, err, tc.offset)
		}
	}
}

func FuzzScanTrace(f *testing.F) {
	f.Add([]byte(`{"traceEvents": [{"ph":"X","pid":1,"ts":1.5,"dur":2}], "deviceProperties": []}`))
	f.Add([]byte(`{"schemaVersion": 1, "traceEvents": [{"name":"process_sort_index","ph":"M","pid":3,"args":{"sort_index":5}}, {"pid":"Spans"}]}`))
	f.Add([]byte(`{"traceEvents": [{"pid": 1}, {"pid": 2,}]}`))
	// ts + dur past int64 nanoseconds; a string ts.
	f.Add([]byte(`{"traceEvents": [{"ph":"X","cat":"kernel","name":"k","pid":0,"ts":9000000000000000,"dur":9000000000000000},
		{"ph":"X","cat":"kernel","name":"k","pid":0,"ts":"1","dur":1}]}`))
	f.Fuzz(func(t *testing.T, in []byte) {
		var c collect
		// Small reads exercise refills.
		err := scanTrace(iotest.HalfReader(bytes.NewReader(in)), nil, &c)
		var probe struct {
			TraceEvents []map[string]json.RawMessage `json:"traceEvents"`
		}
		valid := json.Valid(in) && bytes.HasPrefix(bytes.TrimSpace(in), []byte("{")) && json.Unmarshal(in, &probe) == nil
		// Valid JSON beyond the limits (nesting, with small inputs) is refused on purpose.
		if valid && bytes.Contains(in, []byte(`"traceEvents"`)) && err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, ErrTraceLimit) {
			// Valid JSON with object events must scan (unless traceEvents is not an array).
			var anyEv struct {
				TraceEvents []any `json:"traceEvents"`
			}
			if json.Unmarshal(in, &anyEv) == nil && len(anyEv.TraceEvents) == len(probe.TraceEvents) {
				t.Fatalf("valid trace rejected: %v", err)
			}
		}
		if err != nil {
			return
		}
		rf := RankFile{TP: 1, DP: -1, PP: -1, EP: -1, Rank: -1}
		kh := &kinetoHandler{ctx: context.Background(), d: newRankData("F00", "fuzz")}
		defer kh.d.ivs.close()
		for i, ev := range c.events {
			f := c.fields[i]
			out := rewriteEvent(nil, []byte(ev), &f, rf, rf.Label(), 1500)
			if json.Valid([]byte(ev)) && !json.Valid(out) {
				t.Fatalf("rewrite of %s is not JSON: %s", ev, out)
			}
			// What analyze does with the event: no panic, and a kernel it counts has a
			// numeric ts and a dur that is not negative.
			before := kh.d.ivs.buf
			if err := kh.event([]byte(ev), &f); err != nil {
				t.Fatal(err)
			}
			if len(kh.d.ivs.buf) > len(before) {
				if p := checkEvent([]byte(ev), &f); p != probNone {
					t.Fatalf("analyze used %s despite %s", ev, problemText[p])
				}
				if iv := kh.d.ivs.buf[len(kh.d.ivs.buf)-1]; iv.end < iv.start {
					t.Fatalf("analyze took %s as ending before it starts: %+v", ev, iv)
				}
			}
		}
	})
}
