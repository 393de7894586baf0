package cost

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/nsys-agent/nsys-agent/agent/windows"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestComputeReadings(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	series := func(vals map[float64]float64) *Series {
		s := NewSeries(0)
		for sec := 0.0; sec < 200; sec++ {
			if v, ok := vals[sec]; ok {
				s.Add(at(sec), v)
			}
		}
		return s
	}
	// Throughput 100 until the window (60 s..70 s), 50 during it, then `after` from 75 s.
	mk := func(after float64) *Series {
		vals := map[float64]float64{}
		for sec := 0.0; sec < 200; sec++ {
			switch {
			case sec < 60:
				vals[sec] = 100
			case sec < 70:
				vals[sec] = 50
			case sec >= 75:
				vals[sec] = after
			}
		}
		return series(vals)
	}
	span := Span{Started: at(60), Stopped: at(70), Ready: at(75)}
	m := Measure{Before: 30 * time.Second, After: 30 * time.Second, Slowdown: 0.1}

	r := Compute(mk(100), "metric x", span, m)
	if r.Before.Value != 100 || r.Before.Samples != 30 || r.During.Value != 50 || r.During.Samples != 10 || r.After.Value != 100 || r.After.Samples != 30 {
		t.Errorf("readings %+v %+v %+v", r.Before, r.During, r.After)
	}
	if *r.DuringRatio != 0.5 || *r.AfterRatio != 1 || r.Slowdown != "" || r.AfterFor != "30s" {
		t.Errorf("recovered: %+v", r)
	}

	r = Compute(mk(60), "metric x", span, m)
	if math.Abs(*r.AfterRatio-0.6) > 1e-9 || !strings.Contains(r.Slowdown, "still 40% below") {
		t.Errorf("not recovered: ratio %v slowdown %q", *r.AfterRatio, r.Slowdown)
	}
	// Inside the threshold: 95 after 100 is no finding.
	if r = Compute(mk(95), "metric x", span, m); r.Slowdown != "" {
		t.Errorf("5%% is within the 10%% threshold: %q", r.Slowdown)
	}
	// Nothing before the window: no ratios, and a note saying why.
	empty := series(map[float64]float64{65: 50, 80: 100})
	if r = Compute(empty, "log /x/", span, m); r.Before != nil || r.DuringRatio != nil || !strings.Contains(r.Note, "nothing to compare") {
		t.Errorf("no before: %+v", r)
	}
}

func TestSeriesBoundedAndOrdered(t *testing.T) {
	s := NewSeries(8)
	t0 := time.Unix(0, 0)
	for i := range 20 {
		s.Add(t0.Add(time.Duration(i)*time.Second), float64(i))
	}
	s.Add(t0, 999) // out of order: dropped
	if n := s.Len(); n > 8 || n < 6 {
		t.Errorf("kept %d samples, bound 8", n)
	}
	if v, n := s.Mean(t0.Add(18*time.Second), t0.Add(time.Hour)); n != 2 || v != 18.5 {
		t.Errorf("newest samples: mean %v of %d", v, n)
	}
	if _, n := s.Mean(t0, t0.Add(5*time.Second)); n != 0 {
		t.Errorf("the oldest samples should be gone, found %d", n)
	}
}

