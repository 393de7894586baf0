package cost

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// SGLangLogRegex finds the decode throughput in SGLang's "Decode batch" log lines, e.g.
// "Decode batch, #running-req: 8, #token: 1432, token usage: 0.01, cuda graph: True,
// gen throughput (token/s): 1265.32, #queue-req: 0," (seen in real SGLang logs).
const SGLangLogRegex = `gen throughput \(token/s\): ([0-9]+(?:\.[0-9]+)?)`

// ValueGroup names the capture group that holds the number when a regex has several
// groups (`(?P<value>[0-9.]+)`), as triggers' --trigger-log takes it.
const ValueGroup = "value"

// LogSource reads a throughput from log lines with a regular expression whose capture
// group named ValueGroup, or else its only capture group, is the number.
type LogSource struct {
	re    *regexp.Regexp
	group int
}

// NewLogSource compiles expr; it must have a group named ValueGroup or exactly one
// capture group.
func NewLogSource(expr string) (*LogSource, error) {
	re, err := regexp.Compile(expr)
	if err != nil {
		return nil, fmt.Errorf("the throughput log regex %q does not compile: %w", expr, err)
	}
	if i := re.SubexpIndex(ValueGroup); i > 0 {
		return &LogSource{re: re, group: i}, nil
	}
	if re.NumSubexp() != 1 {
		return nil, fmt.Errorf("the throughput log regex %q has %d capture groups; it needs exactly one, around the number, or one named %s (e.g. %s)", expr, re.NumSubexp(), ValueGroup, SGLangLogRegex)
	}
	return &LogSource{re: re, group: 1}, nil
}

// Value is the number a line carries, if it matches.
func (l *LogSource) Value(line string) (float64, bool) {
	m := l.re.FindStringSubmatch(line)
	if m == nil {
		return 0, false
	}
	v, err := strconv.ParseFloat(m[l.group], 64)
	if err != nil {
		return 0, false
	}
	return v, true
}

// String describes the source for the manifest.
func (l *LogSource) String() string { return "log /" + l.re.String() + "/" }

// MaxMetricsBody bounds a /metrics answer: a server's whole exposition is a few hundred
// kB; anything larger is refused instead of read.
const MaxMetricsBody = 8 << 20

// MetricSource scrapes one metric from the server's Prometheus endpoint: a gauge (e.g.
// SGLang's sglang:gen_throughput) is read as is, summed over its series; a counter (e.g.
// a tokens total) becomes its rate between two scrapes.
type MetricSource struct {
	URL    string // e.g. http://127.0.0.1:30000/metrics
	Name   string
	Client *http.Client

	lastAt    time.Time
	lastTotal float64
	haveLast  bool
}

// ErrNoValue: the scrape worked but gave no throughput yet (a counter's first reading).
var ErrNoValue = errors.New("no value yet")

// Scrape reads the metric once at now; a counter's first scrape answers ErrNoValue.
func (m *MetricSource) Scrape(ctx context.Context, now time.Time) (float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, m.URL, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Accept", "text/plain;version=0.0.4")
	c := m.Client
	if c == nil {
		c = &http.Client{Timeout: 5 * time.Second}
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, fmt.Errorf("scraping %s: %w", m.URL, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("scraping %s: %s (does the server export metrics? SGLang needs --enable-metrics)", m.URL, resp.Status)
	}
	body := io.LimitReader(resp.Body, MaxMetricsBody+1)
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(body)
	if err != nil {
		return 0, fmt.Errorf("reading %s: %w", m.URL, err)
	}
	f, ok := families[m.Name]
	if !ok {
		return 0, fmt.Errorf("%s has no metric %q (it has %s)", m.URL, m.Name, someNames(families))
	}
	var total float64
	for _, mt := range f.GetMetric() {
		switch {
		case mt.GetGauge() != nil:
			total += mt.GetGauge().GetValue()
		case mt.GetCounter() != nil:
			total += mt.GetCounter().GetValue()
		case mt.GetUntyped() != nil:
			total += mt.GetUntyped().GetValue()
		}
	}
	if f.GetType() != dto.MetricType_COUNTER {
		return total, nil
	}
	prevAt, prev, had := m.lastAt, m.lastTotal, m.haveLast
	m.lastAt, m.lastTotal, m.haveLast = now, total, true
	dt := now.Sub(prevAt).Seconds()
	if !had || dt <= 0 || total < prev { // first reading, or the server restarted
		return 0, ErrNoValue
	}
	return (total - prev) / dt, nil
}

// String describes the source for the manifest.
func (m *MetricSource) String() string { return "metric " + m.Name }

func someNames(f map[string]*dto.MetricFamily) string {
	var names []string
	for n := range f {
		if strings.Contains(n, "throughput") || strings.Contains(n, "token") {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	if len(names) == 0 {
		return fmt.Sprintf("%d others, none about throughput or tokens", len(f))
	}
	if len(names) > 5 {
		names = names[:5]
	}
	return strings.Join(names, ", ")
}
