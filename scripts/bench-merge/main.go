// Command bench-merge measures `nsys-agent merge` and `nsys-agent analyze` on generated
// multi-rank Kineto traces (DESIGN.md quality bar: ≥ 10× SGLang's ProfileMerger, within
// 2× of one `zcat | gzip -1` pass, peak RSS flat and ≤ 200 MB for 1 M events).
//
//	go run ./scripts/bench-merge -bin bin/nsys-agent [-events 1000000,4000000] [-sglang profile_merger.py]
//
// Each tool runs as a child process so its peak RSS is its own (rusage maxrss). To
// compare builds (say, two gzip writers), give several binaries and runs:
//
//	go run ./scripts/bench-merge -bin bin/a,bin/b -runs 5
//
// merge runs alternate between the binaries; each gets its median wall and CPU time, its
// largest peak RSS and the size of what it wrote.
//
// To measure analyze alone on captures of many kernels (GPU events only), as Kineto
// traces and, with -nsys, as nsys SQLite exports, with each binary:
//
//	go run ./scripts/bench-merge -bin bin/nsys-agent -analyze-kernels 1000000,16000000 -nsys
package main

import (
	"bufio"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/klauspost/compress/gzip"
)

func main() {
	binList := flag.String("bin", "bin/nsys-agent", "nsys-agent binaries to measure, comma-separated")
	runs := flag.Int("runs", 1, "merge runs per binary and size")
	sizes := flag.String("events", "1000000,4000000", "total events per run, comma-separated")
	ranks := flag.Int("ranks", 4, "rank files per run")
	dir := flag.String("dir", filepath.Join(os.TempDir(), "nsys-agent-bench-merge"), "where generated traces are kept (reused when present)")
	sglang := flag.String("sglang", "", "path to SGLang's profile_merger.py, to time its ProfileMerger on the same input")
	analyzeKernels := flag.String("analyze-kernels", "", "instead, time analyze (every binary) on captures of these many kernels in total, comma-separated")
	nsys := flag.Bool("nsys", false, "with -analyze-kernels: also on the same kernels as an nsys SQLite export")
	flag.Parse()
	bins := strings.Split(*binList, ",")
	bin := bins[0] // analyze and SGLang's comparison use the first

	fmt.Printf("machine: %s, %d CPUs, %s/%s\n", cpuModel(), runtime.NumCPU(), runtime.GOOS, runtime.GOARCH)
	if *analyzeKernels != "" {
		var counts []int
		for _, s := range strings.Split(*analyzeKernels, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(s))
			if err != nil {
				fail("bad -analyze-kernels %q", s)
			}
			counts = append(counts, n)
		}
		benchAnalyze(bins, *dir, *ranks, counts, *nsys)
		return
	}
	for _, s := range strings.Split(*sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil {
			fail("bad -events %q", s)
		}
		in := filepath.Join(*dir, fmt.Sprintf("%dx%d", *ranks, n))
		files, size := generate(in, *ranks, n)
		fmt.Printf("\n== %d events in %d ranks: %d MB gzipped, %d MB JSON (%s)\n", n, *ranks, size.gz>>20, size.raw>>20, in)
		out := filepath.Join(*dir, "merged.trace.json.gz")

		merge := compareMerges(bins, *runs, in, out, n)
		analyze := measure(bin, "analyze", "-o", "json", in)
		report("nsys-agent analyze", analyze, n)
		quoted := make([]string, len(files))
		for i, f := range files {
			quoted[i] = strconv.Quote(f)
		}
		base := measure("sh", "-c", "zcat "+strings.Join(quoted, " ")+" | gzip -1 > /dev/null")
		report("zcat | gzip -1", base, n)
		fmt.Printf("merge / (zcat | gzip -1) = %.2f\n", merge.wall.Seconds()/base.wall.Seconds())
		if *sglang != "" {
			sg := measure("python3", "-c", sglangDriver, *sglang, in)
			report("SGLang ProfileMerger", sg, n)
			fmt.Printf("SGLang / nsys-agent merge = %.1f×\n", sg.wall.Seconds()/merge.wall.Seconds())
		}
		os.Remove(out)
	}
}

