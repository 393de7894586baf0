package layerwise

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/nsys-agent/nsys-agent/plugins/shared"
)

func TestPrepareLaunch(t *testing.T) {
	both := []string{FlagLayerwise, FlagNoCUDAGraph}
	tests := []struct {
		name    string
		argv    []string
		arm     string
		added   []string // flags appended, in order
		armed   bool     // Arm set to cuda-profiler by the hook
		changes []string // substrings of the Changes, in order
	}{
		{"python -m launch_server", []string{"python", "-m", "sglang.launch_server", "--model-path", "M", "--tp", "2"}, "",
			both, true, []string{"added " + FlagLayerwise, "graph replay", "--arm cuda-profiler"}},
		{"python3 with a path and interpreter options", []string{"/usr/bin/python3.12", "-u", "-m", "sglang.launch_server", "--model-path", "M"}, "",
			both, true, nil},
		{"-m glued to the module", []string{"python3", "-msglang.launch_server", "--model-path", "M"}, "", both, true, nil},
		{"sglang serve", []string{"sglang", "serve", "--model-path", "M"}, "", both, true, nil},
		{"sglang serve, positional model, behind env", []string{"env", "CUDA_VISIBLE_DEVICES=0,1", "/opt/venv/bin/sglang", "serve", "Qwen/Qwen3-8B"}, "", both, true, nil},
		{"layerwise flag already there", []string{"python", "-m", "sglang.launch_server", FlagLayerwise}, "",
			[]string{FlagNoCUDAGraph}, true, []string{"added " + FlagNoCUDAGraph}},
		{"both there, armed already", []string{"sglang", "serve", "--model-path", "M", FlagNoCUDAGraph, FlagLayerwise}, "cuda-profiler",
			nil, false, nil},
		{"flag with a true value", []string{"sglang", "serve", "M", FlagLayerwise + "=true", FlagNoCUDAGraph, "true"}, "", nil, true, nil},
		{"flag followed by a true word", []string{"sglang", "serve", "M", FlagLayerwise, "1", FlagNoCUDAGraph}, "", nil, true, nil},
		{"torch compile gets a note", []string{"python", "-m", "sglang.launch_server", "--enable-torch-compile"}, "",
			both, true, []string{"added", "added", "torch.compile"}},
		{"a wrapper script that passes both flags itself", []string{"./serve.sh", FlagLayerwise, FlagNoCUDAGraph}, "",
			nil, true, []string{"--arm cuda-profiler"}},
		{"flags before the entry point are not SGLang's", []string{"python", FlagNoCUDAGraph, "-m", "sglang.launch_server"}, "",
			both, true, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := shared.Launch{Argv: slices.Clone(tc.argv), Arm: tc.arm, Env: []string{"A=1"}, Changes: []string{"earlier"}}
			out, err := New("test").PrepareLaunch(context.Background(), in)
			if err != nil {
				t.Fatal(err)
			}
			if want := append(slices.Clone(tc.argv), tc.added...); !slices.Equal(out.Argv, want) {
				t.Errorf("argv %q, want %q", out.Argv, want)
			}
			if !slices.Equal(in.Argv, tc.argv) {
				t.Errorf("the input argv was changed: %q", in.Argv)
			}
			if out.Arm != "cuda-profiler" {
				t.Errorf("arm %q, want cuda-profiler", out.Arm)
			}
			if !slices.Equal(out.Env, []string{"A=1"}) || out.Changes[0] != "earlier" {
				t.Errorf("env %q or earlier changes %q lost", out.Env, out.Changes)
			}
			changes := out.Changes[1:]
			if want := len(tc.added) + btoi(tc.armed); len(changes) < want {
				t.Errorf("changes %q: want one per added flag and one for arming", changes)
			}
			for i, c := range tc.changes {
				if i >= len(changes) || !strings.Contains(changes[i], c) {
					t.Errorf("change %d of %q lacks %q", i, changes, c)
				}
			}
			for _, c := range changes {
				if !strings.Contains(c, ": ") {
					t.Errorf("change %q does not say why", c)
				}
			}
			// Idempotent: a second pass changes nothing.
			again, err := prepareLaunch(shared.Launch{Argv: out.Argv, Arm: out.Arm})
			if err != nil || !slices.Equal(again.Argv, out.Argv) || len(again.Changes) != 0 && !strings.HasPrefix(again.Changes[0], "note:") {
				t.Errorf("second pass: %q %q %v", again.Argv, again.Changes, err)
			}
		})
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func TestPrepareLaunchRefuses(t *testing.T) {
	tests := []struct {
		name string
		argv []string
		arm  string
		is   error
		says []string
	}{
		{"not SGLang", []string{"vllm", "serve", "M"}, "", ErrNotSGLang, []string{`"vllm"`, "sglang serve", FlagLayerwise, FlagNoCUDAGraph}},
		{"a python script", []string{"python", "serve.py", FlagLayerwise}, "", ErrNotSGLang, []string{FlagNoCUDAGraph}},
		{"no command", nil, "", ErrNotSGLang, []string{"no server command"}},
		{"another module", []string{"python", "-m", "sglang.bench_one_batch"}, "", ErrNotSGLang, nil},
		{"armed for nsys windows", []string{"sglang", "serve", "M"}, "launch", ErrLaunchConflict, []string{`"launch"`, "--arm cuda-profiler"}},
		{"armed start-later", []string{"sglang", "serve", "M"}, "start-later", ErrLaunchConflict, nil},
		{"layerwise turned off", []string{"sglang", "serve", "M", FlagLayerwise + "=false"}, "", ErrLaunchConflict, []string{FlagLayerwise + "=false"}},
		{"layerwise followed by false", []string{"sglang", "serve", "M", FlagLayerwise, "false"}, "", ErrLaunchConflict, []string{`remove "false"`}},
		{"graphs turned back on", []string{"python", "-m", "sglang.launch_server", FlagNoCUDAGraph + "=0"}, "", ErrLaunchConflict, []string{FlagNoCUDAGraph}},
		{"negated flag", []string{"python", "-m", "sglang.launch_server", "--no-enable-layerwise-nvtx-marker"}, "", ErrLaunchConflict, []string{"--no-enable-layerwise-nvtx-marker"}},
		{"value that is no boolean", []string{"sglang", "serve", "M", FlagNoCUDAGraph + "=maybe"}, "", ErrLaunchConflict, []string{"write it bare"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := shared.Launch{Argv: tc.argv, Arm: tc.arm}
			out, err := New("test").PrepareLaunch(context.Background(), in)
			if !errors.Is(err, tc.is) || !errors.Is(err, shared.ErrUnsupported) {
				t.Fatalf("error %v, want %v (unsupported)", err, tc.is)
			}
			for _, s := range tc.says {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q lacks %q", err, s)
				}
			}
			if !slices.Equal(out.Argv, tc.argv) || out.Arm != tc.arm {
				t.Errorf("a refused launch came back changed: %+v", out)
			}
		})
	}
}

