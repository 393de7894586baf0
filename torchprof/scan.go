package torchprof

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// The trace scanner reads a Chrome trace ({"traceEvents": [...], other keys}) from a
// stream without decoding it: each event is validated and handed over as its raw bytes
// together with the spans of the few fields callers look at. Memory is one buffer that
// holds the largest single event or top-level value, never the trace, and the limits
// below bound that buffer and the parser's work on hostile input.

// span is a value's [start, end) in an event's raw bytes; start < 0 when absent.
type span struct{ start, end int }

func (s span) ok() bool { return s.start >= 0 }

func (s span) of(b []byte) []byte {
	if s.start < 0 {
		return nil
	}
	return b[s.start:s.end]
}

// eventFields are the spans of the event fields Merge and Analyze use; the last
// occurrence of a duplicated key wins, as in Python's json.
type eventFields struct {
	ph, cat, name, pid, tid, ts, dur, args span
	end                                    int   // index of the closing '}'
	offset                                 int64 // of the event's '{' in the uncompressed stream
}

// traceHandler receives a trace's parts in file order. raw is only valid during the call.
type traceHandler interface {
	topLevel(key string, raw []byte) error
	event(raw []byte, f *eventFields) error
}

// SyntaxError says where a trace stops being valid JSON, or exceeds one of the limits
// (then it wraps ErrTraceLimit).
type SyntaxError struct {
	Offset int64 // in the uncompressed stream
	Msg    string
	Err    error // ErrTraceLimit, or nil
}

func (e *SyntaxError) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("at uncompressed offset %d: %s", e.Offset, e.Msg)
	}
	return fmt.Sprintf("invalid JSON at uncompressed offset %d: %s", e.Offset, e.Msg)
}

func (e *SyntaxError) Unwrap() error { return e.Err }

// ErrTraceLimit: a string, number, event or nesting in a trace is beyond what any real
// profiler writes (maxTokenSize, maxValueSize, maxDepth); the trace is refused rather
// than read at any cost.
var ErrTraceLimit = errors.New("beyond the limits for a profiler trace")

// errShort means the value continues past the end of the buffer.
var errShort = errors.New("short buffer")

// errStop lets a handler end the scan early without an error.
var errStop = errors.New("stop scan")

type scanner struct {
	r    io.Reader
	buf  []byte
	pos  int   // next unread byte in buf
	end  int   // end of valid data in buf
	base int64 // stream offset of buf[0]
	eof  bool
}

const (
	scanBufSize = 1 << 20
	// maxTokenSize bounds one string or number (key, kernel name, args value). The
	// longest string in the real H100 traces (testdata/kineto-h100-2rank) is 412 bytes,
	// a templated kernel name; the longest in real captures are mangled C++ names and
	// args or stack strings of a few MB at most. 16 MiB leaves room for those, and a
	// hostile string (a 1 GiB one packs into a 1 MB gzip) is refused after about
	// 32 MiB read, in well under a second.
	maxTokenSize = 16 << 20
	// maxValueSize bounds one event or top-level value, which the buffer must hold
	// whole: twice the token limit. Real events are under 1 kB. Refusing either costs at
	// most 48 MiB of buffers (the last two sizes) per rank being read.
	maxValueSize = 32 << 20
	// maxDepth bounds nesting (the parser recurses). Kineto nests args three levels
	// deep; Python's json, and so SGLang's merger, gives up near 1000.
	maxDepth = 1000
)

func limitErr(i int, format string, a ...any) error {
	return &SyntaxError{Offset: int64(i), Msg: fmt.Sprintf(format, a...), Err: ErrTraceLimit}
}

func newScanner(r io.Reader, buf []byte) *scanner {
	if cap(buf) < scanBufSize {
		buf = make([]byte, scanBufSize)
	}
	return &scanner{r: r, buf: buf[:cap(buf)]}
}