// sglangDriver imports profile_merger.py by path and merges the generated capture.
const sglangDriver = `import importlib.util, sys, glob, os, logging
spec = importlib.util.spec_from_file_location("pm", sys.argv[1]); pm = importlib.util.module_from_spec(spec); spec.loader.exec_module(pm)
d = sys.argv[2]; pid = os.path.basename(glob.glob(d + "/*-TP-0.trace.json.gz")[0]).split("-TP-")[0]
out = pm.ProfileMerger(d, pid).merge_chrome_traces(); os.remove(out)`

// compareMerges runs each binary's merge runs times, alternating, reports each one's
// median wall and CPU time, largest peak RSS and output size, and returns the first
// binary's.
func compareMerges(bins []string, runs int, in, out string, events int) result {
	walls := make([][]time.Duration, len(bins))
	cpus := make([][]time.Duration, len(bins))
	rss := make([]int64, len(bins))
	outSize := make([]int64, len(bins))
	for range max(runs, 1) {
		for i, b := range bins {
			r := measure(b, "merge", "-q", in, "-o", out)
			if r.err != nil {
				report("nsys-agent merge ("+b+")", r, events)
				os.Exit(1)
			}
			walls[i] = append(walls[i], r.wall)
			cpus[i] = append(cpus[i], r.cpu)
			rss[i] = max(rss[i], r.maxRSS)
			if fi, err := os.Stat(out); err == nil {
				outSize[i] = fi.Size()
			}
		}
	}
	var first result
	for i, b := range bins {
		slices.Sort(walls[i])
		slices.Sort(cpus[i])
		mid := len(walls[i]) / 2
		r := result{wall: walls[i][mid], cpu: cpus[i][mid], maxRSS: rss[i]}
		if len(bins) > 1 || runs > 1 {
			fmt.Printf("merge by %s: medians of %d runs (wall %.2f–%.2f s), output %.1f MB\n", b, len(walls[i]),
				walls[i][0].Seconds(), walls[i][len(walls[i])-1].Seconds(), float64(outSize[i])/(1<<20))
		}
		report("nsys-agent merge", r, events)
		if i == 0 {
			first = r
		}
	}
	return first
}

type result struct {
	wall   time.Duration
	cpu    time.Duration // user + system: less disturbed than wall time on a busy machine
	maxRSS int64         // bytes
	err    error
}

func measure(name string, args ...string) result {
	cmd := exec.Command(name, args...)
	cmd.Stdout = nil
	cmd.Stderr = os.Stderr
	start := time.Now()
	err := cmd.Run()
	r := result{wall: time.Since(start), err: err}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		r.maxRSS = ru.Maxrss * 1024 // kilobytes on Linux
		r.cpu = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	return r
}

func report(what string, r result, events int) { reportUnit(what, r, events, "events") }

func reportUnit(what string, r result, n int, unit string) {
	if r.err != nil {
		fmt.Printf("%-22s FAILED: %v\n", what, r.err)
		return
	}
	fmt.Printf("%-22s %7.2f s  %6.2f M %s/s  cpu %6.2f s  peak RSS %4d MB\n", what, r.wall.Seconds(),
		float64(n)/r.wall.Seconds()/1e6, unit, r.cpu.Seconds(), r.maxRSS>>20)
}

type sizes struct{ gz, raw int64 }

// generate writes ranks gzipped Kineto-shaped traces of events events in total, or
// reuses them when a previous run left them complete.
func generate(dir string, ranks, events int) ([]string, sizes) {
	var files []string
	var sz sizes
	done := filepath.Join(dir, ".complete")
	_, err := os.Stat(done)
	fresh := err != nil
	if fresh {
		os.RemoveAll(dir)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			fail("%v", err)
		}
	}
	for r := range ranks {
		p := filepath.Join(dir, fmt.Sprintf("bench-%d-TP-%d.trace.json.gz", events, r))
		files = append(files, p)
		if fresh {
			sz.raw += writeRank(p, r, events/ranks)
		}
		fi, err := os.Stat(p)
		if err != nil {
			fail("%v", err)
		}
		sz.gz += fi.Size()
	}
	if fresh {
		os.WriteFile(done, []byte(strconv.FormatInt(sz.raw, 10)), 0o644)
	} else {
		b, _ := os.ReadFile(done)
		sz.raw, _ = strconv.ParseInt(string(b), 10, 64)
	}
	return files, sz
}

