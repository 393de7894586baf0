// Package triggers opens capture windows by themselves: when a line of the target's
// output matches (optionally with a number it carries below or above a threshold), or
// when a Prometheus metric the server exports crosses one. A trigger reads the sources of
// agent/cost, opens a window of its own duration through the state machine, waits out a
// cooldown between windows, stops after a maximum, and keeps why it did not fire when
// its condition held (cooldown, max reached, a window already capturing, the target
// down), for `nsys-agent triggers` and GET /v1/triggers.
package triggers

import (
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/nsys-agent/nsys-agent/agent/cost"
	"github.com/nsys-agent/nsys-agent/agent/windows"
)

// Defaults of a Spec's optional fields (the issue's: a 5 s window, at most one a minute,
// ten in all).
const (
	DefaultDuration = 5 * time.Second
	DefaultCooldown = 60 * time.Second
	DefaultMax      = 10
)

// Bounds on what a request may ask: a trigger is a goroutine and a regex over every
// output line, so their number and size are kept small.
const (
	MaxTriggers    = 32
	MaxFires       = 1000
	MaxRegexLen    = 1024
	MaxWindowLen   = time.Hour
	maxNameLen     = 64
	defaultLogName = "log"
	defaultMetName = "metric"
)

// Spec is a trigger as asked for: `run --trigger-*` flags or the body of POST
// /v1/triggers. Exactly one of Log and Metric is set.
type Spec struct {
	// Name labels the trigger and the windows it opens ([A-Za-z0-9._-], at most 64);
	// default "log" or "metric", numbered when taken.
	Name string `json:"name,omitempty"`
	// Log is a regular expression over the target's output lines. With Below or Above,
	// its group named "value" (or its only group) is the number compared.
	Log   string   `json:"log,omitempty"`
	Below *float64 `json:"below,omitempty"`
	Above *float64 `json:"above,omitempty"`
	// Metric is "NAME<X" or "NAME>X": a metric the server exports at
	// <server-url>/metrics (a gauge as is, a counter as its rate), compared with X.
	Metric string `json:"metric,omitempty"`
	// Duration is how long each window it opens captures (default 5s).
	Duration string `json:"duration,omitempty"`
	// Cooldown is the least time from one window it opened to the next (default 60s).
	Cooldown string `json:"cooldown,omitempty"`
	// Max is how many windows it opens in all (default 10).
	Max int `json:"max,omitempty"`
}

// Kinds of trigger.
const (
	KindLog    = "log"
	KindMetric = "metric"
)

// condition compares an observed number: op '<' or '>', or 0 for "any match".
type condition struct {
	op byte
	x  float64
}

func (c condition) holds(v float64) bool {
	switch c.op {
	case '<':
		return v < c.x
	case '>':
		return v > c.x
	}
	return true
}

func (c condition) String() string {
	if c.op == 0 {
		return ""
	}
	return fmt.Sprintf("%c %s", c.op, strconv.FormatFloat(c.x, 'g', -1, 64))
}

// compiled is a checked Spec with its defaults filled in.
type compiled struct {
	spec     Spec
	kind     string
	cond     condition
	match    *regexp.Regexp  // log trigger without a comparison
	logSrc   *cost.LogSource // log trigger with one
	metric   string
	duration time.Duration
	cooldown time.Duration
	max      int
}

// describe is the condition in words, e.g. `metric sglang:gen_throughput < 100`.
func (c *compiled) describe() string {
	if c.kind == KindMetric {
		return "metric " + c.metric + " " + c.cond.String()
	}
	s := "log /" + c.spec.Log + "/"
	if c.cond.op != 0 {
		s += " value " + c.cond.String()
	}
	return s
}

var namePattern = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)

func invalidf(format string, a ...any) error {
	return &windows.Error{Kind: windows.ErrInvalid, Msg: fmt.Sprintf(format, a...)}
}

// Check reports what is wrong with s, naming the field, without starting anything
// (`run` refuses bad flags before it launches the server).
func Check(s Spec) error {
	_, err := compile(s)
	return err
}