// fill moves the unread bytes to the front and reads until at least want of them are
// buffered or the input ends, growing the buffer (doubling) when want exceeds it. A
// value that runs past the buffer asks for twice what it has seen, so its parse restarts
// only after what is buffered has doubled: all restarts together cost at most twice the
// value, however small the reads, and a small event crossing a read asks only a little.
func (s *scanner) fill(want int) error {
	if s.eof {
		return io.ErrUnexpectedEOF
	}
	if s.pos > 0 {
		copy(s.buf, s.buf[s.pos:s.end])
		s.end -= s.pos
		s.base += int64(s.pos)
		s.pos = 0
	}
	switch {
	case want <= len(s.buf):
	case len(s.buf) >= maxValueSize && s.end == len(s.buf):
		return &SyntaxError{Offset: s.base, Err: ErrTraceLimit,
			Msg: fmt.Sprintf("an event or top-level value larger than %d MiB, the limit for one value", maxValueSize>>20)}
	case len(s.buf) < maxValueSize:
		n := len(s.buf)
		for n < want {
			n *= 2
		}
		nb := make([]byte, min(n, maxValueSize))
		copy(nb, s.buf[:s.end])
		s.buf = nb
	}
	for empty := 0; s.end < min(want, len(s.buf)); {
		n, err := s.r.Read(s.buf[s.end:])
		s.end += n
		if err == io.EOF {
			s.eof = true
			return nil
		}
		if err != nil {
			return err
		}
		if n > 0 {
			empty = 0
		} else if empty++; empty == 100 {
			return io.ErrNoProgress
		}
	}
	return nil
}

func (s *scanner) errAt(i int, msg string) error {
	return &SyntaxError{Offset: s.base + int64(i), Msg: msg}
}

// next skips white space and returns the next byte without consuming it.
func (s *scanner) next() (byte, error) {
	for {
		for s.pos < s.end {
			switch c := s.buf[s.pos]; c {
			case ' ', '\t', '\n', '\r':
				s.pos++
			default:
				return c, nil
			}
		}
		if s.eof {
			return 0, s.errAt(s.pos, "unexpected end of input")
		}
		if err := s.fill(1); err != nil {
			return 0, err
		}
	}
}

func (s *scanner) expect(c byte) error {
	got, err := s.next()
	if err != nil {
		return err
	}
	if got != c {
		return s.errAt(s.pos, fmt.Sprintf("expected %q, found %q", c, got))
	}
	s.pos++
	return nil
}

// value parses one complete value at pos (after white space) with parse, refilling
// while it runs past the buffer, and returns its [start, end) in buf.
func (s *scanner) value(parse func(b []byte, i int) (int, error)) (int, int, error) {
	if _, err := s.next(); err != nil {
		return 0, 0, err
	}
	for {
		end, err := parse(s.buf[:s.end], s.pos)
		if err == errShort {
			if s.eof {
				return 0, 0, s.errAt(s.end, "unexpected end of input")
			}
			if err := s.fill(max(2*(s.end-s.pos), 4096)); err != nil {
				return 0, 0, err
			}
			continue
		}
		if err != nil {
			var se *SyntaxError
			if errors.As(err, &se) {
				se.Offset += s.base
			}
			return 0, 0, err
		}
		start := s.pos
		s.pos = end
		return start, end, nil
	}
}

// scanTrace reads a whole trace, calling h for each top-level key (other than
// traceEvents) and each event. Events that are not JSON objects are errors: no trace
// viewer can place them, and SGLang's merger drops the whole rank on them.
func scanTrace(r io.Reader, buf []byte, h traceHandler) error {
	s := newScanner(r, buf)
	err := s.scanTrace(h)
	if err == errStop {
		return nil
	}
	return err
}

func (s *scanner) scanTrace(h traceHandler) error {
	if err := s.expect('{'); err != nil {
		return err
	}
	var f eventFields
	for first := true; ; first = false {
		c, err := s.next()
		if err != nil {
			return err
		}
		if c == '}' {
			s.pos++
			break
		}
		if !first {
			if c != ',' {
				return s.errAt(s.pos, fmt.Sprintf("expected ',' or '}' after a top-level value, found %q", c))
			}
			s.pos++
		}
		ks, ke, err := s.value(parseStringAt)
		if err != nil {
			return err
		}
		key := unquote(s.buf[ks:ke])
		if err := s.expect(':'); err != nil {
			return err
		}
		if key != "traceEvents" {
			vs, ve, err := s.value(skipValue)
			if err != nil {
				return err
			}
			if err := h.topLevel(key, s.buf[vs:ve]); err != nil {
				return err
			}
			continue
		}
		if err := s.expect('['); err != nil {
			return err
		}
		for n := 0; ; n++ {
			c, err := s.next()
			if err != nil {
				return err
			}
			if c == ']' {
				s.pos++
				break
			}
			if n > 0 {
				if c != ',' {
					return s.errAt(s.pos, fmt.Sprintf("expected ',' or ']' after traceEvents[%d], found %q", n-1, c))
				}
				s.pos++
				if c, err = s.next(); err != nil {
					return err
				}
			}
			if c != '{' {
				return s.errAt(s.pos, fmt.Sprintf("traceEvents[%d] is not an object", n))
			}
			vs, ve, err := s.value(func(b []byte, i int) (int, error) { return parseEvent(b, i, &f) })
			if err != nil {
				return err
			}
			f.shift(-vs)
			f.offset = s.base + int64(vs)
			if err := h.event(s.buf[vs:ve], &f); err != nil {
				return err
			}
		}
	}
	// Python's json.load refuses trailing data; so do we.
	for {
		for s.pos < s.end {
			switch s.buf[s.pos] {
			case ' ', '\t', '\n', '\r':
				s.pos++
			default:
				return s.errAt(s.pos, "data after the end of the trace object")
			}
		}
		if s.eof {
			return nil
		}
		if err := s.fill(1); err != nil {
			return err
		}
	}
}