var kernels = []string{
	"sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n_tilesize128x128x64_warpgroupsize1x1x1_execute_segment_k_off_kernel__5x_cublas",
	"void flash::flash_fwd_kernel<Flash_fwd_kernel_traits<128, 128, 64, 4, false, false, cutlass::bfloat16_t, Flash_kernel_traits<128, 128, 64, 4, cutlass::bfloat16_t> >, false, true, false, false, true, true, false, false>(flash::Flash_fwd_params)",
	"void at::native::vectorized_elementwise_kernel<4, at::native::GeluCUDAKernelImpl(at::TensorIteratorBase&, at::native::GeluType)::{lambda()#2}::operator()() const::{lambda()#2}::operator()() const::{lambda(c10::BFloat16)#1}, std::array<char*, 2ul> >(int, at::native::GeluCUDAKernelImpl(at::TensorIteratorBase&, at::native::GeluType)::{lambda()#2}::operator()() const::{lambda()#2}::operator()() const::{lambda(c10::BFloat16)#1}, std::array<char*, 2ul>)",
	"void at::native::(anonymous namespace)::vectorized_layer_norm_kernel<c10::BFloat16, float>(int, float, c10::BFloat16 const*, c10::BFloat16 const*, c10::BFloat16 const*, float*, float*, c10::BFloat16*)",
	"ncclDevKernel_AllReduce_Sum_bf16_RING_LL(ncclDevKernelArgsStorage<4096ul>)",
}

