package torch

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/nsys-agent/nsys-agent/plugins/shared"
	"github.com/nsys-agent/nsys-agent/plugins/shared/sharedtest"
	"github.com/nsys-agent/nsys-agent/torchprof"
)

// TestWindowOverTheWire runs a window through the gRPC wire the agent uses (in process):
// the plugin's answers, progress and errors survive encoding and the error mapper.
func TestWindowOverTheWire(t *testing.T) {
	d := startDemo(t, 2)
	local := New("test")
	local.Poll, local.Settle, local.RankWait, local.LiveEvery = 50*time.Millisecond, 300*time.Millisecond, 5*time.Second, 200*time.Millisecond
	b := sharedtest.Connect(t, local)
	ctx := context.Background()

	info, err := b.Info(ctx)
	if err != nil || info.Name != Name || !info.Implements(shared.InterfaceWaiter) || !info.Implements(shared.InterfaceFinalizer) ||
		!slices.ContainsFunc(info.Options, func(o shared.Option) bool { return o.Name == OptMem }) {
		t.Fatalf("Info over the wire = %+v, %v", info, err)
	}
	if err := b.(shared.Configurer).Configure(ctx, shared.Target{ServerURL: d.url}); err != nil {
		t.Fatal(err)
	}
	w := newWindow(t, "w1")
	w.Options = map[string]string{OptMem: "true"}
	if err := b.Start(ctx, w); err != nil {
		t.Fatal(err)
	}
	if err := b.Start(ctx, newWindow(t, "w2")); !errors.Is(err, shared.ErrBusy) {
		t.Errorf("a second start over the wire: %v, want ErrBusy", err)
	}
	time.Sleep(500 * time.Millisecond)
	var p progressLog
	res, err := b.Stop(ctx, w, &p)
	if err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if len(rankTraceNames(res.Artifacts)) != 2 || !slices.Contains(p.steps(), "waiting for rank traces 2/2") {
		t.Errorf("Stop over the wire: artifacts %v, progress %q", res.Artifacts, p.steps())
	}
	fin, err := b.(shared.Finalizer).Finalize(ctx, w, &p)
	if err != nil {
		t.Fatalf("Finalize: %v", err)
	}
	var s torchprof.Summary
	if err := json.Unmarshal(fin.Summary, &s); err != nil || len(s.Ranks) != 2 || s.SlowestRank == "" {
		t.Errorf("summary over the wire: %s (%v)", fin.Summary, err)
	}
	if !slices.Contains(fin.Artifacts, SummaryPage) {
		t.Errorf("Finalize artifacts %v", fin.Artifacts)
	}
}
