package backends

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"testing"

	"github.com/nsys-agent/nsys-agent/plugins/shared"
)

// recorder is a backend that writes down which of its methods ran.
type recorder struct {
	name  string
	calls *[]string
	res   shared.Result
	err   error
}

func (r recorder) note(m string)                             { *r.calls = append(*r.calls, r.name+"."+m) }
func (r recorder) Info(context.Context) (shared.Info, error) { return shared.Info{Name: r.name}, nil }
func (r recorder) Start(context.Context, shared.Window) error {
	r.note("start")
	return nil
}
func (r recorder) Stop(context.Context, shared.Window, shared.Progress) (shared.Result, error) {
	r.note("stop")
	return shared.Result{Artifacts: []string{r.name + ".nsys-rep"}}, nil
}
func (r recorder) Finalize(context.Context, shared.Window, shared.Progress) (shared.Result, error) {
	r.note("finalize")
	return r.res, r.err
}

type waitingRecorder struct{ recorder }

func (r waitingRecorder) Wait(context.Context, shared.Window) (shared.Result, error) {
	r.note("wait")
	return shared.Result{Artifacts: []string{"steps.nsys-rep"}}, nil
}

func TestComposeRunsCaptureThenPostProcessor(t *testing.T) {
	ctx := context.Background()
	var calls []string
	capture := waitingRecorder{recorder{name: "cuda-profiler", calls: &calls, res: shared.Result{Summary: json.RawMessage(`{"capture":1}`), Warnings: []string{"w1"}}}}
	post := recorder{name: "layerwise", calls: &calls, res: shared.Result{Artifacts: []string{"layers.csv"}, Summary: json.RawMessage(`{"layers":1}`)}}
	info := shared.Info{Name: "layerwise-nvtx", CapturesWith: "cuda-profiler", Capabilities: []shared.Capability{shared.CapSteps}}
	capInfo := shared.Info{Name: "cuda-profiler", Capabilities: []shared.Capability{shared.CapSteps, shared.CapNsysSession}}

	c, err := Compose(info, capture, post, capInfo)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := c.Info(ctx)
	if got.Name != "layerwise-nvtx" || !got.Has(shared.CapNsysSession) || !got.Has(shared.CapSteps) {
		t.Errorf("composed info %+v: keeps its name, takes the capture's session capability", got)
	}
	if len(info.Capabilities) != 1 {
		t.Errorf("Compose changed the caller's capabilities: %v", info.Capabilities)
	}
	w := shared.Window{ID: "w1", Dir: t.TempDir()}
	if err := c.Start(ctx, w); err != nil {
		t.Fatal(err)
	}
	r1, err := c.Wait(ctx, w)
	if err != nil {
		t.Fatal(err)
	}
	r2, err := c.Finalize(ctx, w, shared.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"cuda-profiler.start", "cuda-profiler.wait", "cuda-profiler.finalize", "layerwise.finalize"}; !slices.Equal(calls, want) {
		t.Errorf("calls %v, want %v", calls, want)
	}
	all := r1.Merge(r2)
	if !slices.Equal(all.Artifacts, []string{"steps.nsys-rep", "layers.csv"}) || string(all.Summary) != `{"layers":1}` || !slices.Equal(all.Warnings, []string{"w1"}) {
		t.Errorf("result %+v: the post-processor's summary wins, artifacts and warnings add up", all)
	}
}

func TestComposeStopsAtCaptureFinalizeError(t *testing.T) {
	var calls []string
	boom := errors.New("export failed")
	capture := recorder{name: "cuda-profiler", calls: &calls, err: boom}
	post := recorder{name: "layerwise", calls: &calls}
	c, err := Compose(shared.Info{Name: "layerwise-nvtx", CapturesWith: "cuda-profiler"}, capture, post, shared.Info{Name: "cuda-profiler"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Finalize(context.Background(), shared.Window{}, shared.Discard); !errors.Is(err, boom) {
		t.Errorf("finalize error %v", err)
	}
	if slices.Contains(calls, "layerwise.finalize") {
		t.Errorf("the post-processor ran over a failed capture: %v", calls)
	}
	if _, err := c.Wait(context.Background(), shared.Window{}); !errors.Is(err, shared.ErrUnsupported) {
		t.Errorf("wait on a capture backend without Wait: %v", err)
	}
	if _, err := Compose(shared.Info{Name: "x", CapturesWith: "nsys"}, capture, post, shared.Info{Name: "cuda-profiler"}); err == nil {
		t.Error("composing with the wrong capture backend must fail")
	}
}
