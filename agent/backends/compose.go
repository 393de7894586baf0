package backends

import (
	"context"
	"fmt"
	"slices"

	"github.com/nsys-agent/nsys-agent/plugins/shared"
)

// Composed is a backend that captures with another one (Info.CapturesWith): the capture
// backend's Start, Stop, Wait, Salvage and Finalize run first, then the post-processing
// backend's Finalize over the files they left. The post-processor never touches the nsys
// session; it only reads the window folder.
type Composed struct {
	info    shared.Info
	capture shared.Backend
	post    shared.Backend
}

var (
	_ shared.Backend   = (*Composed)(nil)
	_ shared.Finalizer = (*Composed)(nil)
	_ shared.Waiter    = (*Composed)(nil)
	_ shared.Salvager  = (*Composed)(nil)
)

// Compose joins post (whose Info is info, naming capture in CapturesWith) to the backend
// that captures its windows. The result keeps post's name and options, and takes the
// capture backend's session capability so it shares the capture slot the same way.
func Compose(info shared.Info, capture, post shared.Backend, captureInfo shared.Info) (*Composed, error) {
	if info.CapturesWith != captureInfo.Name {
		return nil, fmt.Errorf("backend %s captures with %q, not %q", info.Name, info.CapturesWith, captureInfo.Name)
	}
	if captureInfo.Has(shared.CapNsysSession) && !info.Has(shared.CapNsysSession) {
		info.Capabilities = append(slices.Clone(info.Capabilities), shared.CapNsysSession)
	}
	return &Composed{info: info, capture: capture, post: post}, nil
}

func (c *Composed) Info(context.Context) (shared.Info, error) { return c.info, nil }

func (c *Composed) Start(ctx context.Context, w shared.Window) error {
	return c.capture.Start(ctx, w)
}

func (c *Composed) Stop(ctx context.Context, w shared.Window, p shared.Progress) (shared.Result, error) {
	return c.capture.Stop(ctx, w, p)
}

// Wait is the capture backend's; one that cannot end a window by steps says so.
func (c *Composed) Wait(ctx context.Context, w shared.Window) (shared.Result, error) {
	wt, ok := c.capture.(shared.Waiter)
	if !ok {
		return shared.Result{}, shared.Wrap(shared.ErrUnsupported, fmt.Errorf("%s cannot end a window by steps", c.info.CapturesWith))
	}
	return wt.Wait(ctx, w)
}

// Salvage keeps what the capture backend can keep of a window whose target died; the
// post-processor is not asked (there is no complete report to post-process).
func (c *Composed) Salvage(ctx context.Context, w shared.Window, p shared.Progress) (shared.Result, error) {
	s, ok := c.capture.(shared.Salvager)
	if !ok {
		return shared.Result{}, nil
	}
	return s.Salvage(ctx, w, p)
}

// Finalize runs the capture backend's Finalize, then the post-processor's over the same
// folder; the post-processor's summary, when it has one, is the window's.
func (c *Composed) Finalize(ctx context.Context, w shared.Window, p shared.Progress) (shared.Result, error) {
	var res shared.Result
	if f, ok := c.capture.(shared.Finalizer); ok {
		r, err := f.Finalize(ctx, w, p)
		res = res.Merge(r)
		if err != nil {
			return res, err
		}
	}
	f, ok := c.post.(shared.Finalizer)
	if !ok {
		return res, nil
	}
	r, err := f.Finalize(ctx, w, p)
	return res.Merge(r), err
}
