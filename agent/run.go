package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nsys-agent/nsys-agent/agent/backends"
	"github.com/nsys-agent/nsys-agent/agent/pluginhost"
	"github.com/nsys-agent/nsys-agent/agent/windows"
	"github.com/nsys-agent/nsys-agent/internal/atomicfile"
	"github.com/nsys-agent/nsys-agent/internal/hostclock"
	"github.com/nsys-agent/nsys-agent/nsys"
	"github.com/nsys-agent/nsys-agent/plugins/shared"
)

// Run is the agent's life: listen, start the backend plugins (the one chosen with
// --backend may adjust the launch), launch the target under nsys (or adopt the one a
// previous agent left running), tell the backends about it, serve the API until ctx ends
// or the server fails, then finish the open window, end the target through nsys, kill
// the plugins and stop serving. Plugins are killed on every return.
func Run(ctx context.Context, cfg Config) error {
	if err := cfg.check(); err != nil {
		return err
	}
	log := cfg.Log
	for _, w := range cfg.tokenWarnings() {
		log.Warn(w)
	}
	if value, err := hostclock.Hook(); value != "" {
		log.Warn(clockHookWarning(value, hostclock.Shift(), err))
	}
	nsysPath, err := nsys.Locate(cfg.Nsys)
	if err != nil {
		return err
	}
	runner := nsys.NewExecRunner(nsysPath)
	runner.Env = ChildEnv() // nsys and whatever it starts never see the agent's token
	info, err := nsys.Probe(ctx, runner)
	if err != nil {
		return err
	}
	if cfg.Session == "" {
		cfg.Session = "nsys-agent-" + windows.NewID(time.Now())[17:]
	}
	if err := nsys.ValidateSessionName(cfg.Session); err != nil {
		return configErrorf("--session: %v", err)
	}
	store, err := windows.NewStore(cfg.DataDir)
	if err != nil {
		return err
	}
	unlock, err := LockDataDir(store.Root)
	if err != nil {
		return err
	}
	defer unlock()
	// Listen (and load TLS) before launching: a taken port or a bad certificate must not
	// cost a server start.
	ln, url, err := listen(cfg)
	if err != nil {
		return err
	}
	defer ln.Close()

	// Plugins run before the launch: the backend chosen with --backend may adjust it.
	host, err := LoadPlugins(ctx, cfg.PluginDir, pluginhost.Options{Log: log})
	if err != nil {
		return configErrorf("--plugin-dir: %v", err)
	}
	defer host.Close()
	var changes []string
	if cfg.Backend != "" {
		chosen, err := knownBackend(cfg.Backend, host)
		if err != nil {
			return err
		}
		if changes, err = prepareLaunch(ctx, &cfg, chosen); err != nil {
			return err
		}
	}
	mode := nsys.DefaultMode(info.Caps)
	if cfg.Arm != "" {
		if mode, err = nsys.ParseMode(cfg.Arm); err != nil {
			return configErrorf("--arm: %v", err)
		}
	}

	ctl := &nsys.Controller{Runner: runner, Info: info, Session: cfg.Session, Mode: mode,
		SampleCPU: cfg.SampleCPU, StopTimeout: cfg.StopTimeout, MaxStateAge: 3 * time.Second,
		Log: func(f string, a ...any) { log.Debug(fmt.Sprintf(f, a...)) }}
	t, err := launchOrAdopt(ctx, cfg, store.Root, ctl, nsysPath, info)
	if err != nil {
		return err
	}
	// From here on the agent owns a running server: every return path ends it.
	if t.adopted != nil && len(changes) > 0 {
		log.Warn("the running server of a previous agent was adopted: backend "+cfg.Backend+"'s launch changes apply to the next launch only", "changes", changes)
		changes = nil
	}
	for _, c := range changes {
		log.Info("launch changed by backend", "backend", cfg.Backend, "change", c)
	}
	// The server's address comes first: the cuda-profiler backend opens windows there.
	serverURL := cfg.ServerURL
	if t.adopted != nil {
		serverURL = t.adopted.ServerURL
	} else if serverURL == "" && cfg.ServerURLFile != "" {
		serverURL = waitURLFile(ctx, cfg.ServerURLFile, t.sup)
	}
	// Before the windows take over, a failure ends the server this agent launched.
	stopTarget := func(err error) error {
		_ = t.sup.Stop(30 * time.Second)
		return err
	}
	builtin, err := backends.Builtin(ctx, ctl, cfg.Version, nil,
		backends.BuiltinOptions{ServerURL: serverURL, RangeWait: backends.RangeWaitFromEnv(), TargetLog: targetLogPath(store.Root)})
	if err != nil {
		return stopTarget(err)
	}
	trace := nsys.SessionTrace(cfg.Trace, cfg.NsysArgs)
	if t.adopted != nil {
		trace = t.adopted.Trace // the running session's, whatever this run was told
	}
	target := shared.Target{ServerURL: serverURL, Session: ctl.Session, Mode: string(ctl.Mode), Nsys: nsysPath, PIDs: t.sup.Ranks(), Trace: trace}
	builtinErr, pluginErr := configureAll(ctx, builtin, host.Plugins(), target)
	for i, e := range builtin {
		if err := builtinErr[e.Info.Name]; err != nil && e.Unavailable == "" {
			builtin[i].Unavailable = "its Configure failed: " + err.Error()
		}
	}
	for name, err := range pluginErr {
		log.Warn("backend plugin unusable: its Configure failed", "backend", name, "err", err)
	}
	entries, err := PluginEntries(ctx, builtin, host.Plugins(), pluginErr)
	if err != nil {
		return stopTarget(err)
	}
	if cfg.Backend != "" {
		entries = defaultFirst(entries, cfg.Backend)
		if why := entries[0].Unavailable; why != "" {
			log.Warn("the --backend chosen cannot take windows; windows default to the first usable backend", "backend", cfg.Backend, "why", why)
		}
	}
	registry, err := windows.NewRegistry(entries...)
	if err != nil {
		return stopTarget(err)
	}
	metrics := NewMetrics(nil)
	// Set once the Manager exists: they record through it what they learn of its windows.
	// The Manager may report a change from its own goroutines before that, hence atomics.
	var costWatch atomic.Pointer[costs]
	var checks atomic.Pointer[verdicts]
	mgr, err := windows.New(windows.Options{
		Store: store, Backends: registry, Target: t.sup, TargetLog: targetLogPath(store.Root), Session: ctl.Session, Log: log,
		Adopt: t.adoptCapture, AdoptBackend: backends.NsysName, MinFree: cfg.MinFree,
		MaxBytes: cfg.MaxBytes, KeepWindows: cfg.KeepWindows, MaxWindowBytes: cfg.MaxWindowBytes, // retention (issue 15, item 3)
		OnChange: func(old windows.State, m windows.Manifest) {
			if m.State.Terminal() && !old.Terminal() && m.StoppedAt != nil && m.FinishedAt != nil {
				metrics.ObserveFinalize(m.Backend, m.State, m.FinishedAt.Sub(*m.StoppedAt))
			}
			costWatch.Load().observe(old, m)
			checks.Load().observe(old, m)
		},
	})
	if err != nil {
		return stopTarget(err)
	}
	verdictChecks := newVerdicts(mgr, store, metrics, t.sup.Ranks, nsysPath, info.Importer, log)
	checks.Store(verdictChecks)
	defer verdictChecks.close()
	setCost := func(id string, raw json.RawMessage) error {
		if err := mgr.SetCost(id, raw); err != nil {
			return err
		}
		verdictChecks.addCostFinding(id, raw)
		return nil
	}
	cw, err := startCosts(ctx, cfg.Cost, serverURL, t.sup, setCost, log)
	if err != nil {
		// A cost source that cannot work is the user's to fix, but no reason to stop
		// a server that is up: windows are captured without their cost.
		log.Warn("window costs are off", "err", err)
	}
	costWatch.Store(cw)
	defer cw.close()
	// Issue 15, triggers part: armed once the windows and their costs are.
	trig, err := startTriggers(cfg.Triggers, mgr, t.sup, serverURL, store.Root, ctl.Session, log)
	if err != nil {
		_ = mgr.Close(ctx)
		return stopTarget(err)
	}
	defer trig.Close()
	go rescanAfterPendingStops(ctx, mgr, ctl.Session, cfg.StopTimeout+time.Minute, log)
	// A fresh cached session row lets a start skip one `nsys sessions list` (~10 ms of the
	// ~110 ms a start takes); the check after the start always runs.
	go ctl.Watch(ctx, 2*time.Second)
	if err := SaveTarget(store.Root, &TargetRecord{Session: ctl.Session, Mode: string(ctl.Mode), First: ctl.FirstOutput, Command: t.sup.Command,
		Nsys: nsysPath, PID: t.sup.PID(), Group: t.sup.ServerGroup(), ServerURL: serverURL, Trace: trace, StartedAt: time.Now().UTC()}); err != nil {
		log.Warn("recording the target for a restarted agent", "err", err)
	}

	svc := &daemon{Manager: mgr, version: cfg.Version, target: t.sup, origins: Origins{Builtin: map[string]bool{backends.NsysName: true, backends.CudaProfilerName: true}, Plugins: host},
		session: SessionStatus{Name: ctl.Session, Mode: string(ctl.Mode), Nsys: nsysPath, Version: info.Version},
		sessionState: func(ctx context.Context) (string, error) {
			// The watcher lists sessions every 2 s; status answers from that.
			if st, at, ok := ctl.WatchedState(); ok && time.Since(at) < 10*time.Second {
				return string(st), nil
			}
			s, err := ctl.State(ctx)
			return string(s), err
		}}
	svc.triggers = trig // issue 15, triggers part
	srv := newServer(svc, cfg, metrics)
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	if cfg.ReadyFile != "" {
		// Atomically: a script polling for it must never read it empty or half written.
		if err := atomicfile.Write(cfg.ReadyFile, []byte(url+"\n"), 0o600); err != nil {
			log.Warn("writing --ready-file", "err", err)
		}
		defer os.Remove(cfg.ReadyFile)
	}
	if cfg.Banner != nil {
		for _, c := range changes {
			fmt.Fprintf(cfg.Banner, "backend %s changed the server's launch: %s\n", cfg.Backend, c)
		}
		printBanner(cfg.Banner, url, cfg.Token != "", store.Root, ctl.Session, ctl.Mode, serverURL)
	}

	var runErr error
	select {
	case <-ctx.Done():
		log.Info("signal received: finishing the open window and stopping the target")
	case err := <-serveErr:
		runErr = fmt.Errorf("HTTP server: %w", err)
	}
	// Finish (or fail) the open window, then end the target through nsys, then the API.
	closeCtx, cancel := context.WithTimeout(context.Background(), cfg.StopTimeout+time.Minute)
	defer cancel()
	trig.Close() // no trigger opens a window while they close
	if err := mgr.Close(closeCtx); err != nil {
		log.Warn("closing windows", "err", err)
	}
	if err := t.sup.Stop(30 * time.Second); err != nil {
		log.Warn("stopping the target", "err", err)
		if left := (*ServerLeftError)(nil); errors.As(err, &left) {
			runErr = errors.Join(runErr, left)
		}
	}
	host.Close() // after the windows: a finalizing window may still need its plugin
	srv.shutdown(5 * time.Second)
	if exited, code := t.sup.Exited(); exited {
		log.Info("target ended", "exit_code", code)
		ClearTarget(store.Root)
	}
	return runErr
}