func (f *eventFields) shift(d int) {
	for _, sp := range []*span{&f.ph, &f.cat, &f.name, &f.pid, &f.tid, &f.ts, &f.dur, &f.args} {
		if sp.start >= 0 {
			sp.start += d
			sp.end += d
		}
	}
	f.end += d
}

// unquote returns a JSON string's text; keys and names rarely hold escapes.
func unquote(raw []byte) string {
	if len(raw) >= 2 && bytes.IndexByte(raw, '\\') < 0 {
		return string(raw[1 : len(raw)-1])
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return string(raw)
	}
	return s
}

// The parsers below work on a complete buffer b from index i. They return the index
// after the value, errShort when b ends inside it, or a *SyntaxError with an offset
// relative to b.

func synErr(i int, format string, a ...any) error {
	return &SyntaxError{Offset: int64(i), Msg: fmt.Sprintf(format, a...)}
}

func skipWS(b []byte, i int) int {
	for i < len(b) {
		switch b[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

func parseStringAt(b []byte, i int) (int, error) {
	if i >= len(b) {
		return 0, errShort
	}
	if b[i] != '"' {
		return 0, synErr(i, "expected a string, found %q", b[i])
	}
	return skipString(b, i)
}

// skipString skips the string starting at b[i] == '"'.
func skipString(b []byte, i int) (int, error) {
	j := i + 1
	for {
		k := bytes.IndexByte(b[j:], '"')
		if k < 0 {
			if len(b)-i >= maxTokenSize {
				return 0, tokenErr(i, "string")
			}
			return 0, errShort
		}
		j += k
		// An odd run of backslashes before the quote escapes it.
		n := 0
		for p := j - 1; p > i && b[p] == '\\'; p-- {
			n++
		}
		j++
		if n%2 == 0 {
			if j-i > maxTokenSize {
				return 0, tokenErr(i, "string")
			}
			return j, nil
		}
	}
}

func tokenErr(i int, what string) error {
	return limitErr(i, "a %s longer than %d MiB, the limit for one string or number", what, maxTokenSize>>20)
}

func skipValue(b []byte, i int) (int, error) {
	return skipValueDepth(b, i, 0)
}

func skipValueDepth(b []byte, i, depth int) (int, error) {
	if i >= len(b) {
		return 0, errShort
	}
	switch c := b[i]; {
	case c == '"':
		return skipString(b, i)
	case c == '{':
		return skipObject(b, i, depth+1, nil)
	case c == '[':
		return skipArray(b, i, depth+1)
	case c == '-' || (c >= '0' && c <= '9'):
		return skipNumber(b, i)
	default:
		// NaN and Infinity are not JSON, but Python writes and reads them.
		for _, lit := range [...]string{"true", "false", "null", "NaN", "Infinity"} {
			if c == lit[0] {
				return matchLiteral(b, i, lit)
			}
		}
		return 0, synErr(i, "invalid character %q looking for a value", c)
	}
}

func matchLiteral(b []byte, i int, lit string) (int, error) {
	if n := len(lit); len(b)-i >= n {
		if string(b[i:i+n]) == lit {
			return i + n, nil
		}
	} else if string(b[i:]) == lit[:len(b)-i] {
		return 0, errShort
	}
	return 0, synErr(i, "invalid literal, expected %s", lit)
}

// skipNumber accepts JSON numbers, and -Infinity which Python writes for -inf.
func skipNumber(b []byte, i int) (int, error) {
	j := i
	if b[j] == '-' {
		j++
		if j >= len(b) {
			return 0, errShort
		}
		if b[j] == 'I' {
			return matchLiteral(b, i, "-Infinity")
		}
	}
	digits := func() int {
		k := j
		for j < len(b) && b[j] >= '0' && b[j] <= '9' {
			j++
		}
		return j - k
	}
	if digits() == 0 {
		if j >= len(b) {
			return 0, errShort
		}
		return 0, synErr(j, "invalid character %q in number", b[j])
	}
	if j < len(b) && b[j] == '.' {
		j++
		if digits() == 0 {
			if j >= len(b) {
				return 0, errShort
			}
			return 0, synErr(j, "no digits after the decimal point")
		}
	}
	if j < len(b) && (b[j] == 'e' || b[j] == 'E') {
		j++
		if j < len(b) && (b[j] == '+' || b[j] == '-') {
			j++
		}
		if digits() == 0 {
			if j >= len(b) {
				return 0, errShort
			}
			return 0, synErr(j, "no digits in exponent")
		}
	}
	if j-i > maxTokenSize || (j >= len(b) && j-i >= maxTokenSize) {
		return 0, tokenErr(i, "number")
	}
	if j >= len(b) {
		return 0, errShort // the number may go on in the next read
	}
	return j, nil
}

func skipArray(b []byte, i, depth int) (int, error) {
	if depth > maxDepth {
		return 0, limitErr(i, "nested more than %d levels deep, the limit", maxDepth)
	}
	j := skipWS(b, i+1)
	if j >= len(b) {
		return 0, errShort
	}
	if b[j] == ']' {
		return j + 1, nil
	}
	for {
		var err error
		if j, err = skipValueDepth(b, j, depth); err != nil {
			return 0, err
		}
		j = skipWS(b, j)
		if j >= len(b) {
			return 0, errShort
		}
		switch b[j] {
		case ',':
			j = skipWS(b, j+1)
		case ']':
			return j + 1, nil
		default:
			return 0, synErr(j, "expected ',' or ']' in array, found %q", b[j])
		}
	}
}

// skipObject skips an object; with f it also records the spans of the event fields.
func skipObject(b []byte, i, depth int, f *eventFields) (int, error) {
	if depth > maxDepth {
		return 0, limitErr(i, "nested more than %d levels deep, the limit", maxDepth)
	}
	j := skipWS(b, i+1)
	if j >= len(b) {
		return 0, errShort
	}
	if b[j] == '}' {
		if f != nil {
			f.end = j
		}
		return j + 1, nil
	}
	for {
		if j >= len(b) {
			return 0, errShort
		}
		if b[j] != '"' {
			return 0, synErr(j, "expected a key string, found %q", b[j])
		}
		ks := j
		var err error
		if j, err = skipString(b, j); err != nil {
			return 0, err
		}
		key := b[ks+1 : j-1]
		j = skipWS(b, j)
		if j >= len(b) {
			return 0, errShort
		}
		if b[j] != ':' {
			return 0, synErr(j, "expected ':' after a key, found %q", b[j])
		}
		vs := skipWS(b, j+1)
		if j, err = skipValueDepth(b, vs, depth); err != nil {
			return 0, err
		}
		if f != nil {
			f.set(key, span{vs, j})
		}
		j = skipWS(b, j)
		if j >= len(b) {
			return 0, errShort
		}
		switch b[j] {
		case ',':
			j = skipWS(b, j+1)
		case '}':
			if f != nil {
				f.end = j
			}
			return j + 1, nil
		default:
			return 0, synErr(j, "expected ',' or '}' in object, found %q", b[j])
		}
	}
}

func (f *eventFields) set(key []byte, sp span) {
	switch string(key) {
	case "ph":
		f.ph = sp
	case "cat":
		f.cat = sp
	case "name":
		f.name = sp
	case "pid":
		f.pid = sp
	case "tid":
		f.tid = sp
	case "ts":
		f.ts = sp
	case "dur":
		f.dur = sp
	case "args":
		f.args = sp
	}
}

// parseEvent skips the event object at b[i] and fills f with absolute spans.
func parseEvent(b []byte, i int, f *eventFields) (int, error) {
	none := span{-1, -1}
	*f = eventFields{ph: none, cat: none, name: none, pid: none, tid: none, ts: none, dur: none, args: none}
	return skipObject(b, i, 1, f)
}
