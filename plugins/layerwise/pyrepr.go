package layerwise

// A reader for the subset of Python's repr() that SGLang's layer ranges are made of:
// dicts, lists, tuples and sets; str in single or double quotes with Python's escapes;
// int and float (with inf and nan); True, False, None. It keeps only what ParseMarker asks
// for and skips the rest, so nothing it reads is ever held whole.

import (
	"strconv"
	"strings"
	"unicode/utf8"
)

type reprParser struct {
	s     string
	i     int
	depth int
}

func (p *reprParser) fail(why string) error {
	return &MarkerError{Offset: p.i, Why: why}
}

func (p *reprParser) space() {
	for p.i < len(p.s) {
		switch p.s[p.i] {
		case ' ', '\t', '\r', '\n':
			p.i++
		default:
			return
		}
	}
}

func (p *reprParser) peek() byte {
	if p.i < len(p.s) {
		return p.s[p.i]
	}
	return 0
}

// enter and leave bound the nesting, so a hostile text cannot exhaust the stack.
func (p *reprParser) enter() error {
	if p.depth++; p.depth > maxDepth {
		return p.fail("nested deeper than 64")
	}
	return nil
}

func (p *reprParser) leave() { p.depth-- }

// dict reads a dict with string keys, calling each after a key and its colon; each must
// read the value.
func (p *reprParser) dict(each func(key string) error) error {
	p.space()
	if p.peek() != '{' {
		return p.fail("expected '{'")
	}
	if err := p.enter(); err != nil {
		return err
	}
	defer p.leave()
	p.i++
	p.space()
	if p.peek() == '}' {
		p.i++
		return nil
	}
	for {
		p.space()
		at := p.i
		key, isStr, err := p.valueString()
		if err != nil {
			return err
		}
		if !isStr {
			p.i = at
			return p.fail("a key of the range's dict is not a string")
		}
		p.space()
		if p.peek() != ':' {
			return p.fail("expected ':' after a key")
		}
		p.i++
		if err := each(key); err != nil {
			return err
		}
		p.space()
		switch p.peek() {
		case ',':
			p.i++
			p.space()
			if p.peek() == '}' { // Python accepts a trailing comma
				p.i++
				return nil
			}
		case '}':
			p.i++
			return nil
		default:
			return p.fail("expected ',' or '}' in a dict")
		}
	}
}

// valueString reads any value; when it is a string it returns it decoded.
func (p *reprParser) valueString() (string, bool, error) {
	p.space()
	if c := p.peek(); c == '\'' || c == '"' {
		s, err := p.str()
		return s, true, err
	}
	return "", false, p.value()
}

// value reads (skips) any value.
func (p *reprParser) value() error {
	p.space()
	switch c := p.peek(); {
	case c == 0:
		return p.fail("unexpected end of text")
	case c == '\'' || c == '"':
		_, err := p.str()
		return err
	case c == '{':
		return p.braces()
	case c == '[':
		return p.seq('[', ']')
	case c == '(':
		return p.seq('(', ')')
	case c == '-' || c == '+' || c == '.' || (c >= '0' && c <= '9'):
		return p.number()
	case c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z':
		return p.word()
	default:
		return p.fail("unexpected " + strconv.QuoteRune(rune(c)))
	}
}

// braces reads a dict (any keys) or a set.
func (p *reprParser) braces() error {
	if err := p.enter(); err != nil {
		return err
	}
	defer p.leave()
	p.i++ // '{'
	p.space()
	if p.peek() == '}' {
		p.i++
		return nil
	}
	isDict := false
	for n := 0; ; n++ {
		if err := p.value(); err != nil {
			return err
		}
		p.space()
		if n == 0 && p.peek() == ':' {
			isDict = true
		}
		if isDict {
			if p.peek() != ':' {
				return p.fail("expected ':' in a dict")
			}
			p.i++
			if err := p.value(); err != nil {
				return err
			}
			p.space()
		}
		switch p.peek() {
		case ',':
			p.i++
			p.space()
			if p.peek() == '}' {
				p.i++
				return nil
			}
		case '}':
			p.i++
			return nil
		default:
			return p.fail("expected ',' or '}'")
		}
	}
}

