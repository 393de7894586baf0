package demotarget

import (
	"fmt"
	"time"

	"github.com/nsys-agent/nsys-agent/internal/hostclock"
)

// recorder collects the events of one profiled stage on one rank, as the torch profiler
// would: CPU ops with their cudaLaunchKernel calls, and the kernels they launch.
type recorder struct {
	args      profileArgs
	events    []traceEvent
	extID     int64 // Kineto's "External id", linking CPU ops and GPU activity
	corr      int64 // CUPTI correlation id, linking a launch to its kernel
	evIdx     int64
	gpuCursor time.Time // when the simulated GPU stream is free again
	first     time.Time
	last      time.Time
	steps     int
}

// Simulated launch costs, in the range seen on real H100 traces.
const (
	launchCost  = 6 * time.Microsecond // cudaLaunchKernel on the CPU
	launchDelay = 4 * time.Microsecond // from the launch to the kernel start, on an idle GPU
	gpuShare    = 0.9                  // kernel time per unit of CPU op time
)

func (r *recorder) step(w *worker, start, end time.Time, spans []opSpan) {
	if r.first.IsZero() {
		r.first = start
	}
	r.last = end
	r.steps++
	base := r.args.BaseNanos
	cpuArgs := func() map[string]any {
		r.extID++
		r.evIdx++
		return map[string]any{"External id": r.extID, "Record function id": 0, "Ev Idx": r.evIdx - 1}
	}
	stepExt := r.extID + 1
	if r.args.CPU {
		r.events = append(r.events, traceEvent{Ph: "X", Cat: "user_annotation", Name: "demo::step",
			PID: w.pid, TID: w.tid, TS: usTS(start, base), Dur: usDur(end.Sub(start)), Args: cpuArgs()})
	} else {
		r.extID++
	}
	var gpuStart, gpuEnd time.Time
	for _, s := range spans {
		if r.args.CPU {
			args := cpuArgs()
			if r.args.RecordShapes {
				args["Input Dims"] = s.op.inputDims
				args["Input type"] = s.op.inputTypes
			}
			r.events = append(r.events, traceEvent{Ph: "X", Cat: "cpu_op", Name: s.op.cpu,
				PID: w.pid, TID: w.tid, TS: usTS(s.t0, base), Dur: usDur(s.t1.Sub(s.t0)), Args: args})
		} else {
			r.extID++
		}
		if !r.args.GPU {
			continue
		}
		// The launch sits at the end of its op; the kernel runs when the stream is free.
		r.corr++
		launch := s.t1.Add(-min(launchCost, s.t1.Sub(s.t0)/2))
		r.events = append(r.events,
			traceEvent{Ph: "X", Cat: "cuda_runtime", Name: "cudaLaunchKernel", PID: w.pid, TID: w.tid,
				TS: usTS(launch, base), Dur: usDur(s.t1.Sub(launch)),
				Args: map[string]any{"External id": r.extID, "cbid": 211, "correlation": r.corr}},
			traceEvent{Ph: "s", Cat: "ac2g", Name: "ac2g", PID: w.pid, TID: w.tid, TS: usTS(launch, base), ID: r.corr})
		kStart := launch.Add(launchDelay)
		if kStart.Before(r.gpuCursor) {
			kStart = r.gpuCursor
		}
		kDur := time.Duration(float64(s.t1.Sub(s.t0)) * gpuShare)
		r.gpuCursor = kStart.Add(kDur)
		if gpuStart.IsZero() {
			gpuStart = kStart
		}
		gpuEnd = r.gpuCursor
		warps := float64(s.op.block[0]*s.op.block[1]*s.op.block[2]) / 32
		r.events = append(r.events,
			traceEvent{Ph: "X", Cat: "kernel", Name: s.op.kernel, PID: gpuPID, TID: gpuStream,
				TS: usTS(kStart, base), Dur: usDur(kDur), Args: map[string]any{
					"External id": r.extID, "queued": 0, "device": 0, "context": 1, "stream": gpuStream,
					"correlation": r.corr, "registers per thread": s.op.regs, "shared memory": s.op.smem,
					"blocks per SM": float64(s.op.grid[0]*s.op.grid[1]*s.op.grid[2]) / float64(simulatedDevice.NumSms),
					"warps per SM":  warps, "grid": s.op.grid, "block": s.op.block, "est. achieved occupancy %": 0,
				}},
			traceEvent{Ph: "f", Cat: "ac2g", Name: "ac2g", PID: gpuPID, TID: gpuStream, TS: usTS(kStart, base), ID: r.corr, BP: "e"})
	}
	if r.args.GPU && !gpuStart.IsZero() {
		r.events = append(r.events, traceEvent{Ph: "X", Cat: "gpu_user_annotation", Name: "demo::step",
			PID: gpuPID, TID: gpuStream, TS: usTS(gpuStart, base), Dur: usDur(gpuEnd.Sub(gpuStart)),
			Args: map[string]any{"External id": stepExt}})
	}
}

