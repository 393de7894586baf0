package cost

import (
	"fmt"
	"time"
)

// Span is when a window captured and when it was ready.
type Span struct {
	Started time.Time // capture confirmed
	Stopped time.Time // capture ended (stop, duration, steps)
	Ready   time.Time // finalized; "after" is measured from here
}

// Measure says how the three numbers are taken.
type Measure struct {
	Before   time.Duration // how far back before the start "before" looks (default 60 s)
	After    time.Duration // how long after the window was ready "after" is measured (default 60 s)
	Slowdown float64       // after/before below 1-Slowdown is a finding (default 0.10)
}

func (m Measure) withDefaults() Measure {
	if m.Before <= 0 {
		m.Before = time.Minute
	}
	if m.After <= 0 {
		m.After = time.Minute
	}
	if m.Slowdown <= 0 {
		m.Slowdown = 0.10
	}
	return m
}

// Reading is one of the three numbers: the mean throughput over a span and how many
// samples it rests on (0: no sample, and Value means nothing).
type Reading struct {
	Value   float64 `json:"value"`
	Samples int     `json:"samples"`
}

// Result is what a window cost, as the manifest records it.
type Result struct {
	Source string   `json:"source"`
	Before *Reading `json:"before,omitempty"`
	During *Reading `json:"during,omitempty"`
	After  *Reading `json:"after,omitempty"`
	// DuringRatio and AfterRatio are during/before and after/before (1 = no cost).
	DuringRatio *float64 `json:"during_ratio,omitempty"`
	AfterRatio  *float64 `json:"after_ratio,omitempty"`
	AfterFor    string   `json:"after_for"` // how long "after" was measured
	// Slowdown says, when the server was still slower after the window than before it by
	// more than the threshold, by how much and what to do; "" otherwise.
	Slowdown string `json:"slowdown,omitempty"`
	// Note says why a number is missing.
	Note string `json:"note,omitempty"`
}

// Compute takes the window's three readings from s.
func Compute(s *Series, source string, span Span, m Measure) Result {
	m = m.withDefaults()
	r := Result{Source: source, AfterFor: m.After.String()}
	reading := func(from, to time.Time) *Reading {
		v, n := s.Mean(from, to)
		if n == 0 {
			return nil
		}
		return &Reading{Value: v, Samples: n}
	}
	r.Before = reading(span.Started.Add(-m.Before), span.Started)
	r.During = reading(span.Started, span.Stopped)
	r.After = reading(span.Ready, span.Ready.Add(m.After))
	if r.Before == nil || r.Before.Value <= 0 {
		r.Note = fmt.Sprintf("no throughput reading in the %s before the window: nothing to compare with (is the server busy? does the source match its output?)", m.Before)
		return r
	}
	ratio := func(x *Reading) *float64 {
		if x == nil {
			return nil
		}
		q := x.Value / r.Before.Value
		return &q
	}
	r.DuringRatio, r.AfterRatio = ratio(r.During), ratio(r.After)
	switch {
	case r.AfterRatio == nil:
		r.Note = fmt.Sprintf("no throughput reading in the %s after the window was ready", m.After)
	case *r.AfterRatio < 1-m.Slowdown:
		r.Slowdown = fmt.Sprintf("the server's throughput was still %.0f%% below its level before the window for %s after it was ready (%.4g vs %.4g): the profiler's cost outlived the window; check the server (a torch profiler left running? a capture range still open?) and restart it if it does not recover",
			(1-*r.AfterRatio)*100, m.After, r.After.Value, r.Before.Value)
	}
	return r
}
