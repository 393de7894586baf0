// Command testplugin is a scripted backend plugin for the plugin host's tests: a real
// process served by shared.Serve, whose faults are chosen from outside.
//
// Its backend name is its file name after nsys-agent-backend-, so one build copied under
// several names is several plugins. NSYS_AGENT_TESTPLUGIN_<NAME> (NAME upper-cased, '-'
// as '_') holds comma-separated behaviours of the whole plugin:
//
//	name=X           answer Info as backend X
//	api=N            answer Info with backend API version N
//	handshake=N      speak go-plugin protocol version N
//	exit-at-start    write a line on stderr and exit 2 before serving
//	slow-info        take a minute to answer Info
//	captures-with=B  post-process windows captured by built-in B (Finalize only)
//	launcher         add TESTPLUGIN_LAUNCH=<name> to the server's environment
//	launch-fails     refuse the launch
//	configure-fails  refuse Configure
//
// A window picks a fault by its name (or its "mode" option): crash-stop... makes Stop
// exit the process with status 3, hang-stop... makes Stop never return.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"

	"github.com/nsys-agent/nsys-agent/plugins/shared"
)

func main() {
	name := strings.TrimPrefix(filepath.Base(os.Args[0]), "nsys-agent-backend-")
	spec := parseSpec(os.Getenv("NSYS_AGENT_TESTPLUGIN_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))))
	if _, ok := spec["exit-at-start"]; ok {
		fmt.Fprintln(os.Stderr, "testplugin: told to fail before serving (exit-at-start)")
		os.Exit(2)
	}
	b := &backend{name: name, spec: spec, started: map[string]bool{}}
	if v, ok := spec["name"]; ok {
		b.name = v
	}
	if v, ok := spec["handshake"]; ok {
		n, _ := strconv.Atoi(v)
		hs := shared.Handshake
		hs.ProtocolVersion = uint(n)
		plugin.Serve(&plugin.ServeConfig{HandshakeConfig: hs, Plugins: shared.PluginMap(b), GRPCServer: plugin.DefaultGRPCServer})
		return
	}
	shared.Serve(b)
}

func parseSpec(s string) map[string]string {
	spec := map[string]string{}
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			k, v, _ := strings.Cut(f, "=")
			spec[k] = v
		}
	}
	return spec
}

type backend struct {
	name string
	spec map[string]string

	mu      sync.Mutex
	target  shared.Target
	started map[string]bool
}

func (b *backend) has(k string) bool { _, ok := b.spec[k]; return ok }

func (b *backend) Info(context.Context) (shared.Info, error) {
	if b.has("slow-info") {
		time.Sleep(time.Minute)
	}
	api := shared.APIVersion
	if v, ok := b.spec["api"]; ok {
		api, _ = strconv.Atoi(v)
	}
	return shared.Info{Name: b.name, Version: "0.0.1-test", APIVersion: api,
		Description:  "scripted test backend",
		Capabilities: []shared.Capability{shared.CapSummary},
		Options:      []shared.Option{{Name: "mode", Usage: "crash-stop or hang-stop: the fault Stop injects"}},
		CapturesWith: b.spec["captures-with"]}, nil
}

func (b *backend) Configure(_ context.Context, t shared.Target) error {
	if b.has("configure-fails") {
		return errors.New("testplugin: told to refuse Configure (configure-fails)")
	}
	b.mu.Lock()
	b.target = t
	b.mu.Unlock()
	return nil
}

func (b *backend) PrepareLaunch(_ context.Context, l shared.Launch) (shared.Launch, error) {
	switch {
	case b.has("launch-fails"):
		return l, errors.New("testplugin: this server cannot be launched for " + b.name + " (launch-fails)")
	case b.has("launcher"):
		l.Env = append(l.Env, "TESTPLUGIN_LAUNCH="+b.name)
		l.Changes = append(l.Changes, "added TESTPLUGIN_LAUNCH="+b.name+" to the server's environment")
	}
	return l, nil
}

func (b *backend) Start(_ context.Context, w shared.Window) error {
	hclog.L().Info("testplugin starting a window", "window", w.ID)
	b.mu.Lock()
	b.started[w.ID] = true
	b.mu.Unlock()
	return writeJSON(filepath.Join(w.Dir, b.name+".start.json"), w)
}

func mode(w shared.Window) string {
	if m := w.Options["mode"]; m != "" {
		return m
	}
	return w.Name
}

func (b *backend) Stop(ctx context.Context, w shared.Window, p shared.Progress) (shared.Result, error) {
	b.mu.Lock()
	started, target := b.started[w.ID], b.target
	delete(b.started, w.ID)
	b.mu.Unlock()
	if !started {
		return shared.Result{}, fmt.Errorf("testplugin %s (pid %d) never started window %s", b.name, os.Getpid(), w.ID)
	}
	switch m := mode(w); {
	case strings.HasPrefix(m, "crash-stop"):
		// fd 2 itself: after Serve, os.Stderr is go-plugin's stdio stream, which an exit
		// may cut before it is sent; a crash's own words (a panic) go to fd 2 too.
		_, _ = syscall.Write(2, []byte("testplugin: crashing in Stop as told\n"))
		os.Exit(3)
	case strings.HasPrefix(m, "hang-stop"):
		hclog.L().Warn("testplugin hanging in Stop as told", "window", w.ID)
		select {}
	}
	p.Send(shared.ProgressEvent{Step: "writing", Fraction: 0.5})
	out := b.name + ".trace.json"
	err := writeJSON(filepath.Join(w.Dir, out), map[string]any{"window": w, "target": target, "pid": os.Getpid()})
	return shared.Result{Artifacts: []string{out}}, err
}

func (b *backend) Finalize(_ context.Context, w shared.Window, _ shared.Progress) (shared.Result, error) {
	entries, err := os.ReadDir(w.Dir)
	if err != nil {
		return shared.Result{}, err
	}
	var files []string
	for _, e := range entries {
		files = append(files, e.Name())
	}
	b.mu.Lock()
	target := b.target
	b.mu.Unlock()
	summary, _ := json.Marshal(map[string]any{"finalized_by": b.name, "files": files, "target": target})
	return shared.Result{Summary: summary}, nil
}

func writeJSON(path string, v any) error {
	raw, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, raw, 0o600)
}