// FuzzPrepareLaunch: any argv (NUL-separated) is either refused with a typed error or
// comes back with both flags on, armed for cuda-profiler, its own arguments untouched and
// in place, and a second pass changing nothing. Seed corpus: testdata/fuzz/FuzzPrepareLaunch.
func FuzzPrepareLaunch(f *testing.F) {
	for _, s := range []string{
		"python\x00-m\x00sglang.launch_server\x00--model-path\x00M",
		"sglang\x00serve\x00M\x00--enable-layerwise-nvtx-marker\x00false",
		"./run.sh\x00--enable-layerwise-nvtx-marker\x00--disable-cuda-graph=1",
		"python3\x00-msglang.launch_server\x00--no-disable-cuda-graph",
		"",
	} {
		f.Add(s, "")
	}
	f.Add("sglang\x00serve", "launch")
	f.Fuzz(func(t *testing.T, joined, arm string) {
		var argv []string
		if joined != "" {
			argv = strings.Split(joined, "\x00")
		}
		out, err := prepareLaunch(shared.Launch{Argv: argv, Arm: arm})
		if err != nil {
			if !errors.Is(err, ErrNotSGLang) && !errors.Is(err, ErrLaunchConflict) {
				t.Fatalf("error %v is neither ErrNotSGLang nor ErrLaunchConflict", err)
			}
			return
		}
		if out.Arm != armCudaProfiler {
			t.Fatalf("arm %q", out.Arm)
		}
		if !slices.Equal(out.Argv[:len(argv)], argv) {
			t.Fatalf("argv %q does not start with the command %q", out.Argv, argv)
		}
		_, args := sglangArgs(out.Argv)
		for _, flag := range []string{FlagLayerwise, FlagNoCUDAGraph} {
			if on, err := flagState(args, flag); !on || err != nil {
				t.Fatalf("%q: %s is not on (%v)", out.Argv, flag, err)
			}
		}
		again, err := prepareLaunch(shared.Launch{Argv: out.Argv, Arm: out.Arm})
		if err != nil || !slices.Equal(again.Argv, out.Argv) {
			t.Fatalf("second pass: %q, %v", again.Argv, err)
		}
	})
}
