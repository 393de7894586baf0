package triggers

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nsys-agent/nsys-agent/agent/windows"
)

// metricsServer is a real HTTP server exporting a gauge and a counter in Prometheus'
// text format, as SGLang does with --enable-metrics; the test moves the gauge.
type metricsServer struct {
	*httptest.Server
	gauge   atomic.Int64 // sglang:gen_throughput × 100
	scrapes atomic.Int64
}

func newMetricsServer(t *testing.T, gauge float64) *metricsServer {
	m := &metricsServer{}
	m.gauge.Store(int64(gauge * 100))
	m.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/metrics" {
			http.NotFound(w, r)
			return
		}
		m.scrapes.Add(1)
		fmt.Fprintf(w, "# HELP sglang:gen_throughput The generation throughput (token/s).\n# TYPE sglang:gen_throughput gauge\nsglang:gen_throughput{model_name=\"m\"} %.2f\n", float64(m.gauge.Load())/100)
		fmt.Fprint(w, "# HELP sglang:num_requests_total Requests.\n# TYPE sglang:num_requests_total counter\nsglang:num_requests_total{model_name=\"m\"} 12\n")
	}))
	t.Cleanup(m.Close)
	return m
}

// windowsOpened is a thread-safe Opener that opens every window asked for, unless a
// window it opened is still "capturing" (its duration, on the real clock, not over).
type windowsOpened struct {
	mu   sync.Mutex
	reqs []windows.CreateRequest
	at   []time.Time
	busy time.Duration
}

func (w *windowsOpened) open(ctx context.Context, req windows.CreateRequest, who windows.Requester) (*windows.Manifest, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if n := len(w.at); n > 0 && time.Since(w.at[n-1]) < w.busy {
		return nil, &windows.Error{Kind: windows.ErrWindowActive, Msg: "window is already capturing"}
	}
	w.reqs, w.at = append(w.reqs, req), append(w.at, time.Now())
	return &windows.Manifest{ID: fmt.Sprintf("w%d", len(w.reqs))}, nil
}

func (w *windowsOpened) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.reqs)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestMetricTriggerAgainstRealScrapes: a metric trigger reads a real /metrics over
// HTTP; it does not fire while the gauge is above the threshold, fires as soon as it
// drops below, waits its cooldown between windows and stops at its maximum.
func TestMetricTriggerAgainstRealScrapes(t *testing.T) {
	srv := newMetricsServer(t, 1200)
	op := &windowsOpened{}
	s := New(Options{Open: op.open, ServerURL: srv.URL + "/", ScrapeEvery: 10 * time.Millisecond})
	defer s.Close()
	st, err := s.Add(Spec{Metric: "sglang:gen_throughput<100", Duration: "1s", Cooldown: "300ms", Max: 2})
	if err != nil {
		t.Fatal(err)
	}
	if st.Name != "metric" || st.Kind != KindMetric || st.Condition != "metric sglang:gen_throughput < 100" {
		t.Errorf("status %+v", st)
	}
	waitFor(t, "10 scrapes", func() bool { return srv.scrapes.Load() >= 10 })
	if n := op.count(); n != 0 {
		t.Fatalf("fired %d times at 1200 token/s, threshold < 100", n)
	}
	if v := s.List()[0].LastValue; v == nil || *v != 1200 {
		t.Errorf("last value %v, want 1200", v)
	}

	srv.gauge.Store(8750) // 87.5 token/s: below 100
	waitFor(t, "two windows", func() bool { return op.count() == 2 })
	scrapes := srv.scrapes.Load()
	waitFor(t, "30 more scrapes", func() bool { return srv.scrapes.Load() >= scrapes+30 })
	if n := op.count(); n != 2 {
		t.Fatalf("opened %d windows, max is 2", n)
	}
	op.mu.Lock()
	req := op.reqs[0]
	op.mu.Unlock()
	// The cooldown runs between the readings that fired (when a window's start returns
	// depends on the target; when its reason was seen does not).
	fires := s.List()[0].Fires
	if gap := fires[1].At.Sub(fires[0].At); gap < 300*time.Millisecond {
		t.Errorf("the second window came %s after the first; the cooldown is 300ms", gap)
	}
	if req.Duration != "1s" || req.Labels["trigger"] != "metric" || req.Labels["trigger_value"] != "87.5" {
		t.Errorf("window asked as %+v", req)
	}
	got := s.List()[0]
	if got.Fired != 2 || got.Skipped[ReasonCooldown] == 0 || got.Skipped[ReasonMaxReached] == 0 || got.NotFired.Reason != ReasonMaxReached {
		t.Errorf("status %+v", got)
	}
}

