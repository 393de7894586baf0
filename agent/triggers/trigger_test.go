package triggers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/nsys-agent/nsys-agent/agent/windows"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func ptr(v float64) *float64 { return &v }

// opener records the windows asked for and answers with the next scripted error.
type opener struct {
	errs  []error // consumed one per call; nil = success
	reqs  []windows.CreateRequest
	whos  []windows.Requester
	calls int
}

func (o *opener) open(ctx context.Context, req windows.CreateRequest, who windows.Requester) (*windows.Manifest, error) {
	o.calls++
	var err error
	if len(o.errs) > 0 {
		err, o.errs = o.errs[0], o.errs[1:]
	}
	if err != nil {
		return nil, err
	}
	o.reqs = append(o.reqs, req)
	o.whos = append(o.whos, who)
	return &windows.Manifest{ID: fmt.Sprintf("w%d", len(o.reqs)), State: windows.StateCapturing}, nil
}

func domain(kind error) error { return &windows.Error{Kind: kind, Msg: kind.Error()} }

// step is one observation at a fake time (seconds after t0).
type step struct {
	at    float64
	value float64
	has   bool
}

// TestDecisions drives one trigger through scripted observations on a fake clock and
// checks exactly which fired and why the others did not.
func TestDecisions(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 3, 0, 0, 0, time.UTC)
	tests := []struct {
		name      string
		spec      Spec
		steps     []step
		openErrs  []error
		fireAt    []float64 // seconds after t0 of the fires
		skipped   map[Reason]int
		lastWhy   Reason
		lastValue *float64
	}{
		{
			name: "plain match: cooldown between fires, then max",
			spec: Spec{Name: "oom", Log: "out of memory", Cooldown: "10s", Max: 2},
			// a match every 3 s: fires at 0, 12 (first past 10 s), then max.
			steps:   []step{{at: 0}, {at: 3}, {at: 6}, {at: 9}, {at: 12}, {at: 15}, {at: 30}},
			fireAt:  []float64{0, 12},
			skipped: map[Reason]int{ReasonCooldown: 3, ReasonMaxReached: 2},
			lastWhy: ReasonMaxReached,
		},
		{
			name:      "below: only values under the threshold fire",
			spec:      Spec{Name: "slow", Log: `gen throughput \(token/s\): (?P<value>[0-9.]+)`, Below: ptr(100), Cooldown: "0s", Max: 5},
			steps:     []step{{at: 0, value: 150, has: true}, {at: 1, value: 99.5, has: true}, {at: 2, value: 100, has: true}, {at: 3, value: 12, has: true}},
			fireAt:    []float64{1, 3},
			skipped:   map[Reason]int{},
			lastValue: ptr(12),
		},
		{
			name:    "above with the default cooldown of 60 s",
			spec:    Spec{Name: "fast", Log: `(?P<value>[0-9]+) tok/s`, Above: ptr(0)},
			steps:   []step{{at: 0, value: 5, has: true}, {at: 59, value: 5, has: true}, {at: 60, value: 5, has: true}},
			fireAt:  []float64{0, 60},
			skipped: map[Reason]int{ReasonCooldown: 1},
			lastWhy: ReasonCooldown,
		},
		{
			name:     "a window already capturing: no fire, no cooldown started, the next one fires",
			spec:     Spec{Name: "busy", Log: "spike", Cooldown: "30s"},
			steps:    []step{{at: 0}, {at: 1}, {at: 2}},
			openErrs: []error{domain(windows.ErrWindowActive), nil},
			fireAt:   []float64{1},
			skipped:  map[Reason]int{ReasonWindowActive: 1, ReasonCooldown: 1},
			lastWhy:  ReasonCooldown,
		},
		{
			name:     "the target down, then a refused start",
			spec:     Spec{Name: "down", Log: "spike", Cooldown: "0s"},
			steps:    []step{{at: 0}, {at: 1}},
			openErrs: []error{domain(windows.ErrTargetDown), domain(windows.ErrNoSpace)},
			skipped:  map[Reason]int{ReasonTargetDown: 1, ReasonStartFailed: 1},
			lastWhy:  ReasonStartFailed,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := compile(tc.spec)
			if err != nil {
				t.Fatal(err)
			}
			tr := newTrigger(c, slog.New(slog.DiscardHandler))
			op := &opener{errs: tc.openErrs}
			for _, s := range tc.steps {
				tr.handle(context.Background(), observation{at: t0.Add(time.Duration(s.at * float64(time.Second))), value: s.value, has: s.has}, op.open)
			}
			st := tr.status(t0.Add(time.Hour))
			var got []float64
			for _, f := range st.Fires {
				got = append(got, f.At.Sub(t0).Seconds())
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.fireAt) {
				t.Errorf("fired at %v, want %v", got, tc.fireAt)
			}
			if st.Fired != len(tc.fireAt) || len(op.reqs) != len(tc.fireAt) {
				t.Errorf("fired %d, opened %d windows, want %d", st.Fired, len(op.reqs), len(tc.fireAt))
			}
			if fmt.Sprint(st.Skipped) != fmt.Sprint(nilIfEmpty(tc.skipped)) {
				t.Errorf("skipped %v, want %v", st.Skipped, tc.skipped)
			}
			if tc.lastWhy != "" && (st.NotFired == nil || st.NotFired.Reason != tc.lastWhy || st.NotFired.Detail == "") {
				t.Errorf("not fired %+v, want reason %s with a detail", st.NotFired, tc.lastWhy)
			}
			if tc.lastValue != nil && (st.LastValue == nil || *st.LastValue != *tc.lastValue) {
				t.Errorf("last value %v, want %v", st.LastValue, *tc.lastValue)
			}
			for i, req := range op.reqs {
				if req.Name != tc.spec.Name || req.Duration != "5s" || req.Labels["trigger"] != tc.spec.Name || req.Labels["trigger_condition"] == "" {
					t.Errorf("window %d asked as %+v", i, req)
				}
				if op.whos[i].Trigger != windows.Fired(tc.spec.Name) || op.whos[i].Remote != "local" {
					t.Errorf("window %d requested by %+v", i, op.whos[i])
				}
				if f := st.Fires[i]; (f.Value == nil) != (req.Labels["trigger_value"] == "") {
					t.Errorf("fire %d value %v, label %q", i, f.Value, req.Labels["trigger_value"])
				}
			}
		})
	}
}

