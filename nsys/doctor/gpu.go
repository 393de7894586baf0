package doctor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"
)

// driverVersionRE finds the version in /proc/driver/nvidia/version, proprietary
// ("NVIDIA UNIX x86_64 Kernel Module  580.65.06  ...") or open ("NVIDIA UNIX Open
// Kernel Module for x86_64  580.65.06  ...").
var driverVersionRE = regexp.MustCompile(`Kernel Module(?: for \S+)?\s+([0-9][0-9.]*)`)

// checkGPU reads the driver's /proc entry, asks nvidia-smi for the GPUs, and checks what
// nsys' CUDA tracing needs: the device nodes and a CUPTI beside nsys. Without a driver
// it says "no GPU" and nothing else: windows then record CPU-side activity only.
func checkGPU(ctx context.Context, s *state) []Result {
	raw, err := os.ReadFile(filepath.Join(s.cfg.ProcRoot, "driver/nvidia/version"))
	if errors.Is(err, os.ErrNotExist) {
		return []Result{{Check: "gpu", Status: OK,
			Finding: "no GPU: no NVIDIA driver is loaded, so windows record CPU and OS-runtime activity only"}}
	}
	if err != nil {
		return []Result{{Check: "gpu", Status: Warn, Finding: "cannot read the NVIDIA driver's version: " + err.Error()}}
	}
	driver := "unknown version"
	if m := driverVersionRE.FindStringSubmatch(string(raw)); m != nil {
		driver = m[1]
	}
	gpu := Result{Check: "gpu", Status: OK}
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	gpus, err := nvidiaSMI(ctx)
	switch {
	case err != nil:
		gpu.Status, gpu.Finding = Warn, fmt.Sprintf("driver %s loaded, but nvidia-smi failed: %v", driver, err)
		gpu.Fix = "install the driver's utilities (nvidia-smi) or check the driver with dmesg"
	case len(gpus) == 0:
		gpu.Status, gpu.Finding = Fail, fmt.Sprintf("driver %s loaded, but nvidia-smi lists no GPU", driver)
		gpu.Fix = "check CUDA_VISIBLE_DEVICES / NVIDIA_VISIBLE_DEVICES and that the GPUs are passed into this container"
	default:
		gpu.Finding = fmt.Sprintf("driver %s, %d GPU(s): %s", driver, len(gpus), listSome(gpus, 2))
	}
	return append([]Result{gpu}, cuptiResults(s)...)
}

// nvidiaSMI lists the GPUs as "index: name".
func nvidiaSMI(ctx context.Context) ([]string, error) {
	smi, err := exec.LookPath("nvidia-smi")
	if err != nil {
		return nil, errors.New("nvidia-smi not found in PATH")
	}
	out, err := exec.CommandContext(ctx, smi, "--query-gpu=index,name", "--format=csv,noheader").CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("%v: %s", err, firstLine(string(out), 200))
	}
	var gpus []string
	for _, line := range strings.Split(string(out), "\n") {
		idx, name, ok := strings.Cut(strings.TrimSpace(line), ",")
		if ok {
			gpus = append(gpus, strings.TrimSpace(idx)+": "+strings.TrimSpace(name))
		}
	}
	return gpus, nil
}

// cuptiResults checks what CUDA tracing needs beyond the driver: the device nodes this
// user must open (a container without /dev/nvidia-uvm runs no CUDA at all), the CUPTI
// libraries nsys injects from its own folder, and whether GPU performance counters are
// kept for admins (CUDA tracing is not affected; --gpu-metrics-device is).
func cuptiResults(s *state) []Result {
	dev := s.cfg.DevRoot
	var unusable []string
	for _, n := range []string{"nvidiactl", "nvidia-uvm"} {
		p := filepath.Join(dev, n)
		f, err := os.OpenFile(p, os.O_RDWR, 0)
		if err != nil {
			unusable = append(unusable, fmt.Sprintf("%s (%v)", p, unwrapPath(err)))
			continue
		}
		_ = f.Close()
	}
	var out []Result
	if len(unusable) > 0 {
		out = append(out, Result{Check: "cuda devices", Status: Fail,
			Finding: "cannot open " + strings.Join(unusable, ", ") + ": CUDA cannot start here",
			Fix:     "run as a user in the video group, or pass the NVIDIA devices into the container (--gpus all / the NVIDIA device plugin); load nvidia-uvm with nvidia-modprobe -u -c=0"})
	} else {
		out = append(out, Result{Check: "cuda devices", Status: OK, Finding: "/dev/nvidiactl and /dev/nvidia-uvm open for this user"})
	}
	if s.path != "" {
		out = append(out, cuptiLibs(s.path))
	}
	params, err := os.ReadFile(filepath.Join(s.cfg.ProcRoot, "driver/nvidia/params"))
	if err == nil && strings.Contains(string(params), "RmProfilingAdminOnly: 1") && s.euid() != 0 {
		out = append(out, Result{Check: "gpu counters", Status: Warn,
			Finding: "GPU performance counters are for admins only (RmProfilingAdminOnly: 1); CUDA and NVTX tracing work",
			Fix:     "only --nsys-arg=--gpu-metrics-device needs them: run the agent as root, or set options nvidia NVreg_RestrictProfilingToAdminUsers=0 in /etc/modprobe.d and reload the driver"})
	}
	return out
}

// cuptiLibs looks for the libcupti nsys injects into the target: beside the real nsys
// binary (Debian: target-linux-x64/libcupti.so.11.8 and older), or in a folder next to
// it (other bundles). Not finding one is a warning: only Debian's layout was seen here,
// and nsys may find CUPTI where this does not look.
func cuptiLibs(nsysPath string) Result {
	real, err := filepath.EvalSymlinks(nsysPath)
	if err != nil {
		real = nsysPath
	}
	dir := filepath.Dir(real)
	matches, _ := filepath.Glob(filepath.Join(dir, "libcupti.so*"))
	if len(matches) == 0 {
		matches, _ = filepath.Glob(filepath.Join(filepath.Dir(dir), "*", "libcupti.so*"))
	}
	if len(matches) == 0 {
		return Result{Check: "cupti", Status: Warn,
			Finding: "no libcupti.so in or beside " + dir + ": nsys may record no CUDA activity",
			Fix:     "check that the Nsight Systems install is whole (its target-linux-x64 folder ships CUPTI); open one short window and look for kernels in it"}
	}
	names := make([]string, len(matches))
	for i, m := range matches {
		names[i] = filepath.Base(m)
	}
	sort.Strings(names)
	return Result{Check: "cupti", Status: OK,
		Finding: fmt.Sprintf("nsys ships %d CUPTI libraries in %s (newest name: %s)", len(names), filepath.Dir(matches[0]), names[len(names)-1])}
}

func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