// seq reads a list or a tuple.
func (p *reprParser) seq(open, close byte) error {
	if err := p.enter(); err != nil {
		return err
	}
	defer p.leave()
	p.i++ // open
	p.space()
	if p.peek() == close {
		p.i++
		return nil
	}
	for {
		if err := p.value(); err != nil {
			return err
		}
		p.space()
		switch p.peek() {
		case ',':
			p.i++
			p.space()
			if p.peek() == close {
				p.i++
				return nil
			}
		case close:
			p.i++
			return nil
		default:
			return p.fail("expected ',' or " + strconv.QuoteRune(rune(close)))
		}
	}
}

// number reads an int or a float as repr writes them (1, -3, 0.5, 1e-05, inf, -inf, nan).
func (p *reprParser) number() error {
	start := p.i
	if c := p.peek(); c == '-' || c == '+' {
		p.i++
	}
	if strings.HasPrefix(p.s[p.i:], "inf") || strings.HasPrefix(p.s[p.i:], "nan") {
		p.i += 3
		return nil
	}
	digits := 0
	for p.i < len(p.s) {
		c := p.s[p.i]
		switch {
		case c >= '0' && c <= '9':
			digits++
		case c == '.' || c == '_':
		case (c == 'e' || c == 'E') && digits > 0:
			if n := p.peekAt(1); n == '-' || n == '+' {
				p.i++
			}
		case c == 'j' || c == 'J': // complex, e.g. 1j
		default:
			if digits == 0 {
				p.i = start
				return p.fail("malformed number")
			}
			return nil
		}
		p.i++
	}
	if digits == 0 {
		p.i = start
		return p.fail("malformed number")
	}
	return nil
}

func (p *reprParser) peekAt(k int) byte {
	if p.i+k < len(p.s) {
		return p.s[p.i+k]
	}
	return 0
}

// word reads True, False, None, inf, nan (as repr writes them); any other name is not
// part of a layer range.
func (p *reprParser) word() error {
	start := p.i
	for p.i < len(p.s) {
		c := p.s[p.i]
		if c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' {
			p.i++
			continue
		}
		break
	}
	switch p.s[start:p.i] {
	case "True", "False", "None", "inf", "nan":
		return nil
	}
	p.i = start
	return p.fail("unexpected name " + strconv.Quote(truncateBytes(p.s[start:], 32)))
}

// str reads a quoted string and decodes Python's escapes (\\ \' \" \n \t \r \xhh \uhhhh
// \Uhhhhhhhh; an unknown escape stays as written, as in Python).
func (p *reprParser) str() (string, error) {
	q := p.s[p.i]
	p.i++
	start := p.i
	// Fast path: no escape before the closing quote.
	if j := strings.IndexByte(p.s[p.i:], q); j >= 0 && !strings.ContainsAny(p.s[p.i:p.i+j], "\\\n") {
		p.i += j + 1
		return p.s[start : p.i-1], nil
	}
	var b strings.Builder
	for p.i < len(p.s) {
		c := p.s[p.i]
		switch {
		case c == q:
			p.i++
			return b.String(), nil
		case c == '\n':
			return "", p.fail("newline inside a string")
		case c != '\\':
			b.WriteByte(c)
			p.i++
			continue
		}
		p.i++ // backslash
		if p.i >= len(p.s) {
			break
		}
		e := p.s[p.i]
		p.i++
		switch e {
		case '\\', '\'', '"':
			b.WriteByte(e)
		case 'n':
			b.WriteByte('\n')
		case 't':
			b.WriteByte('\t')
		case 'r':
			b.WriteByte('\r')
		case 'x', 'u', 'U':
			n := 2
			if e == 'u' {
				n = 4
			} else if e == 'U' {
				n = 8
			}
			if p.i+n > len(p.s) {
				return "", p.fail("short \\" + string(e) + " escape")
			}
			v, err := strconv.ParseUint(p.s[p.i:p.i+n], 16, 32)
			if err != nil || v > utf8.MaxRune {
				return "", p.fail("bad \\" + string(e) + " escape")
			}
			b.WriteRune(rune(v))
			p.i += n
		default:
			b.WriteByte('\\')
			b.WriteByte(e)
		}
	}
	p.i = start - 1
	return "", p.fail("unterminated string")
}

// truncateBytes cuts s to at most n bytes, on a rune boundary.
func truncateBytes(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
