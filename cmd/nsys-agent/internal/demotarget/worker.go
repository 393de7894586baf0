package demotarget

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"syscall"
	"time"

	"github.com/nsys-agent/nsys-agent/internal/hostclock"
)

// WorkerOptions configures one rank worker. The rest of its configuration (world size, step
// timing) comes from the parent in the first message, so the command line stays short.
type WorkerOptions struct {
	In  io.Reader // commands from the parent; defaults to os.Stdin
	Out io.Writer // replies to the parent; defaults to os.Stdout
}

// RunWorker serves one rank: it reads commands from the parent, runs steps and records and
// writes traces. It returns nil when ctx is done or the parent closes In (the parent died
// or shut down), and an error when the parent breaks the protocol or a command fails hard.
func RunWorker(ctx context.Context, rank int, o WorkerOptions) error {
	if o.In == nil {
		o.In = os.Stdin
	}
	if o.Out == nil {
		o.Out = os.Stdout
	}
	// The recorded tid must stay the thread that does the work, as in a real trace.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()

	cmds := make(chan command)
	readErr := make(chan error, 1)
	go func() {
		// This reader may outlive RunWorker when ctx ends first; the process exits then.
		sc := bufio.NewScanner(o.In)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			var c command
			if err := json.Unmarshal(sc.Bytes(), &c); err != nil {
				readErr <- fmt.Errorf("rank %d: bad command from parent: %w", rank, err)
				return
			}
			select {
			case cmds <- c:
			case <-ctx.Done():
				return
			}
		}
		readErr <- sc.Err() // nil at EOF: the parent is gone
	}()

	w := &worker{rank: rank, pid: os.Getpid(), tid: gettid()}
	enc := json.NewEncoder(o.Out)
	for {
		var c command
		select {
		case <-ctx.Done():
			return nil
		case err := <-readErr:
			return err
		case c = <-cmds:
		}
		r := w.handle(ctx, c)
		if err := enc.Encode(r); err != nil {
			if errors.Is(err, syscall.EPIPE) {
				return nil // the parent went away mid-reply
			}
			return fmt.Errorf("rank %d: reply to parent: %w", rank, err)
		}
	}
}

type worker struct {
	rank, pid, tid int
	init           initArgs
	sink           float64 // keeps the arithmetic from being optimised away
	prof           *profile
}

func (w *worker) handle(ctx context.Context, c command) reply {
	r := reply{Op: c.Op}
	switch c.Op {
	case opInit:
		if c.Init == nil || c.Init.Rank != w.rank {
			r.Err = fmt.Sprintf("init for rank %v sent to rank %d", c.Init, w.rank)
			break
		}
		w.init = *c.Init
		r.PID = w.pid
	case opStep:
		if c.Step == nil {
			r.Err = "step without arguments"
			break
		}
		w.step(ctx, *c.Step)
		r.N = c.Step.N
	case opStart:
		if c.Profile == nil {
			r.Err = "start without a profile"
			break
		}
		w.prof = newProfile(*c.Profile)
	case opStop:
		files, err := w.stop(c.Stage)
		r.Files = files
		if err != nil {
			r.Err = err.Error()
		}
	default:
		r.Err = fmt.Sprintf("unknown op %q", c.Op)
	}
	return r
}

// simOp is one simulated operator of a transformer layer: the CPU op that launches it, the
// GPU kernel it launches (names as seen in real A100 traces) and its share of the step.
type simOp struct {
	cpu, kernel string
	share       float64
	grid, block [3]int
	regs, smem  int
	inputDims   [][]int
	inputTypes  []string
}

const simLayers = 2

