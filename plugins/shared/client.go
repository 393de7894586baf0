package shared

import (
	"context"
	"errors"
	"fmt"
	"io"

	"google.golang.org/grpc"

	backendv1 "github.com/nsys-agent/nsys-agent/proto/backend/v1"
)

// client is a plugin's Backend on the host's side, what Dispense returns. It implements
// every optional interface: the plugin's side answers one its backend lacks as the
// contract says (Info.Interfaces tells which are real).
//
// Every call runs under the caller's context AND the plugin's doneCtx, which go-plugin
// cancels when the plugin process exits: a call to a dead plugin ends at once with
// ErrPluginExited instead of waiting for a connection timeout. All errors go through
// fromStatus.
type client struct {
	rpc     backendv1.BackendClient
	doneCtx context.Context
}

var (
	_ Backend    = (*client)(nil)
	_ Configurer = (*client)(nil)
	_ Finalizer  = (*client)(nil)
	_ Waiter     = (*client)(nil)
	_ Salvager   = (*client)(nil)
	_ Launcher   = (*client)(nil)
)

// callCtx is ctx, also cancelled when the plugin exits; release frees it.
func (c *client) callCtx(ctx context.Context) (_ context.Context, release func()) {
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(c.doneCtx, cancel)
	return ctx, func() { stop(); cancel() }
}

func (c *client) err(ctx context.Context, rpc string, err error) error {
	_, err = fromStatus(ctx, c.doneCtx, rpc, err)
	return err
}

func (c *client) Info(ctx context.Context) (Info, error) {
	cctx, release := c.callCtx(ctx)
	defer release()
	resp, err := c.rpc.Info(cctx, &backendv1.InfoRequest{})
	if err != nil {
		return Info{}, c.err(ctx, "Info", err)
	}
	return infoFromProto(resp.GetInfo()), nil
}

func (c *client) Configure(ctx context.Context, t Target) error {
	cctx, release := c.callCtx(ctx)
	defer release()
	_, err := c.rpc.Configure(cctx, &backendv1.ConfigureRequest{Target: targetToProto(t)})
	return c.err(ctx, "Configure", err)
}

func (c *client) Start(ctx context.Context, w Window) error {
	cctx, release := c.callCtx(ctx)
	defer release()
	_, err := c.rpc.Start(cctx, &backendv1.StartRequest{Window: windowToProto(w)})
	return c.err(ctx, "Start", err)
}

func (c *client) Stop(ctx context.Context, w Window, p Progress) (Result, error) {
	return c.streamed(ctx, "Stop", p, func(ctx context.Context) (grpc.ServerStreamingClient[backendv1.Update], error) {
		return c.rpc.Stop(ctx, &backendv1.StopRequest{Window: windowToProto(w)})
	})
}

func (c *client) Finalize(ctx context.Context, w Window, p Progress) (Result, error) {
	return c.streamed(ctx, "Finalize", p, func(ctx context.Context) (grpc.ServerStreamingClient[backendv1.Update], error) {
		return c.rpc.Finalize(ctx, &backendv1.FinalizeRequest{Window: windowToProto(w)})
	})
}

func (c *client) Salvage(ctx context.Context, w Window, p Progress) (Result, error) {
	return c.streamed(ctx, "Salvage", p, func(ctx context.Context) (grpc.ServerStreamingClient[backendv1.Update], error) {
		return c.rpc.Salvage(ctx, &backendv1.SalvageRequest{Window: windowToProto(w)})
	})
}

func (c *client) Wait(ctx context.Context, w Window) (Result, error) {
	cctx, release := c.callCtx(ctx)
	defer release()
	resp, err := c.rpc.Wait(cctx, &backendv1.WaitRequest{Window: windowToProto(w)})
	if err != nil {
		return fromStatus(ctx, c.doneCtx, "Wait", err)
	}
	return resultFromProto(resp.GetResult()), nil
}

func (c *client) PrepareLaunch(ctx context.Context, l Launch) (Launch, error) {
	cctx, release := c.callCtx(ctx)
	defer release()
	resp, err := c.rpc.PrepareLaunch(cctx, &backendv1.PrepareLaunchRequest{Launch: launchToProto(l)})
	if err != nil {
		return Launch{}, c.err(ctx, "PrepareLaunch", err)
	}
	return launchFromProto(resp.GetLaunch()), nil
}

// errNoResult: the plugin closed a stream without the result the protocol promises.
var errNoResult = errors.New("the stream ended without a result")

// streamed runs one streamed call: progress events go to p in the order they were sent,
// and the call returns with the result that ends the stream, or with the mapped error
// and whatever partial result the failure carried.
func (c *client) streamed(ctx context.Context, rpc string, p Progress, open func(context.Context) (grpc.ServerStreamingClient[backendv1.Update], error)) (Result, error) {
	if p == nil {
		p = Discard
	}
	cctx, release := c.callCtx(ctx)
	defer release()
	stream, err := open(cctx)
	if err != nil {
		return fromStatus(ctx, c.doneCtx, rpc, err)
	}
	for {
		u, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return Result{}, fmt.Errorf("backend plugin's %s: %w; the plugin does not follow the protocol (rebuild it against this agent's plugins/shared)", rpc, errNoResult)
		}
		if err != nil {
			return fromStatus(ctx, c.doneCtx, rpc, err)
		}
		switch x := u.GetUpdate().(type) {
		case *backendv1.Update_Progress:
			p.Send(progressFromProto(x.Progress))
		case *backendv1.Update_Result:
			return resultFromProto(x.Result), nil
		}
		// An update of a kind this host does not know (a newer plugin's) is skipped.
	}
}
