// Package scripted is the backend the contract tests of plugins/shared serve, in process
// and as a real plugin process (./plugin). What each call does is scripted by the
// window's options, which cross the wire like any other field, so a test drives the
// subprocess exactly as it drives the in-process one:
//
//	RPC.fail=KIND     the call fails with shared.ErrBusy (busy), ErrTargetGone (gone),
//	                  ErrUnsupported (unsupported), ErrPluginExited (exited) or a plain
//	                  error (plain); RPC.message is its text
//	RPC.partial=NAME  a failing call still returns Result{Artifacts: [NAME]}
//	RPC.panic=TEXT    the call panics with TEXT
//	RPC.block=1       the call writes RPC.begun in the window's Dir, waits for its context
//	                  to end, writes RPC.cancelled holding ctx.Err(), and returns it
//	progress=N        a streamed call sends N events ("step 1".."step N", i/N) first
//
// RPC is Start, Stop, Finalize, Salvage or Wait. A call that succeeds returns a Result
// whose Summary is {"rpc", "window", "target"}: the window it got and the last target
// Configure got, so a test compares both with what it sent.
package scripted

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"

	"github.com/nsys-agent/nsys-agent/internal/atomicfile"
	"github.com/nsys-agent/nsys-agent/plugins/shared"
)

// Info is what every scripted backend answers, with every field set.
var Info = shared.Info{
	Name:         "scripted",
	Version:      "1.2.3",
	APIVersion:   shared.APIVersion,
	Capabilities: []shared.Capability{shared.CapSteps, shared.CapSummary, "future-capability"},
	Description:  "the contract tests' backend",
	Options: []shared.Option{
		{Name: "progress", Usage: "send N progress events"},
		{Name: "Stop.fail", Usage: "fail Stop with a kind"},
	},
	CapturesWith: "cuda-profiler",
}

// Minimal implements only Backend: the optional interfaces' defaults are tested on it.
type Minimal struct {
	mu     sync.Mutex
	target shared.Target
}

// Backend implements Backend and every optional interface.
type Backend struct {
	Minimal
}

// New returns a scripted backend with every optional interface.
func New() *Backend { return &Backend{} }

var (
	_ shared.Configurer = (*Backend)(nil)
	_ shared.Finalizer  = (*Backend)(nil)
	_ shared.Waiter     = (*Backend)(nil)
	_ shared.Salvager   = (*Backend)(nil)
	_ shared.Launcher   = (*Backend)(nil)
)

func (b *Minimal) Info(context.Context) (shared.Info, error) { return Info, nil }

func (b *Minimal) Start(ctx context.Context, w shared.Window) error {
	_, err := b.run(ctx, "Start", w, shared.Discard)
	return err
}

func (b *Minimal) Stop(ctx context.Context, w shared.Window, p shared.Progress) (shared.Result, error) {
	return b.run(ctx, "Stop", w, p)
}

func (b *Backend) Configure(_ context.Context, t shared.Target) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.target = t
	return nil
}

func (b *Backend) Finalize(ctx context.Context, w shared.Window, p shared.Progress) (shared.Result, error) {
	return b.run(ctx, "Finalize", w, p)
}

func (b *Backend) Salvage(ctx context.Context, w shared.Window, p shared.Progress) (shared.Result, error) {
	return b.run(ctx, "Salvage", w, p)
}

func (b *Backend) Wait(ctx context.Context, w shared.Window) (shared.Result, error) {
	return b.run(ctx, "Wait", w, shared.Discard)
}

// PrepareLaunch adds one argument, one variable and an arming mode, and says so.
func (b *Backend) PrepareLaunch(_ context.Context, l shared.Launch) (shared.Launch, error) {
	if len(l.Argv) == 0 {
		return l, shared.Wrap(shared.ErrUnsupported, errors.New("scripted: no server command to adjust"))
	}
	l.Argv = append(l.Argv, "--scripted")
	l.Env = append(l.Env, "SCRIPTED=1")
	l.Arm = "cuda-profiler"
	l.Changes = append(l.Changes, "added --scripted: the tests asked for it")
	return l, nil
}

// Summary is the JSON a successful call returns in Result.Summary.
type Summary struct {
	RPC    string        `json:"rpc"`
	Window shared.Window `json:"window"`
	Target shared.Target `json:"target"`
}

var kinds = map[string]error{
	"busy":        shared.ErrBusy,
	"gone":        shared.ErrTargetGone,
	"unsupported": shared.ErrUnsupported,
	"exited":      shared.ErrPluginExited,
}

func (b *Minimal) run(ctx context.Context, rpc string, w shared.Window, p shared.Progress) (shared.Result, error) {
	opt := func(name string) string { return w.Options[rpc+"."+name] }
	if n, _ := strconv.Atoi(w.Options["progress"]); rpc != "Start" && rpc != "Wait" {
		for i := 1; i <= n; i++ {
			p.Send(shared.ProgressEvent{Step: fmt.Sprintf("step %d", i), Fraction: float64(i) / float64(n)})
		}
	}
	if text := opt("panic"); text != "" {
		panic(text)
	}
	if opt("block") != "" {
		if err := os.WriteFile(filepath.Join(w.Dir, rpc+".begun"), nil, 0o600); err != nil {
			return shared.Result{}, err
		}
		<-ctx.Done()
		// Atomically: a test waits for the file and reads it at once (an os.WriteFile seen
		// between its create and its write read as "" under load).
		_ = atomicfile.Write(filepath.Join(w.Dir, rpc+".cancelled"), []byte(ctx.Err().Error()), 0o600)
		return shared.Result{}, ctx.Err()
	}
	if kind, ok := w.Options[rpc+".fail"]; ok {
		var partial shared.Result
		if name := opt("partial"); name != "" {
			partial.Artifacts = []string{name}
		}
		err := errors.New(opt("message"))
		if k := kinds[kind]; k != nil {
			err = shared.Wrap(k, err)
		}
		return partial, err
	}
	b.mu.Lock()
	sum, err := json.Marshal(Summary{RPC: rpc, Window: w, Target: b.target})
	b.mu.Unlock()
	if err != nil {
		return shared.Result{}, err
	}
	return shared.Result{
		Artifacts: []string{rpc + ".nsys-rep", rpc + ".sqlite"},
		Warnings:  []string{rpc + " warned"},
		Summary:   sum,
	}, nil
}
