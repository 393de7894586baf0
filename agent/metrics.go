package agent

import (
	"context"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/nsys-agent/nsys-agent/agent/windows"
	"github.com/nsys-agent/nsys-agent/torchprof/verdict"
)

// Metrics holds the agent's Prometheus collectors. The window manager reports finalize
// times through ObserveFinalize; windows by state are counted from the Service at scrape
// time, so they cannot drift from the manifests.
type Metrics struct {
	reg      *prometheus.Registry
	requests *prometheus.CounterVec
	finalize *prometheus.HistogramVec
	findings *prometheus.CounterVec
	verdicts *prometheus.CounterVec
	windows  *windowsCollector
}

// NewMetrics registers the agent's collectors on reg. A nil reg gets a new registry with
// the Go runtime and process collectors as well.
func NewMetrics(reg *prometheus.Registry) *Metrics {
	if reg == nil {
		reg = prometheus.NewRegistry()
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	m := &Metrics{
		reg: reg,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nsys_agent_api_requests_total",
			Help: "HTTP API requests by route pattern and status code.",
		}, []string{"route", "code"}),
		finalize: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "nsys_agent_window_finalize_seconds",
			Help: "Time from a window's stop to its terminal state, by backend and outcome.",
			// Finalizing takes seconds (nsys stop) to minutes (multi-rank torch traces).
			Buckets: []float64{0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600},
		}, []string{"backend", "state"}),
		findings: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nsys_agent_window_findings_total",
			Help: "Findings of the windows' verdicts, by finding ID (torchprof/verdict's IDs) and level.",
		}, []string{"id", "level"}),
		verdicts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nsys_agent_window_verdicts_total",
			Help: "Windows checked, by verdict: ok, warning or broken.",
		}, []string{"level"}),
		windows: &windowsCollector{desc: prometheus.NewDesc(
			"nsys_agent_windows", "Windows known to the agent, by state.", []string{"state"}, nil)},
	}
	reg.MustRegister(m.requests, m.finalize, m.findings, m.verdicts, m.windows)
	// Every series exists from the start, so a rate over them needs no first event.
	for _, l := range []verdict.Level{verdict.OK, verdict.Warning, verdict.Broken} {
		m.verdicts.WithLabelValues(l.String())
	}
	return m
}

// ObserveFinalize records how long a window took from stop to its terminal state.
func (m *Metrics) ObserveFinalize(backend string, state windows.State, d time.Duration) {
	if m == nil {
		return
	}
	m.finalize.WithLabelValues(backend, string(state)).Observe(d.Seconds())
}

// ObserveVerdict counts a window's verdict and each of its findings.
func (m *Metrics) ObserveVerdict(v verdict.Verdict) {
	if m == nil {
		return
	}
	m.verdicts.WithLabelValues(v.Level.String()).Inc()
	for _, f := range v.Findings {
		m.findings.WithLabelValues(f.ID, f.Level.String()).Inc()
	}
}

// ObserveFinding counts a finding added after the verdict (the window's cost).
func (m *Metrics) ObserveFinding(f verdict.Finding) {
	if m != nil {
		m.findings.WithLabelValues(f.ID, f.Level.String()).Inc()
	}
}

// Registry is where the collectors live, for callers that add their own.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

func (m *Metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

func (m *Metrics) observeRequest(route string, code int) {
	m.requests.WithLabelValues(route, strconv.Itoa(code)).Inc()
}

// windowsCollector counts windows by state from the Service on every scrape.
type windowsCollector struct {
	desc *prometheus.Desc
	svc  atomic.Pointer[Service]
}

func (c *windowsCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *windowsCollector) Collect(ch chan<- prometheus.Metric) {
	p := c.svc.Load()
	if p == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	counts := map[windows.State]int{}
	// Every state appears, zero included, so dashboards see a series before the first window.
	for _, s := range []windows.State{windows.StateRequested, windows.StateCapturing, windows.StateFinalizing, windows.StateReady, windows.StateFailed, windows.StateCancelled} {
		counts[s] = 0
	}
	for _, w := range (*p).Windows(ctx) {
		counts[w.State]++
	}
	for s, n := range counts {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(n), string(s))
	}
}