// writeRank writes one rank in Kineto's layout and pretty-printing: per launched kernel
// a python_function, a cpu_op, a cudaLaunchKernel, the kernel on the GPU and a flow
// arrow pair; metadata at the end. Rank 3 runs its GEMMs 30% slower.
func writeRank(path string, rank, events int) int64 {
	t := createTrace(path)
	w := t.Writer
	rng := rand.New(rand.NewPCG(uint64(rank), 42))
	pid := 3000 + rank
	fmt.Fprintf(w, `
  {
    "schemaVersion": 1,
    "deviceProperties": [
    {
      "id": %d, "name": "NVIDIA H100 80GB HBM3", "totalGlobalMem": 85017493504,
      "computeMajor": 9, "computeMinor": 0,
      "maxThreadsPerBlock": 1024, "maxThreadsPerMultiprocessor": 2048,
      "regsPerBlock": 65536, "warpSize": 32,
      "sharedMemPerBlock": 49152, "numSms": 132
    }
    ],
  "displayTimeUnit": "ms",
  "baseTimeNanoseconds": 1790857026000000000,
  "traceEvents": [`, rank)
	ts := 4589780676192.716
	gpuTS := ts + 50
	n, corr := 0, 1
	sep := ""
	for n < events-40 {
		k := rng.IntN(len(kernels))
		dur := 5 + rng.Float64()*40
		if k == 0 && rank == 3 {
			dur *= 1.3
		}
		ext := corr * 3
		fmt.Fprintf(w, `%s
  {
    "ph": "X", "cat": "python_function", "name": "torch/nn/modules/module.py(1751): _call_impl", "pid": %d, "tid": %d,
    "ts": %.3f, "dur": %.3f,
    "args": {
      "Python parent id": %d, "Python id": %d, "Ev Idx": %d
    }
  },
  {
    "ph": "X", "cat": "cpu_op", "name": "aten::mm", "pid": %d, "tid": %d,
    "ts": %.3f, "dur": %.3f,
    "args": {
      "External id": %d,"Record function id": 0, "Concrete Inputs": ["", ""], "Input type": ["c10::BFloat16", "c10::BFloat16"], "Input Strides": [[4096, 1], [1, 4096]], "Input Dims": [[8, 4096], [4096, 4096]], "Ev Idx": %d
    }
  },
  {
    "ph": "X", "cat": "cuda_runtime", "name": "cudaLaunchKernel", "pid": %d, "tid": %d,
    "ts": %.3f, "dur": %.3f,
    "args": {
      "External id": %d, "cbid": 211, "correlation": %d
    }
  },
  {
    "ph": "X", "cat": "kernel", "name": %q, "pid": 0, "tid": 7,
    "ts": %.3f, "dur": %.3f,
    "args": {
      "External id": %d,
      "queued": 0, "device": 0, "context": 1,
      "stream": 7, "correlation": %d,
      "registers per thread": 168,
      "shared memory": 213248,
      "blocks per SM": 0.969697,
      "warps per SM": 7.757576,
      "grid": [128, 1, 1],
      "block": [384, 1, 1],
      "est. achieved occupancy %%": 12
    }
  },
  {
    "ph": "s", "id": %d, "pid": %d, "tid": %d, "ts": %.3f,
    "cat": "ac2g", "name": "ac2g"
  },
  {
    "ph": "f", "id": %d, "pid": 0, "tid": 7, "ts": %.3f,
    "cat": "ac2g", "name": "ac2g", "bp": "e"
  }`, sep,
			pid, pid, ts, 30.0, corr, corr+1, n,
			pid, pid, ts+1, 20.0, ext, n+1,
			pid, pid, ts+5, 4.2, ext, corr,
			kernels[k], gpuTS, dur, ext, corr,
			corr, pid, pid, ts+5,
			corr, gpuTS)
		sep = ","
		n += 6
		corr++
		ts += 31
		gpuTS = max(gpuTS+dur+1, ts+10)
	}
	for d := range 8 {
		for _, m := range []struct{ name, args string }{
			{"process_name", `"name": "python3"`},
			{"process_labels", fmt.Sprintf(`"labels": "GPU %d"`, d)},
			{"process_sort_index", fmt.Sprintf(`"sort_index": %d`, 5000000+d)},
		} {
			fmt.Fprintf(w, `,
  {
    "name": %q, "ph": "M", "ts": 4589780675527.147, "pid": %d, "tid": 0,
    "args": {
      %s
    }
  }`, m.name, d, m.args)
			n++
		}
	}
	for _, m := range []string{"process_name", "process_labels", "process_sort_index", "thread_name", "thread_sort_index"} {
		fmt.Fprintf(w, `,
  {
    "name": %q, "ph": "M", "ts": 4589780675527.147, "pid": %d, "tid": %d,
    "args": {
      "name": "python3", "sort_index": %d
    }
  }`, m, pid, pid, pid)
		n++
	}
	for ; n < events; n++ {
		fmt.Fprintf(w, `,
  {
    "name": "Record Window End", "ph": "i", "s": "g",
    "pid": "", "tid": "", "ts": %.3f
  }`, ts)
	}
	return t.finish(path)
}

type counter struct {
	w interface{ Write([]byte) (int, error) }
	n int64
}

func (c *counter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

func cpuModel() string {
	b, _ := os.ReadFile("/proc/cpuinfo")
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "model name") {
			_, v, _ := strings.Cut(l, ":")
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}

func fail(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "bench-merge: "+format+"\n", a...)
	os.Exit(1)
}

// traceFile is a generated trace being written: gzip at best speed, with a count of the
// uncompressed bytes.
type traceFile struct {
	*bufio.Writer
	f  *os.File
	zw *gzip.Writer
	cw *counter
}

func createTrace(path string) *traceFile {
	f, err := os.Create(path)
	if err != nil {
		fail("%v", err)
	}
	zw, _ := gzip.NewWriterLevel(f, gzip.BestSpeed)
	cw := &counter{w: zw}
	return &traceFile{Writer: bufio.NewWriterSize(cw, 1<<20), f: f, zw: zw, cw: cw}
}

// finish closes the event list with Kineto's traceName and the file; it returns the
// uncompressed size.
func (t *traceFile) finish(path string) int64 {
	fmt.Fprintf(t, "\n  ],\n  \"traceName\": %q\n}\n", path)
	if err := t.Flush(); err != nil {
		fail("%v", err)
	}
	if err := t.zw.Close(); err != nil {
		fail("%v", err)
	}
	if err := t.f.Close(); err != nil {
		fail("%v", err)
	}
	return t.cw.n
}