func nilIfEmpty(m map[Reason]int) map[Reason]int {
	if len(m) == 0 {
		return nil
	}
	return m
}

// TestCooldownUntilShownWhileCooling: the status says when the trigger may fire again,
// and stops saying it once it may, or once it never will (max reached).
func TestCooldownUntilShownWhileCooling(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 3, 0, 0, 0, time.UTC)
	c, err := compile(Spec{Name: "x", Log: "spike", Cooldown: "10s", Max: 2})
	if err != nil {
		t.Fatal(err)
	}
	tr := newTrigger(c, slog.New(slog.DiscardHandler))
	op := &opener{}
	tr.handle(context.Background(), observation{at: t0}, op.open)
	if st := tr.status(t0.Add(5 * time.Second)); st.CooldownUntil == nil || !st.CooldownUntil.Equal(t0.Add(10*time.Second)) {
		t.Errorf("cooldown until %v, want t0+10s", st.CooldownUntil)
	}
	if st := tr.status(t0.Add(11 * time.Second)); st.CooldownUntil != nil {
		t.Errorf("cooled down, still says until %v", st.CooldownUntil)
	}
	tr.handle(context.Background(), observation{at: t0.Add(11 * time.Second)}, op.open)
	if st := tr.status(t0.Add(12 * time.Second)); st.CooldownUntil != nil || st.Fired != 2 {
		t.Errorf("max reached: %+v", st)
	}
}

func TestCheckRefuses(t *testing.T) {
	tests := []struct {
		spec Spec
		want string
	}{
		{Spec{}, "needs a log regex"},
		{Spec{Log: "a", Metric: "m<1"}, "not both"},
		{Spec{Log: "(", Name: "x"}, "does not compile"},
		{Spec{Log: "no group", Below: ptr(1)}, "capture the number"},
		{Spec{Log: "(?P<value>[0-9]+)", Below: ptr(1), Above: ptr(2)}, "give one of them"},
		{Spec{Metric: "m<1", Below: ptr(1)}, "go with a log trigger"},
		{Spec{Metric: "m<=1"}, "only < and >"},
		{Spec{Metric: "m"}, "NAME<X"},
		{Spec{Metric: "1m<3"}, "not a Prometheus metric name"},
		{Spec{Metric: "m>x"}, "not a finite number"},
		{Spec{Log: "a", Name: "../x"}, "name"},
		{Spec{Log: "a", Duration: "0s"}, "at least"},
		{Spec{Log: "a", Duration: "2h"}, "at most"},
		{Spec{Log: "a", Cooldown: "soon"}, "a duration"},
		{Spec{Log: "a", Max: -1}, "between 1 and"},
		{Spec{Log: string(make([]byte, MaxRegexLen+1))}, "at most"},
	}
	for _, tc := range tests {
		err := Check(tc.spec)
		if err == nil || !errors.Is(err, windows.ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want ErrInvalid saying %q", tc.spec, err, tc.want)
		}
	}
	for _, ok := range []Spec{
		{Log: "x"},
		{Metric: "sglang:gen_throughput < 100"},
		{Metric: "sglang:num_queue_reqs>50", Duration: "2s", Cooldown: "0s", Max: 1},
		{Log: `gen throughput \(token/s\): (?P<value>[0-9.]+)`, Below: ptr(100)},
	} {
		if err := Check(ok); err != nil {
			t.Errorf("%+v refused: %v", ok, err)
		}
	}
}

func TestParseMetric(t *testing.T) {
	for in, want := range map[string]string{
		"sglang:gen_throughput<100":     "sglang:gen_throughput < 100",
		"vllm:num_requests_waiting > 5": "vllm:num_requests_waiting > 5",
		"x<-1.5e3":                      "x < -1500",
	} {
		name, c, err := ParseMetric(in)
		if err != nil || name+" "+c.String() != want {
			t.Errorf("%q: %q %q %v, want %q", in, name, c.String(), err, want)
		}
	}
}

// FuzzParseMetric: the condition comes from a flag or a request body; whatever it is,
// parsing never panics, and what it accepts prints back to the same condition.
func FuzzParseMetric(f *testing.F) {
	for _, s := range []string{"sglang:gen_throughput<100", "m>0", "m<=1", "<1", "m<NaN", "a b<1", "m<1<2"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		name, c, err := ParseMetric(s)
		if err != nil {
			return
		}
		again, c2, err := ParseMetric(name + c.String())
		if err != nil || again != name || c2 != c {
			t.Errorf("%q parsed as %q %v but %q reparses as %q %v (%v)", s, name, c, name+c.String(), again, c2, err)
		}
	})
}
