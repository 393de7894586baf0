package torchprof

import (
	"context"
	"os"
	"strings"
	"testing"
)

const nsysFixture = "testdata/nsys-h100/window1.sqlite"

func TestAnalyzeNsysSQLite(t *testing.T) {
	s, err := AnalyzeNsysSQLite(context.Background(), nsysFixture)
	if err != nil {
		t.Fatal(err)
	}
	// Exact figures from the fixture's README.
	want := []struct {
		pid      int
		kernels  int64
		kernelNs int64
	}{{627, 1164, 269151984}, {628, 1524, 393975752}}
	if len(s.Ranks) != len(want) {
		t.Fatalf("%d ranks, want %d", len(s.Ranks), len(want))
	}
	for i, w := range want {
		r := s.Ranks[i]
		if r.Pid != w.pid || r.Kernels != w.kernels || r.KernelNs != w.kernelNs {
			t.Errorf("rank %d: pid %d, %d kernels, %d ns; want pid %d, %d kernels, %d ns",
				i, r.Pid, r.Kernels, r.KernelNs, w.pid, w.kernels, w.kernelNs)
		}
		if r.CommNs != 0 || r.ComputeNs != r.KernelNs {
			t.Errorf("rank %d: comm %d ns, compute %d ns: the fixture has no communication", i, r.CommNs, r.ComputeNs)
		}
		if r.BusyNs <= 0 || r.BusyNs > r.KernelNs {
			t.Errorf("rank %d: busy %d ns outside (0, kernel time %d]", i, r.BusyNs, r.KernelNs)
		}
		if r.Input != "python3" {
			t.Errorf("rank %d: process name %q", i, r.Input)
		}
	}
	if s.SlowestRank != "pid 628" || s.FastestRank != "pid 627" {
		t.Errorf("slowest %q fastest %q, want pid 628 and pid 627", s.SlowestRank, s.FastestRank)
	}
	if got, want := s.Imbalance, round3(393975752.0/269151984); got != want {
		t.Errorf("imbalance %v, want %v", got, want)
	}
	var steps int
	for _, r := range s.Ranks {
		steps += r.StepCount
	}
	if steps != 769 {
		t.Errorf("%d NVTX steps, want the README's 769", steps)
	}
	if !strings.Contains(s.Reason, "cutlass::Kernel2") {
		t.Errorf("reason %q should name the GEMM rank 1 runs more of", s.Reason)
	}
}

func TestAnalyzeKinetoFixture(t *testing.T) {
	files, err := Discover(kinetoFixture)
	if err != nil {
		t.Fatal(err)
	}
	s, err := AnalyzeKineto(context.Background(), files)
	if err != nil {
		t.Fatal(err)
	}
	// Kernel counts and sums of "dur" of cat "kernel" events, counted with Python's
	// json and Decimal on the fixture files.
	want := []struct {
		label            string
		kernels, kernelN int64
		steps            int
	}{{"TP00", 108, 1367447, 3}, {"TP01", 111, 1783848, 3}}
	for i, w := range want {
		r := s.Ranks[i]
		if r.Label != w.label || r.Kernels != w.kernels || r.KernelNs != w.kernelN || len(r.Steps) != w.steps {
			t.Errorf("rank %d: %s %d kernels %d ns %d steps; want %s %d kernels %d ns %d steps",
				i, r.Label, r.Kernels, r.KernelNs, len(r.Steps), w.label, w.kernels, w.kernelN, w.steps)
		}
		if r.CommNs != 0 || r.BusyNs < r.KernelNs {
			t.Errorf("%s: comm %d, busy %d < kernel %d (busy adds memsets)", r.Label, r.CommNs, r.BusyNs, r.KernelNs)
		}
		if len(r.Top) == 0 || len(r.TimelineBusy) != timelineBins {
			t.Errorf("%s: %d top kernels, %d timeline bins", r.Label, len(r.Top), len(r.TimelineBusy))
		}
	}
	// Rank 1 runs a longer sequence on purpose (fixture README).
	if s.SlowestRank != "TP01" || s.Imbalance != round3(1783848.0/1367447) {
		t.Errorf("slowest %s imbalance %v", s.SlowestRank, s.Imbalance)
	}
}