// TestMetricSourceErrorsAreShown: a metric the server does not export is reported as
// the trigger's source error (with the names it has), and clears once it appears.
func TestMetricSourceErrorsAreShown(t *testing.T) {
	srv := newMetricsServer(t, 50)
	s := New(Options{Open: (&windowsOpened{}).open, ServerURL: srv.URL, ScrapeEvery: 10 * time.Millisecond})
	defer s.Close()
	if _, err := s.Add(Spec{Name: "q", Metric: "sglang:num_queue_reqs>5"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a source error", func() bool { return s.List()[0].SourceError != "" })
	if e := s.List()[0].SourceError; !strings.Contains(e, `no metric "sglang:num_queue_reqs"`) || !strings.Contains(e, "sglang:gen_throughput") {
		t.Errorf("source error %q", e)
	}
}

// lines is a stand-in for the supervisor's output fan-out (Supervisor.Subscribe).
type lines struct {
	mu   sync.Mutex
	subs map[int]func(string)
	next int
}

func (l *lines) subscribe(fn func(string)) func() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.subs == nil {
		l.subs = map[int]func(string){}
	}
	id := l.next
	l.next++
	l.subs[id] = fn
	return func() { l.mu.Lock(); delete(l.subs, id); l.mu.Unlock() }
}

func (l *lines) emit(line string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, fn := range l.subs {
		fn(line)
	}
}

// TestLogTriggerFromLines: decode lines reach a log trigger through the output
// subscription; only those under the threshold fire; Close unsubscribes.
func TestLogTriggerFromLines(t *testing.T) {
	var out lines
	op := &windowsOpened{busy: time.Hour} // the first window captures for the whole test
	s := New(Options{Open: op.open, Lines: out.subscribe})
	st, err := s.Add(Spec{Log: `gen throughput \(token/s\): (?P<value>[0-9.]+)`, Below: ptr(100), Cooldown: "0s"})
	if err != nil {
		t.Fatal(err)
	}
	if st.Name != "log" {
		t.Errorf("default name %q", st.Name)
	}
	if _, err := s.Add(Spec{Name: "oom", Log: "CUDA out of memory"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Add(Spec{Log: "x"}); err != nil { // a second unnamed log trigger
		t.Fatal(err)
	}
	if _, err := s.Add(Spec{Name: "oom", Log: "y"}); !errors.Is(err, windows.ErrInvalid) {
		t.Errorf("a second trigger named oom: %v", err)
	}
	out.emit("[TP0] Decode batch, #running-req: 1, gen throughput (token/s): 812.00, #queue-req: 0,")
	out.emit("[TP0] Decode batch, #running-req: 1, gen throughput (token/s): 42.00, #queue-req: 0,")
	out.emit("[TP0] Decode batch, #running-req: 1, gen throughput (token/s): 41.00, #queue-req: 0,")
	waitFor(t, "one window and one refusal", func() bool {
		l := s.List()[0]
		return l.Fired == 1 && l.Skipped[ReasonWindowActive] == 1
	})
	// Each trigger has its own goroutine: the OOM line comes once the first window is open.
	out.emit("RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB")
	waitFor(t, "the OOM trigger's refusal", func() bool { return s.List()[1].Skipped[ReasonWindowActive] == 1 })
	l := s.List()
	if names := l[0].Name + "," + l[1].Name + "," + l[2].Name; names != "log,oom,log-2" {
		t.Errorf("names %s", names)
	}
	if l[0].Fired != 1 || l[0].Fires[0].Value == nil || *l[0].Fires[0].Value != 42 {
		t.Errorf("log trigger %+v", l[0])
	}
	if l[1].NotFired == nil || l[1].NotFired.Reason != ReasonWindowActive {
		t.Errorf("oom trigger %+v: a window was already capturing", l[1])
	}
	s.Close()
	out.mu.Lock()
	left := len(out.subs)
	out.mu.Unlock()
	if left != 0 {
		t.Errorf("%d subscriptions left after Close", left)
	}
	if _, err := s.Add(Spec{Log: "z"}); !errors.Is(err, windows.ErrTargetDown) {
		t.Errorf("Add after Close: %v", err)
	}
}

// TestAddRefusesWhatCannotWork: a source the agent does not have is refused up front.
func TestAddRefusesWhatCannotWork(t *testing.T) {
	s := New(Options{Open: (&windowsOpened{}).open})
	defer s.Close()
	if _, err := s.Add(Spec{Log: "x"}); !errors.Is(err, windows.ErrInvalid) || !strings.Contains(err.Error(), "no target output") {
		t.Errorf("log without lines: %v", err)
	}
	if _, err := s.Add(Spec{Metric: "m<1"}); !errors.Is(err, windows.ErrInvalid) || !strings.Contains(err.Error(), "--server-url") {
		t.Errorf("metric without server URL: %v", err)
	}
	var out lines
	s2 := New(Options{Open: (&windowsOpened{}).open, Lines: out.subscribe})
	defer s2.Close()
	for i := range MaxTriggers {
		if _, err := s2.Add(Spec{Log: fmt.Sprint(i)}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s2.Add(Spec{Log: "one too many"}); !errors.Is(err, windows.ErrInvalid) {
		t.Errorf("trigger %d: %v", MaxTriggers+1, err)
	}
}
