package doctor

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Driver version files as the proprietary and the open kernel modules write them.
const (
	procVersion     = "NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.183.01  Sun May 12 19:39:15 UTC 2024\nGCC version:  gcc version 12.2.0 (Debian 12.2.0-14)\n"
	procVersionOpen = "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  580.65.06  Release Build  (dvs-builder@U16-I3-B03-4-3)  Tue Jul 15 22:49:55 UTC 2025\nGCC version:  gcc version 12.2.0\n"
)

// fakeSMI puts a scripted nvidia-smi first in PATH (a real process, printing what the
// real one prints for --query-gpu=index,name --format=csv,noheader).
func fakeSMI(t *testing.T, script string) {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "nvidia-smi"), []byte("#!/bin/sh\n"+script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))
}

// fakeDev makes a /dev with the named nodes as regular files (open O_RDWR works on them
// as on the real character devices).
func fakeDev(t *testing.T, names ...string) string {
	t.Helper()
	dir := t.TempDir()
	for _, n := range names {
		if err := os.WriteFile(filepath.Join(dir, n), nil, 0o666); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// fakeNsysDir makes bin/nsys with the given libraries beside it.
func fakeNsysDir(t *testing.T, libs ...string) string {
	t.Helper()
	dir := t.TempDir()
	for _, n := range append([]string{"nsys"}, libs...) {
		if err := os.WriteFile(filepath.Join(dir, n), nil, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Join(dir, "nsys")
}

func TestCheckGPU(t *testing.T) {
	twoGPUs := `echo "0, NVIDIA H200"; echo "1, NVIDIA H200"`
	for _, tc := range []struct {
		name   string
		proc   map[string]string
		smi    string // script body; "" = no nvidia-smi at all
		dev    []string
		libs   []string // beside nsys
		euid   int
		want   []string // "check status finding-substring", in order
		absent string   // a check that must not be reported
	}{
		{name: "no GPU", want: []string{"gpu ok no GPU: no NVIDIA driver is loaded"}, absent: "cupti"},
		{
			name: "H200s, everything usable", proc: map[string]string{"driver/nvidia/version": procVersionOpen},
			smi: twoGPUs, dev: []string{"nvidiactl", "nvidia-uvm"}, libs: []string{"libcupti.so.12.8", "libcupti.so.13.0"},
			want: []string{"gpu ok driver 580.65.06, 2 GPU(s): 0: NVIDIA H200, 1: NVIDIA H200", "cuda devices ok", "cupti ok nsys ships 2 CUPTI libraries"},
		},
		{
			name: "proprietary driver, nvidia-uvm not loaded", proc: map[string]string{"driver/nvidia/version": procVersion},
			smi: `echo "0, NVIDIA H100 80GB HBM3"`, dev: []string{"nvidiactl"}, libs: []string{"libcupti.so.12.4"},
			want: []string{"gpu ok driver 535.183.01, 1 GPU(s)", "cuda devices fail cannot open", "cupti ok"},
		},
		{
			name: "nvidia-smi missing, no CUPTI beside nsys", proc: map[string]string{"driver/nvidia/version": procVersion},
			dev:  []string{"nvidiactl", "nvidia-uvm"},
			want: []string{"gpu warn driver 535.183.01 loaded, but nvidia-smi failed: nvidia-smi not found", "cuda devices ok", "cupti warn no libcupti.so in or beside"},
		},
		{
			name: "nvidia-smi fails", proc: map[string]string{"driver/nvidia/version": procVersion},
			smi: `echo "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver."; exit 9`, dev: []string{"nvidiactl", "nvidia-uvm"}, libs: []string{"libcupti.so.12.4"},
			want: []string{"gpu warn nvidia-smi failed: exit status 9: NVIDIA-SMI has failed"},
		},
		{
			name: "no GPU visible", proc: map[string]string{"driver/nvidia/version": procVersion},
			smi: `exit 0`, dev: []string{"nvidiactl", "nvidia-uvm"}, libs: []string{"libcupti.so.12.4"},
			want: []string{"gpu fail nvidia-smi lists no GPU"},
		},
		{
			name: "counters for admins only", proc: map[string]string{"driver/nvidia/version": procVersion, "driver/nvidia/params": "ResmanDebugLevel: 4294967295\nRmProfilingAdminOnly: 1\n"},
			smi: twoGPUs, dev: []string{"nvidiactl", "nvidia-uvm"}, libs: []string{"libcupti.so.12.4"}, euid: 1000,
			want: []string{"gpu ok", "cuda devices ok", "cupti ok", "gpu counters warn RmProfilingAdminOnly: 1"},
		},
		{
			name: "counters for admins only, agent is root", proc: map[string]string{"driver/nvidia/version": procVersion, "driver/nvidia/params": "RmProfilingAdminOnly: 1\n"},
			smi: twoGPUs, dev: []string{"nvidiactl", "nvidia-uvm"}, libs: []string{"libcupti.so.12.4"},
			want: []string{"gpu ok", "cuda devices ok", "cupti ok"}, absent: "gpu counters",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.smi != "" {
				fakeSMI(t, tc.smi)
			} else {
				t.Setenv("PATH", t.TempDir())
			}
			s := &state{cfg: Config{ProcRoot: fakeProc(t, tc.proc), DevRoot: fakeDev(t, tc.dev...), Euid: uid(tc.euid)}, path: fakeNsysDir(t, tc.libs...)}
			rs := checkGPU(context.Background(), s)
			if len(rs) < len(tc.want) {
				t.Fatalf("got %d results %+v, want at least %d", len(rs), rs, len(tc.want))
			}
			for i, w := range tc.want {
				got := rs[i].Check + " " + string(rs[i].Status) + " " + rs[i].Finding
				if !strings.HasPrefix(w, rs[i].Check+" "+string(rs[i].Status)) || !strings.Contains(got, strings.TrimPrefix(w, rs[i].Check+" "+string(rs[i].Status)+" ")) {
					t.Errorf("result %d = %q, want %q", i, got, w)
				}
				if rs[i].Status != OK && rs[i].Fix == "" {
					t.Errorf("result %d (%s) says no fix", i, rs[i].Check)
				}
			}
			for _, r := range rs {
				if tc.absent != "" && r.Check == tc.absent {
					t.Errorf("%s reported: %+v", tc.absent, r)
				}
			}
		})
	}
}

// TestCuptiLibsSibling: CUPTI in a folder next to nsys' (a bundle that keeps it apart).
func TestCuptiLibsSibling(t *testing.T) {
	root := t.TempDir()
	for _, d := range []string{"bin", "cupti"} {
		if err := os.Mkdir(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"bin/nsys", "cupti/libcupti.so.12.8"} {
		if err := os.WriteFile(filepath.Join(root, f), nil, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	r := cuptiLibs(filepath.Join(root, "bin", "nsys"))
	if r.Status != OK || !strings.Contains(r.Finding, filepath.Join(root, "cupti")) {
		t.Errorf("got %+v", r)
	}
}
