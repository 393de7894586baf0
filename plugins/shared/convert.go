package shared

import (
	"math"
	"time"

	backendv1 "github.com/nsys-agent/nsys-agent/proto/backend/v1"
)

// toproto/fromproto conversions between the contract's types and the wire's. The wire
// types go no further than this package (terraform-plugin-go's rule): a caller of the
// adapters only ever sees the contract. A nil message converts to the zero value, so a
// field an older peer did not send reads as "not set".

func infoToProto(i Info) *backendv1.Info {
	return &backendv1.Info{
		Name:         i.Name,
		Version:      i.Version,
		ApiVersion:   int64(i.APIVersion),
		Capabilities: mapSlice(i.Capabilities, func(c Capability) string { return string(c) }),
		Description:  i.Description,
		Options: mapSlice(i.Options, func(o Option) *backendv1.Option {
			return &backendv1.Option{Name: o.Name, Usage: o.Usage}
		}),
		CapturesWith: i.CapturesWith,
		Interfaces:   mapSlice(i.Interfaces, func(x Interface) string { return string(x) }),
	}
}

func infoFromProto(p *backendv1.Info) Info {
	return Info{
		Name:         p.GetName(),
		Version:      p.GetVersion(),
		APIVersion:   int(p.GetApiVersion()),
		Capabilities: mapSlice(p.GetCapabilities(), func(c string) Capability { return Capability(c) }),
		Description:  p.GetDescription(),
		Options: mapSlice(p.GetOptions(), func(o *backendv1.Option) Option {
			return Option{Name: o.GetName(), Usage: o.GetUsage()}
		}),
		CapturesWith: p.GetCapturesWith(),
		Interfaces:   mapSlice(p.GetInterfaces(), func(x string) Interface { return Interface(x) }),
	}
}

func targetToProto(t Target) *backendv1.Target {
	return &backendv1.Target{
		ServerUrl: t.ServerURL,
		Session:   t.Session,
		Mode:      t.Mode,
		Nsys:      t.Nsys,
		Pids:      mapSlice(t.PIDs, func(pid int) int64 { return int64(pid) }),
		Trace:     t.Trace,
	}
}

func targetFromProto(p *backendv1.Target) Target {
	return Target{
		ServerURL: p.GetServerUrl(),
		Session:   p.GetSession(),
		Mode:      p.GetMode(),
		Nsys:      p.GetNsys(),
		PIDs:      mapSlice(p.GetPids(), func(pid int64) int { return int(pid) }),
		Trace:     p.GetTrace(),
	}
}

func windowToProto(w Window) *backendv1.Window {
	return &backendv1.Window{
		Id:         w.ID,
		Dir:        w.Dir,
		Name:       w.Name,
		DurationNs: int64(w.Duration),
		Steps:      int64(w.Steps),
		Export:     w.Export,
		Options:    w.Options,
	}
}

func windowFromProto(p *backendv1.Window) Window {
	return Window{
		ID:       p.GetId(),
		Dir:      p.GetDir(),
		Name:     p.GetName(),
		Duration: time.Duration(p.GetDurationNs()),
		Steps:    int(p.GetSteps()),
		Export:   p.GetExport(),
		Options:  nilIfEmpty(p.GetOptions()),
	}
}

func resultToProto(r Result) *backendv1.Result {
	return &backendv1.Result{
		Artifacts: r.Artifacts,
		Warnings:  r.Warnings,
		Summary:   r.Summary,
	}
}

func resultFromProto(p *backendv1.Result) Result {
	r := Result{Artifacts: p.GetArtifacts(), Warnings: p.GetWarnings()}
	if s := p.GetSummary(); len(s) > 0 {
		r.Summary = s
	}
	return r
}

func progressToProto(e ProgressEvent) *backendv1.ProgressEvent {
	return &backendv1.ProgressEvent{Step: e.Step, Fraction: e.Fraction}
}

// progressFromProto keeps Fraction in 0..1 whatever a plugin sent: the agent publishes it
// as JSON, where a NaN or an infinity cannot be encoded at all.
func progressFromProto(p *backendv1.ProgressEvent) ProgressEvent {
	f := p.GetFraction()
	switch {
	case math.IsNaN(f) || f < 0:
		f = 0
	case f > 1:
		f = 1
	}
	return ProgressEvent{Step: p.GetStep(), Fraction: f}
}

func launchToProto(l Launch) *backendv1.Launch {
	return &backendv1.Launch{Argv: l.Argv, Env: l.Env, Arm: l.Arm, Changes: l.Changes}
}

func launchFromProto(p *backendv1.Launch) Launch {
	return Launch{Argv: p.GetArgv(), Env: p.GetEnv(), Arm: p.GetArm(), Changes: p.GetChanges()}
}

// nilIfEmpty: a map whose entries were all malformed decodes as an empty, non-nil map;
// the contract's zero is nil.
func nilIfEmpty(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	return m
}

// mapSlice converts every element; nil and empty stay nil, so a round trip of an empty
// list compares equal to the zero value.
func mapSlice[S ~[]E, E, T any](s S, f func(E) T) []T {
	if len(s) == 0 {
		return nil
	}
	out := make([]T, len(s))
	for i, e := range s {
		out[i] = f(e)
	}
	return out
}
