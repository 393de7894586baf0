package nsys

import (
	"context"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
)

var caps2022 = Caps{ // what the probe finds on Debian's 2022.4.2
	LaunchOptions:   map[string]bool{"--session-new": true, "--trace": true, "--trace-fork-before-exec": true, "--cuda-graph-trace": true},
	StartOptions:    map[string]bool{"--session": true, "--output": true, "--sample": true, "--cpuctxsw": true, "--force-overwrite": true},
	CaptureRangeEnd: true,
}

var caps2025 = Caps{
	StartLater:      true,
	CaptureRangeEnd: true,
	LaunchOptions:   map[string]bool{"--session-new": true, "--trace": true, "--sample": true, "--cpuctxsw": true},
	StartOptions:    map[string]bool{"--session": true, "--output": true},
	NewStatsNames:   true,
}

func TestLaunchArgs(t *testing.T) {
	cmd := []string{"python3", "-m", "sglang.launch_server", "--tp", "2"}
	cases := []struct {
		name    string
		caps    Caps
		spec    LaunchSpec
		want    string
		wantErr string
	}{
		{name: "launch 2022.4 keeps sampling off start", caps: caps2022,
			spec: LaunchSpec{Mode: ModeLaunch, Session: "nsys-agent-1", Command: cmd},
			want: "launch --session-new=nsys-agent-1 --trace=cuda,nvtx --trace-fork-before-exec=true --cuda-graph-trace=node python3 -m sglang.launch_server --tp 2"},
		{name: "launch 2025 puts sampling on launch", caps: caps2025,
			spec: LaunchSpec{Mode: ModeLaunch, Session: "s", Command: cmd},
			want: "launch --session-new=s --trace=cuda,nvtx --sample=none --cpuctxsw=none --trace-fork-before-exec=true --cuda-graph-trace=node python3 -m sglang.launch_server --tp 2"},
		{name: "start-later", caps: caps2025,
			spec: LaunchSpec{Mode: ModeStartLater, Session: "s", Output: "/data/first", Command: cmd},
			want: "profile --session-new=s --trace=cuda,nvtx --start-later=true --sample=none --cpuctxsw=none --output=/data/first --force-overwrite=true --trace-fork-before-exec=true --cuda-graph-trace=node python3 -m sglang.launch_server --tp 2"},
		{name: "start-later needs support", caps: caps2022,
			spec:    LaunchSpec{Mode: ModeStartLater, Session: "s", Output: "/data/first", Command: cmd},
			wantErr: "no --start-later"},
		{name: "cuda-profiler", caps: caps2022,
			spec: LaunchSpec{Mode: ModeCudaProfiler, Session: "s", Output: "/d/range", Trace: []string{"cuda", "nvtx", "osrt"}, Command: cmd},
			want: "profile --session-new=s --trace=cuda,nvtx,osrt --capture-range=cudaProfilerApi --capture-range-end=repeat --sample=none --cpuctxsw=none --output=/d/range --force-overwrite=true --trace-fork-before-exec=true --cuda-graph-trace=node python3 -m sglang.launch_server --tp 2"},
		{name: "pass-through replaces a default", caps: caps2025,
			spec: LaunchSpec{Mode: ModeLaunch, Session: "s", PassThrough: []string{"--sample=cpu", "--cuda-graph-trace=graph"}, Command: []string{"x"}},
			want: "launch --session-new=s --trace=cuda,nvtx --cpuctxsw=none --trace-fork-before-exec=true --sample=cpu --cuda-graph-trace=graph x"},
		{name: "no cuda, no graph option", caps: caps2022,
			spec: LaunchSpec{Mode: ModeLaunch, Session: "s", Trace: []string{"osrt"}, Command: []string{"x"}},
			want: "launch --session-new=s --trace=osrt --trace-fork-before-exec=true x"},
		{name: "relative output refused", caps: caps2025,
			spec: LaunchSpec{Mode: ModeStartLater, Session: "s", Output: "rel/first", Command: cmd}, wantErr: "absolute"},
		{name: "bad session name", caps: caps2025,
			spec: LaunchSpec{Mode: ModeLaunch, Session: "my session", Command: cmd}, wantErr: "invalid session name"},
		{name: "no command", caps: caps2025,
			spec: LaunchSpec{Mode: ModeLaunch, Session: "s"}, wantErr: "no target command"},
		{name: "bad trace", caps: caps2025,
			spec: LaunchSpec{Mode: ModeLaunch, Session: "s", Trace: []string{"cuda;rm"}, Command: cmd}, wantErr: "invalid --trace"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := LaunchArgs(c.caps, c.spec)
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("want error containing %q, got %v (%v)", c.wantErr, err, got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if strings.Join(got, " ") != c.want {
				t.Errorf("got  %s\nwant %s", strings.Join(got, " "), c.want)
			}
		})
	}
}

