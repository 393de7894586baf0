package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/nsys-agent/nsys-agent/agent/windows"
)

// FuzzEventStream feeds arbitrary bytes to the client's reader of GET /v1/events as the
// response body and checks it against the event-stream format of the HTML standard
// (a reference parser below): the reader must not panic, must end, and must hand out
// exactly the events whose data a conforming parser would dispatch, for those whose
// data decodes as an windows.Event (the reader reports the others as bad events).
// Seeds: testdata/fuzz/FuzzEventStream (a real stream of the agent, line-ending and
// field variants).
func FuzzEventStream(f *testing.F) {
	f.Add([]byte(": subscribed\n\n"))
	f.Add([]byte("event: window\ndata: {\"type\":\"window\",\"window\":{\"id\":\"w1\",\"state\":\"ready\"}}\n\n"))
	f.Fuzz(func(t *testing.T, body []byte) {
		if len(body) > 1<<20 {
			t.Skip("the reader's line limit is 16 MB; larger inputs only slow the fuzzer")
		}
		want := decodable(t, referenceEvents(body))

		ac := newAPIClient("http://agent.invalid", "", eventBody(body))
		stream, err := ac.events(context.Background())
		if err != nil {
			t.Fatalf("events: %v", err)
		}
		defer stream.Close()
		var got []string
		// Every call consumes at least one line, so more calls than lines means a loop.
		for calls := 0; ; calls++ {
			if calls > bytes.Count(body, []byte("\n"))+1 {
				t.Fatalf("next did not reach the end after %d calls", calls)
			}
			ev, err := stream.next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				if strings.HasPrefix(err.Error(), "bad event") {
					continue
				}
				t.Fatalf("next: %v", err)
			}
			got = append(got, canonical(t, ev))
		}
		if len(got) != len(want) {
			t.Fatalf("reader gave %d events, a conforming parser %d:\n got %q\nwant %q", len(got), len(want), got, want)
		}
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("event %d: reader gave\n%s\nconforming parser\n%s", i, got[i], want[i])
			}
		}
	})
}

// eventBody answers every request with body as a text/event-stream, without a network.
type eventBody []byte

func (b eventBody) RoundTrip(req *http.Request) (*http.Response, error) {
	return &http.Response{
		StatusCode: http.StatusOK,
		Header:     http.Header{"Content-Type": {"text/event-stream"}},
		Body:       io.NopCloser(bytes.NewReader(b)),
		Request:    req,
	}, nil
}

// referenceEvents returns the data of each event dispatched by the event-stream
// interpretation algorithm of the HTML standard (§9.2.6): lines end with CRLF, LF or CR;
// a leading BOM is dropped; ":" starts a comment; a field without a colon has an empty
// value; one space after the colon is dropped; "data" lines are joined with LF; an empty
// line dispatches when data was seen; an unfinished event at the end is discarded.
func referenceEvents(stream []byte) []string {
	s := strings.TrimPrefix(string(stream), "\uFEFF")
	var events []string
	var data strings.Builder
	for {
		i := strings.IndexAny(s, "\r\n")
		if i < 0 {
			return events // an unterminated last line cannot complete an event
		}
		line := s[:i]
		if strings.HasPrefix(s[i:], "\r\n") {
			s = s[i+2:]
		} else {
			s = s[i+1:]
		}
		switch {
		case line == "":
			if data.Len() > 0 {
				events = append(events, strings.TrimSuffix(data.String(), "\n"))
			}
			data.Reset()
		case line[0] == ':':
		default:
			field, value, _ := strings.Cut(line, ":")
			if field == "data" {
				data.WriteString(strings.TrimPrefix(value, " "))
				data.WriteByte('\n')
			}
		}
	}
}

// decodable keeps the events whose data decodes as an windows.Event, canonically encoded.
func decodable(t *testing.T, datas []string) []string {
	var out []string
	for _, d := range datas {
		var ev windows.Event
		if json.Unmarshal([]byte(d), &ev) == nil {
			out = append(out, canonical(t, ev))
		}
	}
	return out
}

func canonical(t *testing.T, ev windows.Event) string {
	b, err := json.Marshal(ev)
	if err != nil {
		t.Fatalf("re-encoding an event: %v", err)
	}
	return string(b)
}