var layerOps = []simOp{
	{cpu: "aten::rms_norm", kernel: "void flashinfer::norm::RMSNormKernel<8u, __nv_bfloat16>(__nv_bfloat16*, __nv_bfloat16*, __nv_bfloat16*, unsigned int, unsigned int, unsigned int, float, float)",
		share: 0.04, grid: [3]int{8, 1, 1}, block: [3]int{32, 16, 1}, regs: 32, smem: 2048,
		inputDims: [][]int{{8, 4096}, {4096}}, inputTypes: []string{"c10::BFloat16", "c10::BFloat16"}},
	{cpu: "aten::mm", kernel: "ampere_bf16_s16816gemm_bf16_128x128_ldg8_f2f_stages_64x3_tn",
		share: 0.22, grid: [3]int{48, 1, 1}, block: [3]int{128, 1, 1}, regs: 232, smem: 98304,
		inputDims: [][]int{{8, 4096}, {4096, 6144}}, inputTypes: []string{"c10::BFloat16", "c10::BFloat16"}},
	{cpu: "sgl_kernel::fwd_kvcache_mla", kernel: "void flash::flash_fwd_splitkv_kernel<Flash_fwd_kernel_traits<128, 64, 128, 4, false, false, cutlass::bfloat16_t, Flash_kernel_traits<128, 64, 128, 4, cutlass::bfloat16_t> >, false, false, false, false, true, false, false, false>(Flash_fwd_params)",
		share: 0.14, grid: [3]int{1, 32, 8}, block: [3]int{128, 1, 1}, regs: 255, smem: 49152,
		inputDims: [][]int{{8, 32, 128}, {8, 1024, 8, 128}}, inputTypes: []string{"c10::BFloat16", "c10::BFloat16"}},
	{cpu: "aten::mm", kernel: "ampere_bf16_s16816gemm_bf16_64x64_sliced1x2_ldg8_f2f_stages_64x5_tn",
		share: 0.08, grid: [3]int{64, 1, 1}, block: [3]int{128, 1, 1}, regs: 128, smem: 81920,
		inputDims: [][]int{{8, 4096}, {4096, 4096}}, inputTypes: []string{"c10::BFloat16", "c10::BFloat16"}},
	{cpu: "c10d::allreduce_", kernel: "ncclDevKernel_AllReduce_Sum_bf16_RING_LL(ncclDevComm*, unsigned long, ncclWork*)",
		share: 0.06, grid: [3]int{2, 1, 1}, block: [3]int{640, 1, 1}, regs: 96, smem: 0,
		inputDims: [][]int{{8, 4096}}, inputTypes: []string{"c10::BFloat16"}},
	{cpu: "aten::mm", kernel: "ampere_bf16_s16816gemm_bf16_256x128_ldg8_f2f_stages_64x3_tn",
		share: 0.26, grid: [3]int{88, 1, 1}, block: [3]int{256, 1, 1}, regs: 238, smem: 147456,
		inputDims: [][]int{{8, 4096}, {4096, 22016}}, inputTypes: []string{"c10::BFloat16", "c10::BFloat16"}},
	{cpu: "sgl_kernel::silu_and_mul", kernel: "void flashinfer::activation::act_and_mul_kernel<__nv_bfloat16, &silu<float> >(__nv_bfloat16*, __nv_bfloat16 const*, int)",
		share: 0.05, grid: [3]int{8, 1, 1}, block: [3]int{1024, 1, 1}, regs: 24, smem: 0,
		inputDims: [][]int{{8, 22016}}, inputTypes: []string{"c10::BFloat16"}},
	{cpu: "aten::mm", kernel: "ampere_bf16_s16816gemm_bf16_128x64_ldg8_f2f_stages_64x4_tn",
		share: 0.15, grid: [3]int{64, 1, 1}, block: [3]int{128, 1, 1}, regs: 168, smem: 73728,
		inputDims: [][]int{{8, 11008}, {11008, 4096}}, inputTypes: []string{"c10::BFloat16", "c10::BFloat16"}},
}

// prefillWork is how much more a prefill (extend) step costs than a decode step.
const prefillWork = 2.0

// step does the rank's share of one forward pass as real CPU work, op by op, recording each
// op while a profile is on, then idles through libc (see idle_cgo.go).
func (w *worker) step(ctx context.Context, a stepArgs) {
	work := float64(w.init.StepWork) * max(w.init.Slowdown, 0.1)
	if a.Prefill {
		work *= prefillWork
	}
	var rec *recorder
	if w.prof != nil {
		rec = w.prof.recorderFor(a.Prefill)
	}
	// Op times are the host's wall clock (hostclock: shifted by the test hook), as
	// Kineto's are; durations come from the monotonic reading these keep.
	start := hostclock.Now()
	var spans []opSpan
	for range simLayers {
		for i := range layerOps {
			op := &layerOps[i]
			t0 := hostclock.Now()
			w.burn(time.Duration(work * op.share / simLayers))
			spans = append(spans, opSpan{op: op, t0: t0, t1: hostclock.Now()})
			if ctx.Err() != nil {
				return
			}
		}
	}
	end := hostclock.Now()
	if rec != nil {
		rec.step(w, start, end, spans)
	}
	idle(w.init.StepGap)
}