// metadata names the tracks the way Kineto does: the CPU process and thread, and the device
// with its stream (only when GPU activity was recorded).
func (w *worker) metadata(r *recorder) []traceEvent {
	ts := usTS(r.first, r.args.BaseNanos)
	if r.first.IsZero() {
		ts = usTS(hostclock.Now(), r.args.BaseNanos)
	}
	m := func(name string, pid, tid any, args map[string]any) traceEvent {
		return traceEvent{Ph: "M", Name: name, PID: pid, TID: tid, TS: ts, Args: args}
	}
	evs := []traceEvent{
		m("process_name", w.pid, 0, map[string]any{"name": procName}),
		m("process_labels", w.pid, 0, map[string]any{"labels": "CPU"}),
		m("process_sort_index", w.pid, 0, map[string]any{"sort_index": w.pid}),
	}
	if r.args.GPU {
		evs = append(evs,
			m("process_name", gpuPID, 0, map[string]any{"name": procName}),
			m("process_labels", gpuPID, 0, map[string]any{"labels": fmt.Sprintf("GPU %d", gpuPID)}),
			m("process_sort_index", gpuPID, 0, map[string]any{"sort_index": 5000000 + gpuPID}),
			m("thread_name", gpuPID, gpuStream, map[string]any{"name": fmt.Sprintf("stream %d ", gpuStream)}),
			m("thread_sort_index", gpuPID, gpuStream, map[string]any{"sort_index": gpuStream}),
		)
	}
	evs = append(evs,
		m("thread_name", w.pid, w.tid, map[string]any{"name": fmt.Sprintf("thread %d (%s)", w.tid, procName)}),
		m("thread_sort_index", w.pid, w.tid, map[string]any{"sort_index": w.tid}),
	)
	return evs
}

// trailer is Kineto's closing bookkeeping: the profiler span on the "Spans" track and the
// global instants, whose pids are strings.
func (r *recorder) trailer() []traceEvent {
	first, last := r.first, r.last
	if first.IsZero() {
		first = hostclock.Now()
		last = first
	}
	ts := usTS(first, r.args.BaseNanos)
	return []traceEvent{
		{Ph: "M", Name: "process_sort_index", PID: "Spans", TID: 0, TS: ts, Args: map[string]any{"sort_index": 536870912}},
		{Ph: "X", Cat: "Trace", Name: "PyTorch Profiler (0)", PID: "Spans", TID: "PyTorch Profiler", TS: ts,
			Dur: usDur(last.Sub(first)), Args: map[string]any{"Op count": 0}},
		{Ph: "i", Name: "Iteration Start: PyTorch Profiler", PID: "Traces", TID: "Trace PyTorch Profiler", TS: ts, S: "g"},
		{Ph: "i", Name: "Record Window End", PID: "", TID: "", TS: usTS(last, r.args.BaseNanos), S: "g"},
	}
}
