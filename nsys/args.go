package nsys

import (
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
)

// Mode is how a target is armed for capture windows.
type Mode string

const (
	// ModeStartLater: `nsys profile --start-later=true`; options fixed at launch, `nsys
	// start` carries none. Needs nsys 2024+ (probed, not assumed).
	ModeStartLater Mode = "start-later"
	// ModeLaunch: `nsys launch`, then `nsys start -o PATH` per window. Every nsys.
	ModeLaunch Mode = "launch"
	// ModeCudaProfiler: `nsys profile --capture-range=cudaProfilerApi
	// --capture-range-end=repeat`; the target opens windows itself with
	// cudaProfilerStart/Stop (SGLang's CUDA_PROFILER activity, vLLM's cuda profiler).
	ModeCudaProfiler Mode = "cuda-profiler"
)

// ParseMode validates a --arm value.
func ParseMode(s string) (Mode, error) {
	switch Mode(s) {
	case ModeStartLater, ModeLaunch, ModeCudaProfiler:
		return Mode(s), nil
	}
	return "", fmt.Errorf("unknown arming mode %q: use start-later, launch or cuda-profiler", s)
}

// DefaultMode is start-later where the nsys supports it, else launch.
func DefaultMode(c Caps) Mode {
	if c.StartLater {
		return ModeStartLater
	}
	return ModeLaunch
}

// DefaultTrace is what is injected at launch; it cannot be changed later.
var DefaultTrace = []string{"cuda", "nvtx"}