// rescanAfterPendingStops waits for `nsys stop`s a dead agent left running on the session
// to end (up to limit), then lists again what the windows it left hold: such a stop goes
// on writing the report after its agent is gone.
func rescanAfterPendingStops(ctx context.Context, mgr *windows.Manager, session string, limit time.Duration, log *slog.Logger) {
	deadline := time.Now().Add(limit)
	for pids := nsys.PendingStops(session); len(pids) > 0; pids = nsys.PendingStops(session) {
		if time.Now().After(deadline) {
			log.Warn("an nsys stop left by the previous agent is still running; its window's files are listed as they are", "pids", pids)
			break
		}
		log.Info("waiting for an nsys stop left by the previous agent", "pids", pids)
		select {
		case <-ctx.Done():
			return
		case <-time.After(500 * time.Millisecond):
		}
	}
	mgr.RescanLeftovers()
}

// waitURLFile waits (up to 30 s) for the server to write its address into file.
func waitURLFile(ctx context.Context, file string, sup *Supervisor) string {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if raw, err := os.ReadFile(file); err == nil && len(strings.TrimSpace(string(raw))) > 0 {
			return strings.TrimSpace(string(raw))
		}
		if exited, _ := sup.Exited(); exited {
			return ""
		}
		time.Sleep(100 * time.Millisecond)
	}
	return ""
}
