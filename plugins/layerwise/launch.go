package layerwise

// The launch hook: what an SGLang server needs to emit layer ranges a cuda-profiler
// window can record.

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"github.com/nsys-agent/nsys-agent/plugins/shared"
)

// The SGLang flags the backend needs (python/sglang/srt/server_args.py: both are
// store_true flags of the LLM server; the diffusion server behind `sglang serve` takes
// --enable-layerwise-nvtx-marker with an optional true/false value).
const (
	FlagLayerwise      = "--enable-layerwise-nvtx-marker"
	FlagNoCUDAGraph    = "--disable-cuda-graph"
	flagTorchCompile   = "--enable-torch-compile"
	armCudaProfiler    = "cuda-profiler"
	sglangLaunchModule = "sglang.launch_server"
)

var (
	// ErrNotSGLang: the launch command is not an SGLang server the backend can adjust.
	ErrNotSGLang = errors.New("not an SGLang server command")
	// ErrLaunchConflict: the command or the arming says the opposite of what the backend needs.
	ErrLaunchConflict = errors.New("launch conflicts with layerwise-nvtx")
)

// Why each change is made, for the user reading the launch's Changes.
const (
	whyLayerwise   = "SGLang pushes one NVTX range per module forward only with it, and the layer table is made of those ranges"
	whyNoCUDAGraph = "a CUDA graph replay runs the captured kernels without the modules' Python forward, so it emits no NVTX ranges and its kernels would belong to no layer (the server decodes slower without graphs: compare latencies with another backend, not this one)"
	whyArm         = "windows are SGLang's /start_profile with CUDA_PROFILER, which nsys records as cudaProfilerApi capture ranges"
)

// PrepareLaunch adds --enable-layerwise-nvtx-marker and --disable-cuda-graph to an SGLang
// server command (`python -m sglang.launch_server ...` or `sglang serve ...`) where they
// are absent, and arms the session for cudaProfilerApi ranges. Each change comes with a
// line saying why.
//
// A command it does not recognise as SGLang is refused rather than passed on: the server
// takes minutes to start, and one started without the flags gives windows with no layer
// table. A command that already carries both flags is taken as it is (an SGLang started
// through a wrapper script). A flag turned off (--disable-cuda-graph=false,
// --enable-layerwise-nvtx-marker false, --no-...) and an arming other than cuda-profiler
// are refused, naming them.
func (b *Backend) PrepareLaunch(ctx context.Context, l shared.Launch) (shared.Launch, error) {
	return prepareLaunch(l)
}

func prepareLaunch(l shared.Launch) (shared.Launch, error) {
	out := l
	out.Argv = slices.Clone(l.Argv)
	out.Changes = slices.Clone(l.Changes)
	if l.Arm != "" && l.Arm != armCudaProfiler {
		return l, shared.Wrap(shared.ErrUnsupported, fmt.Errorf("%w: the session is armed with %q, but layerwise-nvtx windows are cuda-profiler capture ranges (%s); drop --arm %s or use --arm %s", ErrLaunchConflict, l.Arm, whyArm, l.Arm, armCudaProfiler))
	}
	if len(l.Argv) == 0 {
		return l, shared.Wrap(shared.ErrUnsupported, fmt.Errorf("%w: no server command; layerwise-nvtx needs an SGLang server after --, e.g. `nsys-agent run --backend layerwise-nvtx -- python -m sglang.launch_server --model-path M`", ErrNotSGLang))
	}
	entry, args := sglangArgs(l.Argv)
	flags := []struct{ name, why string }{{FlagLayerwise, whyLayerwise}, {FlagNoCUDAGraph, whyNoCUDAGraph}}
	var missing []string
	for _, f := range flags {
		on, err := flagState(args, f.name)
		if err != nil {
			return l, shared.Wrap(shared.ErrUnsupported, err)
		}
		if !on {
			missing = append(missing, f.name)
		}
	}
	if entry == "" && len(missing) > 0 {
		return l, shared.Wrap(shared.ErrUnsupported, fmt.Errorf("%w: %q is neither `python -m %s` nor `sglang serve`, so nsys-agent cannot tell where SGLang's flags go; run the server as one of those, or add %s to its command yourself", ErrNotSGLang, filepath.Base(l.Argv[0]), sglangLaunchModule, strings.Join(missing, " ")))
	}
	for _, f := range flags {
		if slices.Contains(missing, f.name) {
			out.Argv = append(out.Argv, f.name)
			out.Changes = append(out.Changes, fmt.Sprintf("added %s to the server command: %s", f.name, f.why))
		}
	}
	if slices.Contains(args, flagTorchCompile) {
		out.Changes = append(out.Changes, "note: with "+flagTorchCompile+" SGLang's layer hooks push no range while torch.compile traces a module, so compiled modules can be missing from the layer table")
	}
	if l.Arm == "" {
		out.Arm = armCudaProfiler
		out.Changes = append(out.Changes, "armed the session with --arm "+armCudaProfiler+": "+whyArm)
	}
	return out, nil
}