func TestStartArgsLaunchMode(t *testing.T) {
	got := strings.Join(StartArgs(caps2022, ModeLaunch, "s", "/w/1/report", false), " ")
	want := "start --session=s --sample=none --cpuctxsw=none --output=/w/1/report --force-overwrite=true"
	if got != want {
		t.Errorf("got %s want %s", got, want)
	}
	got = strings.Join(StartArgs(caps2025, ModeLaunch, "s", "/w/1/report", false), " ")
	if strings.Contains(got, "--sample") {
		t.Errorf("a start that does not list --sample must not get it: %s", got)
	}
}

func TestValidateSessionName(t *testing.T) {
	for _, ok := range []string{"a", "nsys-agent-1", "A_b-9"} {
		if err := ValidateSessionName(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "1abc", "a b", "a/b", "a;b", "-x", strings.Repeat("a", 65)} {
		if err := ValidateSessionName(bad); !errors.Is(err, ErrBadSessionName) {
			t.Errorf("%q: want ErrBadSessionName, got %v", bad, err)
		}
	}
}

func TestGeneratedPaths(t *testing.T) {
	out := "Generating '/tmp/nsys-report-1351.qdstrm'\nGenerated:\n    /tmp/nx/w1.qdstrm\nSaved report file to \"/tmp/nx/w1.nsys-rep\"\n"
	got := strings.Join(generatedPaths(out), ",")
	if got != "/tmp/nsys-report-1351.qdstrm,/tmp/nx/w1.qdstrm,/tmp/nx/w1.nsys-rep" {
		t.Errorf("got %s", got)
	}
}

func TestImportNamesAMissingLibrary(t *testing.T) {
	dir := t.TempDir()
	imp := dir + "/QdstrmImporter"
	// A stand-in importer that fails the way the GPU machine's did without libdw.
	script := "#!/bin/sh\necho 'QdstrmImporter: error while loading shared libraries: libdw.so.1: cannot open shared object file: No such file or directory' >&2\nexit 127\n"
	if err := os.WriteFile(imp, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	q := dir + "/w.qdstrm"
	if err := os.WriteFile(q, []byte("raw"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := &Controller{Runner: NewExecRunner("/bin/false"), Info: &Info{Importer: imp}}
	_, err := c.Import(context.Background(), q)
	if err == nil || !strings.Contains(err.Error(), "libdw.so.1") || !strings.Contains(err.Error(), "libdw1") {
		t.Fatalf("want a hint naming libdw, got %v", err)
	}
}

func TestSessionTrace(t *testing.T) {
	for _, tc := range []struct {
		trace, pass, want []string
	}{
		{nil, nil, []string{"cuda", "nvtx"}},
		{[]string{"nvtx", "osrt"}, nil, []string{"nvtx", "osrt"}},
		{[]string{"cuda"}, []string{"--trace=nvtx"}, []string{"nvtx"}},
		{nil, []string{"--sample=none", "-t", "osrt,nvtx"}, []string{"osrt", "nvtx"}},
		{nil, []string{"-t=cuda"}, []string{"cuda"}},
	} {
		if got := SessionTrace(tc.trace, tc.pass); !slices.Equal(got, tc.want) {
			t.Errorf("SessionTrace(%v, %v) = %v, want %v", tc.trace, tc.pass, got, tc.want)
		}
	}
}
