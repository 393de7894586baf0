package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/nsys-agent/nsys-agent/agent/cost"
	"github.com/nsys-agent/nsys-agent/agent/windows"
)

// CostConfig says where the server's throughput comes from, for what each window cost.
type CostConfig struct {
	// Metric is a Prometheus metric the server exports at <server-url>/metrics (e.g.
	// SGLang's sglang:gen_throughput, with --enable-metrics); it wins over LogRegex.
	Metric string
	// LogRegex finds the throughput in the server's output (its first group is the
	// number); "" = SGLang's decode line (cost.SGLangLogRegex), "off" = no cost at all.
	LogRegex string
	Before   time.Duration // how far back "before" looks (default 60 s)
	After    time.Duration // how long "after" is measured once a window is ready (default 60 s)
	Slowdown float64       // after below before by more than this is a finding (default 0.10)
}

// costs measures every window's cost; a nil *costs measures nothing.
type costs struct {
	watcher *cost.Watcher
	stop    func()
}

// startCosts feeds a throughput series from the configured source. The windows' states
// reach it through observe (the Manager's OnChange), their costs leave through set.
func startCosts(ctx context.Context, cc CostConfig, serverURL string, sup *Supervisor, set func(string, json.RawMessage) error, log *slog.Logger) (*costs, error) {
	if strings.EqualFold(cc.LogRegex, "off") && cc.Metric == "" {
		return nil, nil
	}
	series := cost.NewSeries(0)
	m := cost.Measure{Before: cc.Before, After: cc.After, Slowdown: cc.Slowdown}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	var source string
	var unsubscribe func()
	if cc.Metric != "" {
		if serverURL == "" {
			cancel()
			return nil, fmt.Errorf("--cost-metric %s: the agent knows no server URL to scrape; add --server-url (the server's own HTTP address)", cc.Metric)
		}
		src := &cost.MetricSource{URL: strings.TrimRight(serverURL, "/") + "/metrics", Name: cc.Metric}
		source = src.String()
		go func() {
			defer close(done)
			cost.Scrape(ctx, src, series, time.Second, log.With("cost", source))
		}()
	} else {
		expr := cc.LogRegex
		if expr == "" {
			expr = cost.SGLangLogRegex
		}
		src, err := cost.NewLogSource(expr)
		if err != nil {
			cancel()
			return nil, err
		}
		source = src.String()
		unsubscribe = sup.Subscribe(cost.FollowLines(src, series))
		close(done)
	}
	w := cost.NewWatcher(series, source, m, set, log)
	return &costs{watcher: w, stop: func() {
		cancel()
		<-done
		if unsubscribe != nil {
			unsubscribe()
		}
		w.Close()
	}}, nil
}

// observe is the Manager's OnChange hook for costs.
func (c *costs) observe(old windows.State, m windows.Manifest) {
	if c != nil {
		c.watcher.Observe(old, m)
	}
}

func (c *costs) close() {
	if c != nil {
		c.stop()
	}
}