// sglangArgs finds SGLang's entry point in argv (possibly behind a wrapper such as env,
// numactl or a full path to python) and returns it and the arguments SGLang parses.
// entry is "" when argv is not recognised; args is then all of argv.
func sglangArgs(argv []string) (entry string, args []string) {
	for i, a := range argv {
		switch {
		case a == "-m" && i+1 < len(argv) && argv[i+1] == sglangLaunchModule && i > 0 && isPython(argv[:i]):
			return "python -m " + sglangLaunchModule, argv[i+2:]
		case a == "-m"+sglangLaunchModule && i > 0 && isPython(argv[:i]):
			return "python -m " + sglangLaunchModule, argv[i+1:]
		case filepath.Base(a) == "sglang" && i+1 < len(argv) && argv[i+1] == "serve":
			return "sglang serve", argv[i+2:]
		}
	}
	return "", argv
}

// isPython reports whether a python interpreter comes before -m (python, python3,
// python3.12, /usr/bin/python3, possibly with interpreter options after it).
func isPython(before []string) bool {
	for _, a := range before {
		base := filepath.Base(a)
		if base == "python" || strings.HasPrefix(base, "python3") || strings.HasPrefix(base, "python2") {
			return true
		}
	}
	return false
}

// flagState says whether a boolean flag is on in args: present bare, =true, or followed
// by a true word. A flag set off (=false, a false word after it, or --no-FLAG) is an
// error naming it.
func flagState(args []string, name string) (bool, error) {
	on := false
	neg := "--no-" + strings.TrimPrefix(name, "--")
	for i, a := range args {
		switch {
		case a == neg || strings.HasPrefix(a, neg+"="):
			return false, fmt.Errorf("%w: the server command turns %s off (%s); layerwise-nvtx needs it on: remove %s", ErrLaunchConflict, name, a, a)
		case a == name:
			if i+1 < len(args) {
				if v, ok := boolWord(args[i+1]); ok {
					if !v {
						return false, fmt.Errorf("%w: the server command turns %s off (%s %s); layerwise-nvtx needs it on: remove %q", ErrLaunchConflict, name, a, args[i+1], args[i+1])
					}
				}
			}
			on = true
		case strings.HasPrefix(a, name+"="):
			v, ok := boolWord(strings.TrimPrefix(a, name+"="))
			if !ok || !v {
				return false, fmt.Errorf("%w: the server command sets %s; layerwise-nvtx needs %s on: write it bare", ErrLaunchConflict, a, name)
			}
			on = true
		}
	}
	return on, nil
}

// boolWord reads the words Python's argparse helpers take for a boolean value.
func boolWord(s string) (value, ok bool) {
	switch strings.ToLower(s) {
	case "true", "1", "yes", "y", "on":
		return true, true
	case "false", "0", "no", "n", "off":
		return false, true
	}
	return false, false
}
