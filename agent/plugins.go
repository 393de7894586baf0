package agent

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nsys-agent/nsys-agent/agent/backends"
	"github.com/nsys-agent/nsys-agent/agent/pluginhost"
	"github.com/nsys-agent/nsys-agent/agent/windows"
	"github.com/nsys-agent/nsys-agent/plugins/shared"
)

// Origins says where each backend comes from: built into the agent, or a plugin (with
// the plugin files that were skipped), for GET /v1/backends and `nsys-agent backends`.
type Origins struct {
	Builtin map[string]bool
	Plugins *pluginhost.Host // nil: no plugin dir
}

// BuiltinNames are the names of the backends built into the agent; no plugin may take one.
var BuiltinNames = []string{backends.NsysName, backends.CudaProfilerName}

// LoadPlugins launches the backend plugins in dir ("" = none) with the agent's
// environment less its secrets (a plugin is not the target, but has no more need of the
// token than nsys has).
func LoadPlugins(ctx context.Context, dir string, o pluginhost.Options) (*pluginhost.Host, error) {
	if dir == "" {
		return nil, nil
	}
	if o.Env == nil {
		o.Env = ChildEnv()
	}
	o.Reserved = append(slices.Clone(o.Reserved), BuiltinNames...)
	return pluginhost.Load(ctx, dir, o)
}

// PluginEntries lists the built-in entries, then one entry per plugin. A plugin that
// captures with a built-in (Info.CapturesWith) is joined to it with backends.Compose and
// cannot be used when that built-in cannot. configureErr holds what a plugin's Configure
// answered, by name: such a plugin is listed, unusable, with the error.
func PluginEntries(ctx context.Context, builtin []windows.Entry, plugins []*pluginhost.Plugin, configureErr map[string]error) ([]windows.Entry, error) {
	out := slices.Clone(builtin)
	for _, p := range plugins {
		info, _ := p.Info(ctx)
		why := ""
		if err := configureErr[info.Name]; err != nil {
			why = fmt.Sprintf("its Configure failed: %v", err)
		}
		var b shared.Backend = p
		if info.CapturesWith != "" {
			i := slices.IndexFunc(builtin, func(e windows.Entry) bool { return e.Info.Name == info.CapturesWith })
			if i < 0 {
				out = append(out, windows.Entry{Info: info, Backend: p, Unavailable: fmt.Sprintf("it captures with %q, which is not a built-in backend of this agent (built in: %s)", info.CapturesWith, strings.Join(BuiltinNames, ", "))})
				continue
			}
			capture := builtin[i]
			c, err := backends.Compose(info, capture.Backend, p, capture.Info)
			if err != nil {
				return nil, err
			}
			b = composed{c, capture.Backend}
			if why == "" && capture.Unavailable != "" {
				why = fmt.Sprintf("it captures with %s, which cannot be used: %s", capture.Info.Name, capture.Unavailable)
			}
		}
		e, err := windows.EntryOf(ctx, b, why)
		if err != nil {
			return nil, fmt.Errorf("backend plugin %s: %w", p.File(), err)
		}
		out = append(out, e)
	}
	return out, nil
}

// composed is a plugin joined to the built-in that captures its windows; it says it
// cannot take windows whenever the built-in says so (nsys after a hung stop).
type composed struct {
	*backends.Composed
	capture shared.Backend
}

func (c composed) Unavailable() string {
	if u, ok := c.capture.(interface{ Unavailable() string }); ok {
		if why := u.Unavailable(); why != "" {
			return "it captures with a backend that cannot be used: " + why
		}
	}
	return ""
}

// configureAll tells every backend that wants it about the target. An error is that
// backend's alone: it is listed unusable, the agent carries on.
func configureAll(ctx context.Context, builtin []windows.Entry, plugins []*pluginhost.Plugin, t shared.Target) (builtinErr, pluginErr map[string]error) {
	builtinErr, pluginErr = map[string]error{}, map[string]error{}
	configure := func(b shared.Backend) error {
		c, ok := b.(shared.Configurer)
		if !ok {
			return nil
		}
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		return c.Configure(cctx, t)
	}
	for _, e := range builtin {
		if err := configure(e.Backend); err != nil {
			builtinErr[e.Info.Name] = err
		}
	}
	for _, p := range plugins {
		if err := configure(p); err != nil {
			pluginErr[p.Name()] = err
		}
	}
	return builtinErr, pluginErr
}

