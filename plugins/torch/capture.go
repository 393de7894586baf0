package torch

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nsys-agent/nsys-agent/plugins/shared"
	"github.com/nsys-agent/nsys-agent/torchprof/serverprof"
)

// Start asks the server to record the window into a folder of its own under w.Dir, and
// returns once the server confirmed. A profile already running on the server is
// shared.ErrBusy, a server that does not answer shared.ErrTargetGone, and what the server
// cannot do as asked (steps or options on vLLM, MEM on trtllm-serve) shared.ErrUnsupported,
// with nothing sent.
func (b *Backend) Start(ctx context.Context, w shared.Window) error {
	opts, err := parseOptions(w.Options)
	if err != nil {
		return mapServerError(err)
	}
	if err := b.refuseUnderCUDATracing(w); err != nil {
		return err
	}
	dir, err := serverDir(w)
	if err != nil {
		return err
	}
	c, err := b.serverClient(ctx)
	if err != nil {
		return mapServerError(err)
	}
	req := serverprof.Request{ID: w.ID, NumSteps: w.Steps, Activities: opts.activities(),
		WithStack: opts.withStack, RecordShapes: opts.recordShapes}
	if c.Flavor() == serverprof.VLLM {
		if b.VLLMDir == "" {
			return shared.Wrap(shared.ErrUnsupported, fmt.Errorf("window %s: vLLM writes its traces to the torch_profiler_dir of its --profiler-config and cannot be told another one, nor asked for it: set %s=<that dir> in the agent's environment", w.ID, VLLMDirEnv))
		}
		req.ServerDir = b.VLLMDir
		if !opts.mem {
			// vLLM takes no activities: its --profiler-config's "profiler" decides. MEM
			// stays in the request so the client refuses it, naming why.
			req.Activities = nil
		}
	} else {
		req.BaseDir = w.Dir
	}
	expected := expectedRanks(ctx, c)
	sw, err := c.Start(ctx, req)
	if err != nil {
		return mapServerError(err)
	}
	if c.Flavor() != serverprof.VLLM && sw.Dir != dir {
		// Not reached: the client makes BaseDir/ID. Said plainly rather than read elsewhere.
		return fmt.Errorf("window %s: the server writes to %s, not the expected %s", w.ID, sw.Dir, dir)
	}
	b.remember(w.ID, &window{sw: sw, expected: expected})
	return nil
}

// Stop asks the server to stop recording, then waits (bounded by ctx) until every rank's
// trace is written, reporting "waiting for rank traces k/N" on p, and moves the server's
// files into w.Dir.
func (b *Backend) Stop(ctx context.Context, w shared.Window, p shared.Progress) (shared.Result, error) {
	tw, err := b.lookup(ctx, w)
	if err != nil {
		return shared.Result{}, err
	}
	defer b.forget(w.ID)
	c, err := b.serverClient(ctx)
	if err != nil {
		return b.salvage(w, tw, mapServerError(err))
	}
	p.Send(shared.ProgressEvent{Step: "asking the server to stop profiling (its ranks write their traces)", Fraction: 0.05})
	var res shared.Result
	reply, err := c.Stop(ctx, tw.sw)
	// SGLang answers a stop once every rank wrote its trace: then nothing is left to settle.
	confirmed := err == nil && !reply.AlreadyStopped && c.Flavor() == serverprof.SGLang
	switch {
	case ctx.Err() != nil:
		return b.salvage(w, tw, fmt.Errorf("window %s: stopping the server's profile: %w", w.ID, ctx.Err()))
	case errors.Is(err, serverprof.ErrServerDown):
		return b.salvage(w, tw, mapServerError(err))
	case errors.Is(err, serverprof.ErrNotRunning), errors.Is(err, serverprof.ErrTimeout):
		// It ended by itself, someone else stopped it, or it is still writing: whatever
		// traces come are the window's.
		res.Warnings = append(res.Warnings, err.Error())
	case err != nil:
		return b.salvage(w, tw, mapServerError(err))
	case reply.AlreadyStopped:
		res.Warnings = append(res.Warnings, fmt.Sprintf("the server had already ended the window by itself after its %d steps", w.Steps))
	}
	warnings, err := b.awaitTraces(ctx, w, tw, await{stopped: true, confirmed: confirmed, p: p})
	res.Warnings = append(res.Warnings, warnings...)
	if err == nil {
		p.Send(shared.ProgressEvent{Step: "moving the rank traces into the window folder", Fraction: 0.55})
	}
	moved, more := b.collect(w, tw)
	res.Artifacts, res.Warnings = moved, append(res.Warnings, more...)
	return res, err
}

// Wait follows a window bounded by steps: the server ends it by itself, and Wait returns
// once every rank's trace is written and moved into w.Dir. When ctx ends first (the agent
// stops the window), Stop takes the window over.
func (b *Backend) Wait(ctx context.Context, w shared.Window) (shared.Result, error) {
	tw, err := b.lookup(ctx, w)
	if err != nil {
		return shared.Result{}, err
	}
	warnings, err := b.awaitTraces(ctx, w, tw, await{})
	if ctx.Err() != nil {
		return shared.Result{}, err
	}
	if err != nil && !errors.Is(err, shared.ErrTargetGone) {
		// The window failed: make sure the server is not left recording (a window it
		// already ended answers "not in progress", which is fine).
		if c, cerr := b.serverClient(context.Background()); cerr == nil {
			sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			_, _ = c.Stop(sctx, tw.sw)
			cancel()
		}
	}
	b.forget(w.ID)
	moved, more := b.collect(w, tw)
	return shared.Result{Artifacts: moved, Warnings: append(warnings, more...)}, err
}

// salvage keeps what the server wrote before a stop failed (moved into w.Dir, so the agent
// lists it as partial artifacts) and returns err.
func (b *Backend) salvage(w shared.Window, tw *window, err error) (shared.Result, error) {
	moved, warnings := b.collect(w, tw)
	return shared.Result{Artifacts: moved, Warnings: warnings}, err
}

// refuseUnderCUDATracing refuses a window in a server whose CUDA the agent's nsys traces:
// CUPTI takes one subscriber, and nsys holds it from the launch on, capturing or not. On
// the H200 (nsys 2025.3.1, torch 2.11) a torch profile of 10 steps there held 0 kernels
// and 0 CUDA runtime events per rank (PyTorch logged CUPTI_ERROR_MULTIPLE_SUBSCRIBERS_NOT
// _SUPPORTED), against 2493 kernels per rank without nsys, or under nsys tracing only nvtx
// or osrt,nvtx.
func (b *Backend) refuseUnderCUDATracing(w shared.Window) error {
	b.mu.Lock()
	traced := b.cudaTraced
	b.mu.Unlock()
	if !traced {
		return nil
	}
	return shared.Wrap(shared.ErrUnsupported, fmt.Errorf("window %s: the agent's nsys traces this server's CUDA, which leaves the torch profiler no GPU data (CUPTI takes one subscriber: its traces would hold no kernel); for torch windows run the agent with --trace nvtx (or osrt,nvtx), which keeps nsys windows for NVTX and OS runtime", w.ID))
}
