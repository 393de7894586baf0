package shared

import (
	"context"
	"fmt"
	"runtime/debug"
	"sync"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	backendv1 "github.com/nsys-agent/nsys-agent/proto/backend/v1"
)

// server serves a Backend over gRPC on the plugin's side: requests in from the wire, the
// backend's answers and errors (toStatus) out. An optional interface the backend lacks
// answers as the contract says, so the host can call every method of every plugin.
type server struct {
	backendv1.UnimplementedBackendServer
	impl Backend
	log  hclog.Logger
}

var _ backendv1.BackendServer = (*server)(nil)

// guard turns a panic of the backend into an Internal error for this call alone: one bad
// window must not take down a plugin serving the next (the process would exit and every
// call after it would be ErrPluginExited).
func (s *server) guard(rpc string, err *error) {
	if v := recover(); v != nil {
		s.log.Error("backend panicked", "rpc", rpc, "panic", v, "stack", string(debug.Stack()))
		*err = failure(codes.Internal, "", fmt.Sprintf("backend %s panicked: %v", rpc, v), nil)
	}
}

func (s *server) Info(ctx context.Context, _ *backendv1.InfoRequest) (resp *backendv1.InfoResponse, err error) {
	defer s.guard("Info", &err)
	info, err := s.impl.Info(ctx)
	if err != nil {
		return nil, toStatus(err, nil)
	}
	// What the host may rely on is what the Go type implements, not what Info claims.
	info.Interfaces = InterfacesOf(s.impl)
	return &backendv1.InfoResponse{Info: infoToProto(info)}, nil
}

func (s *server) Configure(ctx context.Context, req *backendv1.ConfigureRequest) (resp *backendv1.ConfigureResponse, err error) {
	defer s.guard("Configure", &err)
	if c, ok := s.impl.(Configurer); ok {
		if err := c.Configure(ctx, targetFromProto(req.GetTarget())); err != nil {
			return nil, toStatus(err, nil)
		}
	}
	return &backendv1.ConfigureResponse{}, nil
}

func (s *server) Start(ctx context.Context, req *backendv1.StartRequest) (resp *backendv1.StartResponse, err error) {
	defer s.guard("Start", &err)
	if err := s.impl.Start(ctx, windowFromProto(req.GetWindow())); err != nil {
		return nil, toStatus(err, nil)
	}
	return &backendv1.StartResponse{}, nil
}

func (s *server) Stop(req *backendv1.StopRequest, stream grpc.ServerStreamingServer[backendv1.Update]) error {
	return s.streamed("Stop", stream, func(ctx context.Context, p Progress) (Result, error) {
		return s.impl.Stop(ctx, windowFromProto(req.GetWindow()), p)
	})
}

func (s *server) Finalize(req *backendv1.FinalizeRequest, stream grpc.ServerStreamingServer[backendv1.Update]) error {
	return s.streamed("Finalize", stream, func(ctx context.Context, p Progress) (Result, error) {
		f, ok := s.impl.(Finalizer)
		if !ok {
			return Result{}, nil
		}
		return f.Finalize(ctx, windowFromProto(req.GetWindow()), p)
	})
}

func (s *server) Salvage(req *backendv1.SalvageRequest, stream grpc.ServerStreamingServer[backendv1.Update]) error {
	return s.streamed("Salvage", stream, func(ctx context.Context, p Progress) (Result, error) {
		sv, ok := s.impl.(Salvager)
		if !ok {
			return Result{}, nil
		}
		return sv.Salvage(ctx, windowFromProto(req.GetWindow()), p)
	})
}

func (s *server) Wait(ctx context.Context, req *backendv1.WaitRequest) (resp *backendv1.WaitResponse, err error) {
	defer s.guard("Wait", &err)
	w, ok := s.impl.(Waiter)
	if !ok {
		return nil, toStatus(Wrap(ErrUnsupported, fmt.Errorf(
			"backend %s cannot wait for a window the server ends by itself (it is not a Waiter)", s.name(ctx))), nil)
	}
	res, err := w.Wait(ctx, windowFromProto(req.GetWindow()))
	if err != nil {
		return nil, toStatus(err, &res)
	}
	return &backendv1.WaitResponse{Result: resultToProto(res)}, nil
}

func (s *server) PrepareLaunch(ctx context.Context, req *backendv1.PrepareLaunchRequest) (resp *backendv1.PrepareLaunchResponse, err error) {
	defer s.guard("PrepareLaunch", &err)
	l, ok := s.impl.(Launcher)
	if !ok {
		return &backendv1.PrepareLaunchResponse{Launch: req.GetLaunch()}, nil
	}
	out, err := l.PrepareLaunch(ctx, launchFromProto(req.GetLaunch()))
	if err != nil {
		return nil, toStatus(err, nil)
	}
	return &backendv1.PrepareLaunchResponse{Launch: launchToProto(out)}, nil
}

// streamed runs one streamed call: the backend's progress goes out as it comes, then its
// result; a failure ends the stream with the status, the partial result as its detail.
func (s *server) streamed(rpc string, stream grpc.ServerStreamingServer[backendv1.Update], call func(context.Context, Progress) (Result, error)) (err error) {
	p := &streamProgress{stream: stream, log: s.log}
	defer p.close()
	defer s.guard(rpc, &err)
	res, err := call(stream.Context(), p)
	if err != nil {
		return toStatus(err, &res)
	}
	p.close() // no progress may follow the result
	if err := stream.Send(&backendv1.Update{Update: &backendv1.Update_Result{Result: resultToProto(res)}}); err != nil {
		return err // the host is gone; nobody reads this
	}
	return nil
}

// name is the backend's own name for an error message, or "" when Info fails.
func (s *server) name(ctx context.Context) string {
	info, err := s.impl.Info(ctx)
	if err != nil {
		return "(unnamed)"
	}
	return fmt.Sprintf("%q", info.Name)
}

// streamProgress is the Progress a streamed call hands its backend: each event is sent
// at once, in order. gRPC allows one sender at a time, and none after the handler
// returned, so sends are serialized and a late one (from a goroutine the backend left
// running) is dropped. Progress is advisory: a failed send is logged, never returned.
type streamProgress struct {
	mu     sync.Mutex
	stream grpc.ServerStreamingServer[backendv1.Update]
	log    hclog.Logger
	closed bool
}

func (p *streamProgress) Send(e ProgressEvent) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	if err := p.stream.Send(&backendv1.Update{Update: &backendv1.Update_Progress{Progress: progressToProto(e)}}); err != nil {
		p.log.Debug("dropping a progress event the host cannot receive", "step", e.Step, "err", err)
	}
}

func (p *streamProgress) close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
}