// defaultFirst moves the entry named name to the front, making it the default backend
// of windows that name none (the registry's default is its first usable entry).
func defaultFirst(entries []windows.Entry, name string) []windows.Entry {
	i := slices.IndexFunc(entries, func(e windows.Entry) bool { return e.Info.Name == name })
	if i <= 0 {
		return entries
	}
	return append(append([]windows.Entry{entries[i]}, entries[:i]...), entries[i+1:]...)
}

// knownBackend checks `run --backend NAME` before anything is launched: NAME must be a
// built-in or a loaded plugin. It returns the plugin (nil for a built-in).
func knownBackend(name string, host *pluginhost.Host) (*pluginhost.Plugin, error) {
	if slices.Contains(BuiltinNames, name) {
		return nil, nil
	}
	var names []string
	for _, p := range host.Plugins() {
		if p.Name() == name {
			return p, nil
		}
		names = append(names, p.Name())
	}
	for _, s := range host.Skipped() {
		if s.Name == name {
			return nil, configErrorf("--backend %s: its plugin %s was skipped: %s", name, s.Path, s.Reason)
		}
	}
	where := "no plugin dir"
	if host != nil {
		where = "plugin dir " + host.Dir
	}
	return nil, configErrorf("--backend %q: no such backend (this agent has: %s; %s)", name, strings.Join(append(slices.Clone(BuiltinNames), names...), ", "), where)
}

// prepareLaunch lets the chosen plugin adjust the server's launch (shared.Launcher) and
// applies what it returns to cfg. An error stops the run before any server starts.
func prepareLaunch(ctx context.Context, cfg *Config, p *pluginhost.Plugin) (changes []string, err error) {
	if p == nil {
		return nil, nil
	}
	if info, _ := p.Info(ctx); !info.Implements(shared.InterfaceLauncher) {
		return nil, nil
	}
	in := shared.Launch{Argv: slices.Clone(cfg.Command), Env: slices.Clone(cfg.Env), Arm: cfg.Arm}
	out, err := p.PrepareLaunch(ctx, in)
	if err != nil {
		return nil, fmt.Errorf("backend %s refused the launch: %w", p.Name(), err)
	}
	if len(out.Argv) == 0 {
		return nil, fmt.Errorf("backend %s returned an empty server command from PrepareLaunch (a bug in the plugin %s)", p.Name(), p.File())
	}
	if cfg.Arm != "" && out.Arm != "" && out.Arm != cfg.Arm {
		return nil, configErrorf("--backend %s arms the session with %s, but --arm %s was given; drop --arm or choose another backend", p.Name(), out.Arm, cfg.Arm)
	}
	cfg.Command, cfg.Env = out.Argv, out.Env
	if out.Arm != "" {
		cfg.Arm = out.Arm
	}
	return out.Changes, nil
}

// BackendStatuses lists a registry for GET /v1/backends and `nsys-agent backends`:
// every backend in registry order, then the plugin files that were skipped, unusable,
// with why.
func BackendStatuses(r *windows.Registry, o Origins) []BackendStatus {
	def := r.Default()
	plugins := map[string]*pluginhost.Plugin{}
	for _, p := range o.Plugins.Plugins() {
		plugins[p.Name()] = p
	}
	out := []BackendStatus{}
	for _, e := range r.Entries() {
		st := BackendStatus{Info: e.Info, Builtin: o.Builtin[e.Info.Name], Default: e.Info.Name == def, Unavailable: e.Unavailable}
		if st.Builtin {
			st.Source = SourceBuiltin
		}
		if p := plugins[e.Info.Name]; p != nil {
			st.Source, st.PID = p.File(), p.PID()
		}
		out = append(out, st)
	}
	for _, s := range o.Plugins.Skipped() {
		out = append(out, BackendStatus{Info: shared.Info{Name: s.Name}, Source: s.Path, Skipped: true, Unavailable: s.Reason})
	}
	return out
}
