package torchprof

import (
	"bytes"
	"encoding/json"
	"math"
	"strconv"
	"strings"
)

// appendPidLabel appends the JSON string "<label> <pid>" where <pid> is the pid the way
// Python's str() prints the decoded value, which is what SGLang's f-string does.
func appendPidLabel(dst []byte, label string, raw []byte) []byte {
	dst = append(dst, '"')
	dst = append(dst, label...)
	dst = append(dst, ' ')
	switch {
	case len(raw) >= 2 && raw[0] == '"':
		dst = append(dst, raw[1:len(raw)-1]...) // already escaped
	case isJSONInt(raw):
		if strings.Trim(string(raw), "-0") == "" {
			dst = append(dst, '0') // Python: int("-0") == 0
		} else {
			dst = append(dst, raw...)
		}
	case string(raw) == "true":
		dst = append(dst, "True"...)
	case string(raw) == "false":
		dst = append(dst, "False"...)
	case string(raw) == "null":
		dst = append(dst, "None"...)
	default:
		if f, err := strconv.ParseFloat(string(raw), 64); err == nil || string(raw) == "NaN" {
			if string(raw) == "NaN" {
				f = math.NaN()
			}
			dst = append(dst, pyFloatRepr(f)...)
		} else {
			// Objects and arrays as pids: keep their JSON text, escaped.
			q, _ := json.Marshal(string(raw))
			dst = append(dst, q[1:len(q)-1]...)
		}
	}
	return append(dst, '"')
}

func isJSONInt(b []byte) bool {
	if len(b) > 0 && b[0] == '-' {
		b = b[1:]
	}
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// pyFloatRepr formats like Python's repr(float).
func pyFloatRepr(f float64) string {
	switch {
	case math.IsNaN(f):
		return "nan"
	case math.IsInf(f, 1):
		return "inf"
	case math.IsInf(f, -1):
		return "-inf"
	}
	if a := math.Abs(f); a != 0 && (a < 1e-4 || a >= 1e16) {
		s := strconv.FormatFloat(f, 'e', -1, 64)
		// Go writes 1e-05, Python 1e-05 too; both use at least two exponent digits.
		return s
	}
	s := strconv.FormatFloat(f, 'f', -1, 64)
	if !strings.ContainsAny(s, ".") {
		s += ".0"
	}
	return s
}

// pyInt mirrors Python's int(x) on a decoded JSON value, as SGLang's _maybe_cast_int
// does: integers, floats truncated, bools, and strings that hold a decimal integer.
func pyInt(raw []byte) (int64, bool) {
	switch {
	case len(raw) == 0:
		return 0, false
	case raw[0] == '"':
		s := strings.TrimSpace(unquote(raw))
		s = strings.TrimPrefix(s, "+")
		if strings.Contains(s, "_") {
			// Python allows single underscores between digits.
			if strings.HasPrefix(s, "_") || strings.HasSuffix(s, "_") || strings.Contains(s, "__") || strings.HasPrefix(s, "-_") {
				return 0, false
			}
			s = strings.ReplaceAll(s, "_", "")
		}
		n, err := strconv.ParseInt(s, 10, 64)
		return n, err == nil && s != "" && s[0] != '+'
	case string(raw) == "true":
		return 1, true
	case string(raw) == "false":
		return 0, true
	}
	if isJSONInt(raw) {
		n, err := strconv.ParseInt(string(raw), 10, 64)
		return n, err == nil
	}
	f, err := strconv.ParseFloat(string(raw), 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || math.Abs(f) > 9e18 {
		return 0, false
	}
	return int64(f), true
}

// withSortIndex returns the args object raw with "sort_index" set to v (added when
// missing), as SGLang's event["args"]["sort_index"] = v does.
func withSortIndex(dst, args []byte, v int64) []byte {
	si := findKey(args, "sort_index")
	num := strconv.AppendInt(nil, v, 10)
	if si.ok() {
		dst = append(dst, args[:si.start]...)
		dst = append(dst, num...)
		return append(dst, args[si.end:]...)
	}
	end := bytes.LastIndexByte(args, '}')
	body := bytes.TrimSpace(args[1:end])
	dst = append(dst, args[:end]...)
	if len(body) > 0 {
		dst = append(dst, ',')
	}
	dst = append(dst, `"sort_index": `...)
	dst = append(dst, num...)
	return append(dst, args[end:]...)
}

// findKey returns the span of the last value of key in the object obj (already valid).
func findKey(obj []byte, key string) span {
	found := span{-1, -1}
	j := skipWS(obj, 1)
	if j >= len(obj) || obj[j] == '}' {
		return found
	}
	for j < len(obj) {
		ks := j
		ke, err := skipString(obj, j)
		if err != nil {
			return found
		}
		vs := skipWS(obj, skipWS(obj, ke)+1)
		ve, err := skipValue(obj, vs)
		if err != nil {
			return found
		}
		if unquote(obj[ks:ke]) == key {
			found = span{vs, ve}
		}
		j = skipWS(obj, ve)
		if j >= len(obj) || obj[j] != ',' {
			break
		}
		j = skipWS(obj, j+1)
	}
	return found
}

// tsNanos parses a Kineto timestamp in microseconds ("4589780676192.716") into
// nanoseconds without float rounding when it has at most three decimals.
func tsNanos(raw []byte) (int64, bool) {
	var n int64
	i, neg := 0, false
	if len(raw) > 0 && raw[0] == '-' {
		neg, i = true, 1
	}
	digits, frac, dot := 0, 0, false
	for ; i < len(raw); i++ {
		c := raw[i]
		switch {
		case c >= '0' && c <= '9':
			if dot {
				if frac == 3 {
					// More precision than a nanosecond: fall back to floats.
					return tsNanosFloat(raw)
				}
				frac++
			}
			if n > (math.MaxInt64-9)/10 {
				return tsNanosFloat(raw)
			}
			n = n*10 + int64(c-'0')
			digits++
		case c == '.' && !dot:
			dot = true
		default:
			return tsNanosFloat(raw)
		}
	}
	if digits == 0 {
		return 0, false
	}
	for ; frac < 3; frac++ {
		if n > math.MaxInt64/10 {
			return tsNanosFloat(raw)
		}
		n *= 10
	}
	if neg {
		n = -n
	}
	return n, true
}

func tsNanosFloat(raw []byte) (int64, bool) {
	f, err := strconv.ParseFloat(string(raw), 64)
	if err != nil || math.IsNaN(f) || math.Abs(f*1000) > 9e18 {
		return 0, false
	}
	return int64(math.Round(f * 1000)), true
}

// appendMicros writes ns as microseconds with three decimals, Kineto's format.
func appendMicros(dst []byte, ns int64) []byte {
	if ns < 0 {
		dst = append(dst, '-')
		ns = -ns
	}
	dst = strconv.AppendInt(dst, ns/1000, 10)
	frac := ns % 1000
	return append(dst, '.', byte('0'+frac/100), byte('0'+frac/10%10), byte('0'+frac%10))
}
