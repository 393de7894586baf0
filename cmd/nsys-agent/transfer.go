package main

import (
	"fmt"
	"io"
	"sync"
	"time"
)

// transferBar draws a pull's progress on a terminal: bytes so far of the total, speed,
// and time left; redrawn at most every redrawEvery, one line. A nil bar draws nothing
// (a pipe, several agents).
type transferBar struct {
	w      io.Writer
	window string
	total  int64 // bytes of the files to fetch (those not up to date)
	now    func() time.Time

	mu       sync.Mutex
	done     int64 // of total, resumed parts included
	received int64 // over the network in this run: the speed
	start    time.Time
	drawn    time.Time
	file     string
}

const redrawEvery = 100 * time.Millisecond

func newTransferBar(w io.Writer, window string, total int64) *transferBar {
	return &transferBar{w: w, window: window, total: total, now: time.Now}
}

// already counts n bytes of file that need no transfer (a partial file resumed); a
// negative n takes back bytes that must come again (a bad partial file).
func (b *transferBar) already(file string, n int64) {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.file = file
	b.done += n
}

// add counts n bytes received of file.
func (b *transferBar) add(file string, n int64) {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.now()
	if b.start.IsZero() {
		b.start = now
	}
	b.file = file
	b.done += n
	b.received += n
	if now.Sub(b.drawn) >= redrawEvery {
		b.drawn = now
		fmt.Fprintf(b.w, "\r\x1b[K%s", b.line(now))
	}
}

// line is "pull w7: 1.2 GiB of 3.0 GiB (40%), 85.3 MiB/s, 21s left: report.nsys-rep".
func (b *transferBar) line(now time.Time) string {
	s := fmt.Sprintf("pull %s: %s of %s", b.window, humanBytes(b.done), humanBytes(b.total))
	if b.total > 0 {
		s += fmt.Sprintf(" (%d%%)", 100*b.done/b.total)
	}
	if el := now.Sub(b.start); el > 0 && b.received > 0 {
		rate := float64(b.received) / el.Seconds()
		s += fmt.Sprintf(", %s/s", humanBytes(int64(rate)))
		if left := b.total - b.done; left > 0 {
			s += fmt.Sprintf(", %s left", humanDuration(time.Duration(float64(left)/rate*float64(time.Second))))
		}
	}
	return s + ": " + b.file
}

// finish draws the last line: what came, how fast, and ends it.
func (b *transferBar) finish() {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.start.IsZero() {
		return // nothing was fetched: nothing was drawn
	}
	el := b.now().Sub(b.start)
	s := fmt.Sprintf("pull %s: %s in %s", b.window, humanBytes(b.received), humanDuration(el))
	if el > 0 {
		s += fmt.Sprintf(", %s/s", humanBytes(int64(float64(b.received)/el.Seconds())))
	}
	fmt.Fprintf(b.w, "\r\x1b[K%s\n", s)
}

// countingReader reports what is read through it to a bar.
type countingReader struct {
	r    io.Reader
	bar  *transferBar
	file string
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if n > 0 {
		c.bar.add(c.file, int64(n))
	}
	return n, err
}