func TestIsCommKernel(t *testing.T) {
	for name, want := range map[string]bool{
		"ncclDevKernel_AllReduce_Sum_bf16_RING_LL(ncclDevKernelArgsStorage<4096ul>)":        true,
		"ncclKernel_AllGather_RING_LL_Sum_int8_t":                                           true,
		"void vllm::cross_device_reduce_1stage<__nv_bfloat16, 8>(vllm::RankData*, int)":     true,
		"void sglang::cross_device_reduce_2stage<float, 2>(...)":                            true,
		"void flashinfer::trtllm_allreduce_fusion::allreduce_fusion_kernel_oneshot_lamport": true,
		"nvjet_sm90_tst_128x128_64x6_2x1_v_bz_bias_TNT":                                     false,
		"void at::native::reduce_kernel<512, 1>(at::native::ReduceOp<float>)":               false,
	} {
		if got := IsCommKernel(name); got != want {
			t.Errorf("IsCommKernel(%q) = %v, want %v", name, got, want)
		}
	}
}

// TestAnalyzeKinetoComm checks exact figures on a small trace with communication,
// overlapping streams and a memcpy.
func TestAnalyzeKinetoComm(t *testing.T) {
	dir := t.TempDir()
	ev := func(cat, name string, ts, dur string) string {
		return `{"ph":"X","cat":"` + cat + `","name":"` + name + `","pid":0,"tid":7,"ts":` + ts + `,"dur":` + dur + `}`
	}
	writeGz(t, dir+"/c-TP-0.trace.json.gz", `{"baseTimeNanoseconds": 5000, "traceEvents": [`+
		ev("kernel", "gemm", "100", "10")+","+
		ev("kernel", "ncclDevKernel_AllReduce_Sum_bf16_RING_LL", "105", "20")+","+ // overlaps gemm by 5 µs
		ev("gpu_memcpy", "Memcpy HtoD", "200", "1.5")+","+
		ev("cpu_op", "aten::mm", "0", "1000")+","+
		ev("gpu_user_annotation", "step0", "100", "50")+
		`]}`)
	writeGz(t, dir+"/c-TP-1.trace.json.gz", `{"traceEvents": [`+
		ev("kernel", "gemm", "100", "30.5")+","+
		ev("kernel", "gemm", "140", "10")+","+
		ev("kernel", "ncclDevKernel_AllReduce_Sum_bf16_RING_LL", "150", "2")+
		`], "baseTimeNanoseconds": 5000}`)
	files, err := Discover(dir)
	if err != nil {
		t.Fatal(err)
	}
	s, err := AnalyzeKineto(context.Background(), files)
	if err != nil {
		t.Fatal(err)
	}
	type fig struct{ kernels, kernelNs, busyNs, commNs, computeNs int64 }
	want := []fig{{2, 30000, 26500, 20000, 10000}, {3, 42500, 42500, 2000, 40500}}
	for i, w := range want {
		r := s.Ranks[i]
		if got := (fig{r.Kernels, r.KernelNs, r.BusyNs, r.CommNs, r.ComputeNs}); got != w {
			t.Errorf("%s: got %+v, want %+v", r.Label, got, w)
		}
	}
	if s.SlowestRank != "TP01" || s.Imbalance != 4.05 {
		t.Errorf("slowest %s imbalance %v, want TP01 4.05", s.SlowestRank, s.Imbalance)
	}
	if len(s.Ranks[0].Steps) != 1 || s.Ranks[0].Steps[0].StartNs != 105000 {
		t.Errorf("steps %+v, want step0 at 105000 ns (base 5000 + 100 µs)", s.Ranks[0].Steps)
	}
	k := s.Kernels[0]
	if k.Name != "gemm" || k.Ratio != 4.05 || k.MaxRank != "TP01" || k.MinRank != "TP00" || k.Ranks != 2 {
		t.Errorf("kernel comparison %+v", k)
	}
	if !strings.Contains(s.Reason, "most of the difference is gemm") {
		t.Errorf("reason %q should name gemm", s.Reason)
	}
	if !strings.Contains(s.Reason, "TP00 waits") {
		t.Errorf("reason %q should say the fast rank waits in communication", s.Reason)
	}
}

func TestAnalyzeNsysNotSQLite(t *testing.T) {
	p := t.TempDir() + "/x.sqlite"
	os.WriteFile(p, []byte("not a database"), 0o644)
	if _, err := AnalyzeNsysSQLite(context.Background(), p); err == nil {
		t.Error("analyzing a non-database succeeded")
	}
}
