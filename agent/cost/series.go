// Package cost measures what a window cost the server: its throughput before, during and
// after the window, from a source the user picks (a Prometheus metric the server exports,
// or a number in its log lines), kept as a bounded time series.
package cost

import (
	"sort"
	"sync"
	"time"
)

// Sample is one throughput reading.
type Sample struct {
	At    time.Time
	Value float64
}

// DefaultMaxSamples bounds a Series: at one log line or scrape a second this is over a
// day of history in about 1.6 MB.
const DefaultMaxSamples = 100_000

// Series keeps the newest samples in time order, at most max of them.
type Series struct {
	mu      sync.Mutex
	samples []Sample
	max     int
}

// NewSeries keeps at most max samples (0: DefaultMaxSamples).
func NewSeries(max int) *Series {
	if max <= 0 {
		max = DefaultMaxSamples
	}
	return &Series{max: max}
}

// Add records v at t. A sample older than the newest one is dropped: sources feed in
// time order, and the means below rely on it.
func (s *Series) Add(t time.Time, v float64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n := len(s.samples); n > 0 && t.Before(s.samples[n-1].At) {
		return
	}
	if len(s.samples) >= s.max {
		// Drop the oldest quarter at once, so adding stays O(1) amortized.
		drop := s.max / 4
		if drop == 0 {
			drop = 1
		}
		s.samples = append(s.samples[:0], s.samples[drop:]...)
	}
	s.samples = append(s.samples, Sample{At: t, Value: v})
}

// Mean is the mean of the samples in [from, to) and how many there were.
func (s *Series) Mean(from, to time.Time) (mean float64, n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := sort.Search(len(s.samples), func(i int) bool { return !s.samples[i].At.Before(from) })
	var sum float64
	for ; i < len(s.samples) && s.samples[i].At.Before(to); i++ {
		sum += s.samples[i].Value
		n++
	}
	if n == 0 {
		return 0, 0
	}
	return sum / float64(n), n
}

// Len is the number of samples kept.
func (s *Series) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.samples)
}
