package pluginhost

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nsys-agent/nsys-agent/plugins/shared"
)

// Options tune Load. The zero value works: no logs, an empty environment, the default
// timeouts.
type Options struct {
	Log *slog.Logger
	// Env is each plugin's whole environment (the agent's, without its secrets);
	// go-plugin adds its handshake variables.
	Env []string
	// StartTimeout bounds launch to handshake (default 10 s; a Go plugin takes ~20 ms
	// on an idle machine, and the go-plugin default of a minute would let one stuck
	// binary hold the agent's start that long).
	StartTimeout time.Duration
	// InfoTimeout bounds the fingerprint, an Info call (default 5 s).
	InfoTimeout time.Duration
	// CallTimeout bounds the calls a window does not bound itself: Start, Configure,
	// PrepareLaunch (default 2 min).
	CallTimeout time.Duration
	// Reserved are names no plugin may take (the built-in backends').
	Reserved []string
}

func (o *Options) defaults() {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.StartTimeout == 0 {
		o.StartTimeout = 10 * time.Second
	}
	if o.InfoTimeout == 0 {
		o.InfoTimeout = 5 * time.Second
	}
	if o.CallTimeout == 0 {
		o.CallTimeout = 2 * time.Minute
	}
}

// Host holds the plugins the agent runs, and the files it did not.
type Host struct {
	Dir     string
	plugins []*Plugin
	skipped []Skip
}

// Load discovers the plugins in dir, launches each (all at once: a slow one delays the
// agent by its own start, not by the sum), fingerprints it with Info and keeps those
// that answer with a name of their own, in file-name order. Every file it does not keep
// is in Skipped with why, and logged. Kept plugins run until Close.
func Load(ctx context.Context, dir string, o Options) (*Host, error) {
	o.defaults()
	found, skipped, err := Discover(dir)
	if err != nil {
		return nil, err
	}
	type launched struct {
		pr   *process
		info shared.Info
		err  error
	}
	results := make([]launched, len(found))
	var wg sync.WaitGroup
	for i, c := range found {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pr, info, err := launch(ctx, c.Path, c.Name, o)
			results[i] = launched{pr, info, err}
		}()
	}
	wg.Wait()

	h := &Host{Dir: dir}
	taken := map[string]string{}
	for _, n := range o.Reserved {
		taken[n] = "a built-in backend"
	}
	for i, c := range found {
		r := results[i]
		if r.err != nil {
			skipped = append(skipped, Skip{Path: c.File, Name: c.Name, Reason: r.err.Error()})
			continue
		}
		if holder, dup := taken[r.info.Name]; dup {
			r.pr.kill("its name is taken")
			skipped = append(skipped, Skip{Path: c.File, Name: c.Name,
				Reason: fmt.Sprintf("it answers as backend %q, the name of %s; remove it or rebuild it under another name", r.info.Name, holder)})
			continue
		}
		taken[r.info.Name] = "the plugin " + c.File
		if r.info.Name != c.Name {
			o.Log.Warn("a backend plugin answers to another name than its file's", "file", c.File, "backend", r.info.Name)
		}
		o.Log.Info("backend plugin loaded", "backend", r.info.Name, "version", r.info.Version, "path", c.Path, "pid", r.pr.pid)
		h.plugins = append(h.plugins, &Plugin{file: c.File, path: c.Path, info: r.info, o: o, proc: r.pr, starts: 1})
	}
	slices.SortFunc(skipped, func(a, b Skip) int { return strings.Compare(a.Path, b.Path) })
	for _, s := range skipped {
		o.Log.Warn("backend plugin skipped", "path", s.Path, "reason", s.Reason)
	}
	h.skipped = skipped
	return h, nil
}

// Plugins are the kept plugins, in file-name order.
func (h *Host) Plugins() []*Plugin {
	if h == nil {
		return nil
	}
	return append([]*Plugin{}, h.plugins...)
}

// Skipped are the plugin files not used, with why.
func (h *Host) Skipped() []Skip {
	if h == nil {
		return nil
	}
	return append([]Skip{}, h.skipped...)
}

// Close kills every plugin process (go-plugin plugins ignore SIGINT: they are told to
// shut down over gRPC, then killed) and waits for them. Safe to call twice, and on nil.
func (h *Host) Close() {
	if h == nil {
		return
	}
	var wg sync.WaitGroup
	for _, p := range h.plugins {
		wg.Add(1)
		go func() { defer wg.Done(); p.close() }()
	}
	wg.Wait()
}
