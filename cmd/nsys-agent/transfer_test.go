package main

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// TestTransferBar: bytes of the total, speed over what came this run (a resumed part
// does not count as speed), time left; at most one redraw per redrawEvery; a last line.
func TestTransferBar(t *testing.T) {
	var w bytes.Buffer
	clock := time.Unix(1000, 0)
	b := newTransferBar(&w, "w7", 10<<20)
	b.now = func() time.Time { return clock }
	b.already("report.nsys-rep", 2<<20) // resumed
	b.add("report.nsys-rep", 0)         // the transfer starts
	clock = clock.Add(2 * time.Second)
	b.add("report.nsys-rep", 4<<20) // 4 MiB in 2 s: 2 MiB/s, 4 MiB left: 2 s
	clock = clock.Add(10 * time.Millisecond)
	b.add("report.nsys-rep", 1) // too soon to redraw
	lines := strings.Split(w.String(), "\r\x1b[K")
	if len(lines) != 3 {
		t.Fatalf("want two draws, got %q", w.String())
	}
	if want := "pull w7: 6.0 MiB of 10.0 MiB (60%), 2.0 MiB/s, 2s left: report.nsys-rep"; lines[2] != want {
		t.Errorf("line\n got %q\nwant %q", lines[2], want)
	}
	clock = clock.Add(1990 * time.Millisecond)
	b.finish()
	if !strings.HasSuffix(w.String(), "\r\x1b[Kpull w7: 4.0 MiB in 4s, 1.0 MiB/s\n") {
		t.Errorf("last line: %q", w.String())
	}
	var nothing *transferBar // a pipe: no bar, nothing drawn, no panic
	nothing.add("x", 1)
	nothing.finish()
}