func compile(s Spec) (*compiled, error) {
	c := &compiled{spec: s, duration: DefaultDuration, cooldown: DefaultCooldown, max: DefaultMax}
	if s.Name != "" && (len(s.Name) > maxNameLen || !namePattern.MatchString(s.Name) || strings.Contains(s.Name, "..")) {
		return nil, invalidf("name %q: use letters, digits, '.', '_' and '-', at most %d, no '..'", s.Name, maxNameLen)
	}
	switch {
	case s.Log != "" && s.Metric != "":
		return nil, invalidf("a trigger watches the log or a metric, not both: give log or metric")
	case s.Log == "" && s.Metric == "":
		return nil, invalidf("a trigger needs a log regex (--trigger-log) or a metric condition (--trigger-metric 'NAME<X')")
	case s.Below != nil && s.Above != nil:
		return nil, invalidf("below and above: give one of them (a trigger compares one way)")
	case s.Metric != "" && (s.Below != nil || s.Above != nil):
		return nil, invalidf("below/above go with a log trigger; a metric trigger says its threshold itself: 'NAME<X' or 'NAME>X'")
	case s.Log != "":
		if err := c.compileLog(s); err != nil {
			return nil, err
		}
	default:
		name, cond, err := ParseMetric(s.Metric)
		if err != nil {
			return nil, invalidf("metric: %v", err)
		}
		c.kind, c.metric, c.cond = KindMetric, name, cond
	}
	var err error
	if c.duration, err = parseSpan("duration", s.Duration, DefaultDuration, time.Millisecond); err != nil {
		return nil, err
	}
	if c.duration > MaxWindowLen {
		return nil, invalidf("duration %s: at most %s (a trigger's window must end by itself, soon)", c.duration, MaxWindowLen)
	}
	if c.cooldown, err = parseSpan("cooldown", s.Cooldown, DefaultCooldown, 0); err != nil {
		return nil, err
	}
	switch {
	case s.Max < 0 || s.Max > MaxFires:
		return nil, invalidf("max %d: between 1 and %d windows (0 = the default, %d)", s.Max, MaxFires, DefaultMax)
	case s.Max > 0:
		c.max = s.Max
	}
	return c, nil
}

func (c *compiled) compileLog(s Spec) error {
	c.kind = KindLog
	if len(s.Log) > MaxRegexLen {
		return invalidf("log: the regex is %d bytes; at most %d", len(s.Log), MaxRegexLen)
	}
	switch {
	case s.Below != nil:
		c.cond = condition{op: '<', x: *s.Below}
	case s.Above != nil:
		c.cond = condition{op: '>', x: *s.Above}
	}
	if c.cond.op != 0 && (math.IsNaN(c.cond.x) || math.IsInf(c.cond.x, 0)) {
		return invalidf("below/above: a finite number, got %v", c.cond.x)
	}
	if c.cond.op == 0 {
		re, err := regexp.Compile(s.Log)
		if err != nil {
			return invalidf("log: the regex %q does not compile: %v", s.Log, err)
		}
		c.match = re
		return nil
	}
	src, err := cost.NewLogSource(s.Log)
	if err != nil {
		return invalidf("log: %v (with below/above the regex must capture the number, e.g. %s)", err,
			`gen throughput \(token/s\): (?P<value>[0-9.]+)`)
	}
	c.logSrc = src
	return nil
}

func parseSpan(field, s string, def, least time.Duration) (time.Duration, error) {
	if s == "" {
		return def, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, invalidf("%s %q: a duration such as 5s, 2m", field, s)
	}
	if d < least || d < 0 {
		return 0, invalidf("%s %s: must be at least %s", field, d, least)
	}
	return d, nil
}

var metricName = regexp.MustCompile(`^[A-Za-z_:][A-Za-z0-9_:]*$`)

// ParseMetric reads "NAME<X" or "NAME>X" (spaces allowed around the operator), e.g.
// "sglang:gen_throughput<100".
func ParseMetric(s string) (name string, c condition, err error) {
	i := strings.IndexAny(s, "<>")
	if i < 0 {
		return "", c, fmt.Errorf("%q: write NAME<X or NAME>X (e.g. 'sglang:gen_throughput<100')", s)
	}
	name, rest := strings.TrimSpace(s[:i]), s[i+1:]
	c.op = s[i]
	if strings.HasPrefix(rest, "=") {
		return "", c, fmt.Errorf("%q: only < and > are supported (a measured number is never exactly equal)", s)
	}
	if !metricName.MatchString(name) {
		return "", c, fmt.Errorf("%q: %q is not a Prometheus metric name ([A-Za-z_:][A-Za-z0-9_:]*)", s, name)
	}
	c.x, err = strconv.ParseFloat(strings.TrimSpace(rest), 64)
	if err != nil || math.IsNaN(c.x) || math.IsInf(c.x, 0) {
		return "", c, fmt.Errorf("%q: the threshold %q is not a finite number", s, strings.TrimSpace(rest))
	}
	return name, c, nil
}