type opSpan struct {
	op     *simOp
	t0, t1 time.Time
}

// burn does floating-point arithmetic for about d, checking the clock every few thousand
// iterations so that a slow or busy machine still gives steady step times.
func (w *worker) burn(d time.Duration) {
	deadline := time.Now().Add(d)
	x := w.sink + 1
	for time.Now().Before(deadline) {
		for i := 0; i < 2000; i++ {
			x = math.Sqrt(x*1.000001+float64(i)) + 0.5
		}
	}
	w.sink = x
}

// profile is one open profiling window on this rank. With profile_by_stage there is one
// recorder per stage (EXTEND for prefill, DECODE for decode), each written to its own file.
type profile struct {
	args    profileArgs
	stages  map[string]*recorder
	written map[string]bool
}

func newProfile(a profileArgs) *profile {
	return &profile{args: a, stages: map[string]*recorder{}, written: map[string]bool{}}
}

func stageOf(byStage, prefill bool) string {
	switch {
	case !byStage:
		return ""
	case prefill:
		return "EXTEND"
	default:
		return "DECODE"
	}
}

func (p *profile) recorderFor(prefill bool) *recorder {
	st := stageOf(p.args.ByStage, prefill)
	if p.written[st] {
		return nil // this stage already has its trace
	}
	r := p.stages[st]
	if r == nil {
		r = &recorder{args: p.args}
		p.stages[st] = r
	}
	return r
}

// stop writes the traces of the given stage (all stages when empty) and ends the profile
// when nothing is left to write. Without CPU or GPU activity there is nothing to write, as
// with SGLang's CUDA_PROFILER-only or unknown activities.
func (w *worker) stop(stage string) ([]string, error) {
	p := w.prof
	if p == nil {
		return nil, errors.New("no profile in progress on this rank")
	}
	stages := []string{stage}
	if stage == "" {
		stages = []string{""}
		if p.args.ByStage {
			stages = []string{"EXTEND", "DECODE"}
		}
	}
	var files []string
	var errs []error
	for _, st := range stages {
		if p.written[st] {
			continue
		}
		p.written[st] = true
		if !p.args.CPU && !p.args.GPU {
			continue
		}
		rec := p.stages[st]
		if rec == nil {
			rec = &recorder{args: p.args} // no step ran: an empty but valid trace
		}
		path, err := w.writeTrace(rec, st)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		files = append(files, path)
	}
	if stage == "" || (p.written["EXTEND"] && p.written["DECODE"]) {
		w.prof = nil
	}
	return files, errors.Join(errs...)
}

// traceFileName is SGLang's per-rank name: [{prefix}-]{profile_id}-TP-{rank}[-{STAGE}].trace.json.gz.
func traceFileName(prefix, id string, rank int, stage string) string {
	name := fmt.Sprintf("%s-TP-%d", id, rank)
	if stage != "" {
		name += "-" + stage
	}
	if prefix != "" {
		name = prefix + "-" + name
	}
	return name + ".trace.json.gz"
}

func (w *worker) writeTrace(rec *recorder, stage string) (string, error) {
	a := rec.args
	name := traceFileName(a.Prefix, a.ID, w.rank, stage)
	path := filepath.Join(a.Dir, name)
	h := newTraceHeader(w.rank, w.init.WorldSize, newTraceID(), a)
	events := append(w.metadata(rec), rec.events...)
	events = append(events, rec.trailer()...)
	traceName := filepath.Join(a.Dir, name[:len(name)-len(".gz")])
	if err := writeGzipAtomic(path, func(out io.Writer) error {
		return writeTrace(out, h, events, traceName)
	}); err != nil {
		return "", fmt.Errorf("rank %d: write trace %s: %w", w.rank, path, err)
	}
	return path, nil
}

func newTraceID() string {
	b := make([]byte, 16)
	rand.Read(b)
	return fmt.Sprintf("%X", b)
}