func TestLogSource(t *testing.T) {
	src, err := NewLogSource(SGLangLogRegex)
	if err != nil {
		t.Fatal(err)
	}
	// A real SGLang decode line (from the project's seed logs), and one of the demo target's.
	for line, want := range map[string]float64{
		"[2026-01-01 08:50:20] Decode batch, #running-req: 1, #token: 24, token usage: 0.00, cuda graph: True, gen throughput (token/s): 35.99, #queue-req: 0,":       35.99,
		"[2026-12-01 00:00:00 TP0] Decode batch, #running-req: 4, #token: 40, token usage: 0.01, cuda graph: False, gen throughput (token/s): 812.00, #queue-req: 0,": 812,
	} {
		if v, ok := src.Value(line); !ok || v != want {
			t.Errorf("%q: %v %v, want %v", line, v, ok, want)
		}
	}
	if _, ok := src.Value("Prefill batch. #new-seq: 1, #new-token: 6"); ok {
		t.Error("a prefill line carries no decode throughput")
	}
	// With several groups, the one named value holds the number.
	named, err := NewLogSource(`(Decode) batch.*gen throughput \(token/s\): (?P<value>[0-9.]+)`)
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := named.Value("Decode batch, #running-req: 1, gen throughput (token/s): 35.99,"); !ok || v != 35.99 {
		t.Errorf("named group: %v %v, want 35.99", v, ok)
	}
	for _, bad := range []string{`gen throughput`, `(a)(b)`, `(`, `(?P<other>[0-9]+)(x)`} {
		if _, err := NewLogSource(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// fakeServer exports a throughput gauge and a token counter the test moves.
type fakeServer struct {
	gauge   atomic.Int64 // tokens/s
	counter atomic.Int64 // tokens so far
	srv     *httptest.Server
}

func newFakeServer(t *testing.T) *fakeServer {
	f := &fakeServer{}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/metrics" {
			http.NotFound(w, r)
			return
		}
		fmt.Fprintf(w, "# HELP sglang:gen_throughput The generation throughput (token/s).\n# TYPE sglang:gen_throughput gauge\n")
		fmt.Fprintf(w, "sglang:gen_throughput{model_name=\"m\"} %d\n", f.gauge.Load())
		fmt.Fprintf(w, "# TYPE sglang:generation_tokens_total counter\nsglang:generation_tokens_total{model_name=\"m\"} %d\n", f.counter.Load())
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func TestMetricSource(t *testing.T) {
	f := newFakeServer(t)
	ctx := context.Background()
	f.gauge.Store(250)
	g := &MetricSource{URL: f.srv.URL + "/metrics", Name: "sglang:gen_throughput"}
	if v, err := g.Scrape(ctx, time.Now()); err != nil || v != 250 {
		t.Errorf("gauge: %v %v", v, err)
	}
	c := &MetricSource{URL: f.srv.URL + "/metrics", Name: "sglang:generation_tokens_total"}
	t0 := time.Now()
	f.counter.Store(1000)
	if _, err := c.Scrape(ctx, t0); err != ErrNoValue {
		t.Errorf("a counter's first scrape has no rate: %v", err)
	}
	f.counter.Store(1500)
	if v, err := c.Scrape(ctx, t0.Add(2*time.Second)); err != nil || v != 250 {
		t.Errorf("counter rate: %v %v", v, err)
	}
	missing := &MetricSource{URL: f.srv.URL + "/metrics", Name: "nope"}
	if _, err := missing.Scrape(ctx, time.Now()); err == nil || !strings.Contains(err.Error(), "sglang:gen_throughput, sglang:generation_tokens_total") {
		t.Errorf("missing metric: %v", err)
	}
	bad := &MetricSource{URL: f.srv.URL + "/nothing", Name: "x"}
	if _, err := bad.Scrape(ctx, time.Now()); err == nil || !strings.Contains(err.Error(), "--enable-metrics") {
		t.Errorf("no metrics endpoint: %v", err)
	}
}

// TestWatcherOverRealScrapes: a server whose throughput drops during a window and then
// recovers (or not) gets the cost recorded on the window once the "after" span passed.
func TestWatcherOverRealScrapes(t *testing.T) {
	for _, tc := range []struct {
		name     string
		after    int64
		slowdown bool
	}{{"recovers", 100, false}, {"stays slow", 40, true}} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeServer(t)
			f.gauge.Store(100)
			s := NewSeries(0)
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() {
				defer close(done)
				Scrape(ctx, &MetricSource{URL: f.srv.URL + "/metrics", Name: "sglang:gen_throughput"}, s, 10*time.Millisecond, slog.New(slog.DiscardHandler))
			}()
			defer func() { cancel(); <-done }()

			var mu sync.Mutex
			got := map[string]Result{}
			set := func(id string, raw json.RawMessage) error {
				var r Result
				if err := json.Unmarshal(raw, &r); err != nil {
					return err
				}
				mu.Lock()
				got[id] = r
				mu.Unlock()
				return nil
			}
			span := 300 * time.Millisecond
			w := NewWatcher(s, "metric sglang:gen_throughput", Measure{Before: span, After: span, Slowdown: 0.1}, set, nil)
			defer w.Close()

			time.Sleep(span)
			started := time.Now()
			f.gauge.Store(50)
			time.Sleep(span)
			stopped := time.Now()
			f.gauge.Store(tc.after)
			m := windows.Manifest{ID: "w1", State: windows.StateReady, StartedAt: &started, StoppedAt: &stopped, FinishedAt: &stopped}
			w.Observe(windows.StateFinalizing, m)
			w.Observe(windows.StateFinalizing, m) // a second save of the same state schedules nothing more

			deadline := time.Now().Add(5 * time.Second)
			for {
				mu.Lock()
				r, ok := got["w1"]
				mu.Unlock()
				if ok {
					if r.Before == nil || r.During == nil || r.After == nil {
						t.Fatalf("missing readings: %+v", r)
					}
					// Scrapes straddle the edges by a tick; the means are close, not exact.
					if *r.DuringRatio > 0.65 || *r.DuringRatio < 0.4 {
						t.Errorf("during ratio %v, want about 0.5", *r.DuringRatio)
					}
					if (r.Slowdown != "") != tc.slowdown {
						t.Errorf("after ratio %v: slowdown %q, want finding %v", *r.AfterRatio, r.Slowdown, tc.slowdown)
					}
					return
				}
				if time.Now().After(deadline) {
					t.Fatal("no cost recorded 5 s after the window")
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
}

func TestWatcherFromLogLinesAndClose(t *testing.T) {
	src, err := NewLogSource(SGLangLogRegex)
	if err != nil {
		t.Fatal(err)
	}
	s := NewSeries(0)
	feed := FollowLines(src, s)
	feed("Decode batch, gen throughput (token/s): 10.5, #queue-req: 0,")
	feed("unrelated")
	if s.Len() != 1 {
		t.Fatalf("series has %d samples", s.Len())
	}
	calls := 0
	w := NewWatcher(s, src.String(), Measure{After: time.Hour}, func(string, json.RawMessage) error { calls++; return nil }, nil)
	now := time.Now()
	w.Observe(windows.StateCapturing, windows.Manifest{ID: "w", State: windows.StateReady, StartedAt: &now, FinishedAt: &now})
	w.Observe(windows.StateCapturing, windows.Manifest{ID: "never", State: windows.StateCancelled, FinishedAt: &now})
	w.Close() // the hour-long wait is dropped, and no goroutine is left (goleak)
	if calls != 0 {
		t.Errorf("a closed watcher recorded %d costs", calls)
	}
}