var sessionNameRE = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_-]{0,63}$`)

// ValidateSessionName enforces [A-Za-z][A-Za-z0-9_-]* (spaces break nsys 2022.4).
func ValidateSessionName(name string) error {
	if !sessionNameRE.MatchString(name) {
		return fmt.Errorf("%w %q: use a letter followed by letters, digits, '_' or '-' (at most 64)", ErrBadSessionName, name)
	}
	return nil
}

// LaunchSpec describes how to start a target under nsys.
type LaunchSpec struct {
	Mode    Mode
	Session string
	// Trace lists the APIs to trace (default DefaultTrace). Fixed for the session's life.
	Trace []string
	// Output is the absolute report path without extension: the first window's report in
	// start-later mode, the base name of range reports in cuda-profiler mode. Unused in
	// launch mode (each window gets its own -o on `nsys start`).
	Output string
	// SampleCPU turns CPU sampling and context-switch tracing on (off by default: on it
	// made a 4 s H100 window 2 GB instead of 130 kB).
	SampleCPU bool
	// PassThrough are extra nsys options from the user; an option given here replaces
	// the default of the same name.
	PassThrough []string
	// Command is the target's argv.
	Command []string
}

type opt struct{ name, value string }

// LaunchArgs builds the nsys argv (without the binary) that starts the target.
func LaunchArgs(c Caps, s LaunchSpec) ([]string, error) {
	if err := ValidateSessionName(s.Session); err != nil {
		return nil, err
	}
	if len(s.Command) == 0 {
		return nil, fmt.Errorf("no target command to launch")
	}
	trace := s.Trace
	if len(trace) == 0 {
		trace = DefaultTrace
	}
	for _, t := range trace {
		if !regexp.MustCompile(`^[a-z0-9-]+$`).MatchString(t) {
			return nil, fmt.Errorf("invalid --trace value %q", t)
		}
	}
	var sub string
	var opts []opt
	sampling := []opt{{"--sample", "none"}, {"--cpuctxsw", "none"}}
	if s.SampleCPU {
		sampling = []opt{{"--sample", "cpu"}, {"--cpuctxsw", "process-tree"}}
	}
	switch s.Mode {
	case ModeStartLater:
		if !c.StartLater {
			return nil, fmt.Errorf("this nsys has no --start-later (nsys 2024 or newer has it); use --arm launch")
		}
		if !filepath.IsAbs(s.Output) {
			return nil, fmt.Errorf("start-later needs an absolute output path, got %q", s.Output)
		}
		sub = "profile"
		opts = append(opts, opt{"--start-later", "true"})
		opts = append(opts, sampling...)
		opts = append(opts, opt{"--output", s.Output}, opt{"--force-overwrite", "true"})
	case ModeCudaProfiler:
		if !filepath.IsAbs(s.Output) {
			return nil, fmt.Errorf("cuda-profiler needs an absolute output path, got %q", s.Output)
		}
		sub = "profile"
		opts = append(opts, opt{"--capture-range", "cudaProfilerApi"})
		if c.CaptureRangeEnd {
			opts = append(opts, opt{"--capture-range-end", "repeat"})
		}
		opts = append(opts, sampling...)
		opts = append(opts, opt{"--output", s.Output}, opt{"--force-overwrite", "true"})
	case ModeLaunch:
		sub = "launch"
		// 2022.4 `launch` refuses --sample/--cpuctxsw: they go on `nsys start` instead.
		for _, o := range sampling {
			if c.LaunchAccepts(o.name) {
				opts = append(opts, o)
			}
		}
	default:
		return nil, fmt.Errorf("unknown arming mode %q", s.Mode)
	}
	opts = append([]opt{{"--session-new", s.Session}, {"--trace", strings.Join(trace, ",")}}, opts...)
	// Rank workers forked without exec are not traced without this.
	opts = append(opts, opt{"--trace-fork-before-exec", "true"})
	// Without node mode a graph replay is one opaque launch with no kernels.
	if hasCuda(trace) {
		opts = append(opts, opt{"--cuda-graph-trace", "node"})
	}
	args := []string{sub}
	given := passThroughNames(s.PassThrough)
	for _, o := range opts {
		if given[o.name] && o.name != "--session-new" {
			continue
		}
		args = append(args, o.name+"="+o.value)
	}
	args = append(args, s.PassThrough...)
	return append(args, s.Command...), nil
}

// StartArgs builds `nsys start` for one window. In start-later mode nsys refuses (or
// silently ignores) options on start, so none are given; the report lands in the
// caller's working directory. In launch mode the window's options and its absolute
// output path go here.
func StartArgs(c Caps, mode Mode, session, output string, sampleCPU bool) []string {
	args := []string{"start", "--session=" + session}
	if mode != ModeLaunch {
		return args
	}
	sampling := []opt{{"--sample", "none"}, {"--cpuctxsw", "none"}}
	if sampleCPU {
		sampling = []opt{{"--sample", "cpu"}, {"--cpuctxsw", "process-tree"}}
	}
	for _, o := range sampling {
		// Unprobed caps (nil map) keep the options: every known nsys accepts them here.
		if c.StartOptions == nil || c.StartOptions[o.name] {
			args = append(args, o.name+"="+o.value)
		}
	}
	return append(args, "--output="+output, "--force-overwrite=true")
}

// LaunchEnv is what the target's environment needs: NVTX capture ranges only fire with
// NSYS_NVTX_PROFILER_REGISTER_ONLY=0.
func LaunchEnv() []string { return []string{"NSYS_NVTX_PROFILER_REGISTER_ONLY=0"} }

func hasCuda(trace []string) bool {
	for _, t := range trace {
		if t == "cuda" {
			return true
		}
	}
	return false
}

// shortNames maps nsys short options to their long names, for de-duplication.
var shortNames = map[string]string{
	"-t": "--trace", "-s": "--sample", "-o": "--output", "-f": "--force-overwrite",
	"-c": "--capture-range", "-Y": "--start-later",
}

func passThroughNames(args []string) map[string]bool {
	names := map[string]bool{}
	for _, a := range args {
		if !strings.HasPrefix(a, "-") {
			continue
		}
		name := a
		if i := strings.IndexByte(a, '='); i >= 0 {
			name = a[:i]
		}
		if long, ok := shortNames[name]; ok {
			name = long
		}
		names[name] = true
	}
	return names
}

// SessionTrace is what a session launched with trace and the pass-through options traces:
// a --trace (or -t) among the pass-through options wins, as it does in LaunchArgs, then
// trace, then DefaultTrace.
func SessionTrace(trace, passThrough []string) []string {
	for i, a := range passThrough {
		name, value, hasValue := strings.Cut(a, "=")
		if long, ok := shortNames[name]; ok {
			name = long
		}
		if name != "--trace" {
			continue
		}
		if !hasValue && i+1 < len(passThrough) {
			value = passThrough[i+1]
		}
		return strings.Split(value, ",")
	}
	if len(trace) > 0 {
		return slices.Clone(trace)
	}
	return slices.Clone(DefaultTrace)
}
