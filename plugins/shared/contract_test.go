package shared_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"

	"github.com/nsys-agent/nsys-agent/plugins/shared"
	"github.com/nsys-agent/nsys-agent/plugins/shared/internal/scripted"
	"github.com/nsys-agent/nsys-agent/plugins/shared/sharedtest"
)

// A wire under test: the scripted backend behind the host's client, in process or across
// a real plugin process.
type wire struct {
	name    string
	connect func(t *testing.T) shared.Backend
}

var wires = []wire{
	{"in-process", func(t *testing.T) shared.Backend { return sharedtest.Connect(t, scripted.New()) }},
	{"subprocess", func(t *testing.T) shared.Backend { b, _ := startPlugin(t, shared.Handshake); return b }},
}

// forEachWire runs test once per wire, each with a fresh backend.
func forEachWire(t *testing.T, test func(t *testing.T, b shared.Backend)) {
	for _, w := range wires {
		t.Run(w.name, func(t *testing.T) { test(t, w.connect(t)) })
	}
}

// syncBuffer collects a plugin client's log lines, written from go-plugin's goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// newClient is how a host starts a plugin: go-plugin over gRPC only, with AutoMTLS. Its
// log (the plugin's stderr included) is printed if the test fails.
func newClient(t *testing.T, hs plugin.HandshakeConfig, cmd *exec.Cmd) (*plugin.Client, *syncBuffer) {
	t.Helper()
	logs := &syncBuffer{}
	c := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  hs,
		Plugins:          shared.PluginMap(nil),
		Cmd:              cmd,
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		AutoMTLS:         true,
		Logger:           hclog.New(&hclog.LoggerOptions{Output: logs, Level: hclog.Debug}),
		StartTimeout:     30 * time.Second, // the first start of a fresh binary on a loaded 2-vCPU box
	})
	t.Cleanup(func() {
		c.Kill()
		if t.Failed() {
			t.Logf("plugin client log:\n%s", logs)
		}
	})
	return c, logs
}

// startPlugin launches the scripted plugin binary and dispenses its Backend.
func startPlugin(t *testing.T, hs plugin.HandshakeConfig) (shared.Backend, *plugin.Client) {
	t.Helper()
	c, _ := newClient(t, hs, exec.Command(pluginBin))
	rpc, err := c.Client()
	if err != nil {
		t.Fatalf("starting the scripted plugin %s: %v", pluginBin, err)
	}
	raw, err := rpc.Dispense(shared.PluginName)
	if err != nil {
		t.Fatalf("dispensing %q: %v", shared.PluginName, err)
	}
	return raw.(shared.Backend), c
}

// recorder is the agent's side of progress: every event, in arrival order.
type recorder struct {
	mu     sync.Mutex
	events []shared.ProgressEvent
}

func (r *recorder) Send(e shared.ProgressEvent) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
}

func (r *recorder) got() []shared.ProgressEvent {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slicesClone(r.events)
}

func slicesClone[T any](s []T) []T { return append([]T(nil), s...) }

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// fullWindow sets every field of a Window.
func fullWindow(t *testing.T, opts map[string]string) shared.Window {
	return shared.Window{
		ID:       "w-0042",
		Dir:      t.TempDir(),
		Name:     "spike at 14:02",
		Duration: 2500 * time.Millisecond,
		Steps:    20,
		Export:   true,
		Options:  opts,
	}
}

var fullTarget = shared.Target{
	ServerURL: "http://127.0.0.1:30000",
	Session:   "nsys-agent-1234",
	Mode:      "cuda-profiler",
	Nsys:      "/usr/bin/nsys",
	PIDs:      []int{1171, 1172, 4194303},
}

// checkResult: a successful scripted call's result names the rpc and echoes the window
// and target it received.
func checkResult(t *testing.T, rpc string, res shared.Result, w shared.Window, target shared.Target) {
	t.Helper()
	if want := []string{rpc + ".nsys-rep", rpc + ".sqlite"}; !reflect.DeepEqual(res.Artifacts, want) {
		t.Errorf("%s artifacts %q, want %q", rpc, res.Artifacts, want)
	}
	if want := []string{rpc + " warned"}; !reflect.DeepEqual(res.Warnings, want) {
		t.Errorf("%s warnings %q, want %q", rpc, res.Warnings, want)
	}
	var sum scripted.Summary
	if err := json.Unmarshal(res.Summary, &sum); err != nil {
		t.Fatalf("%s summary %q: %v", rpc, res.Summary, err)
	}
	if sum.RPC != rpc || !reflect.DeepEqual(sum.Window, w) || !reflect.DeepEqual(sum.Target, target) {
		t.Errorf("%s: the backend got\n%+v\n%+v\nwant\n%+v\n%+v", rpc, sum.Window, sum.Target, w, target)
	}
}

func TestEveryRPCRoundTripsEveryField(t *testing.T) {
	forEachWire(t, func(t *testing.T, b shared.Backend) {
		ctx := ctxT(t)
		info, err := b.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		want := scripted.Info
		want.Interfaces = []shared.Interface{shared.InterfaceConfigurer, shared.InterfaceFinalizer,
			shared.InterfaceWaiter, shared.InterfaceSalvager, shared.InterfaceLauncher}
		if !reflect.DeepEqual(info, want) {
			t.Errorf("Info\n%+v\nwant\n%+v", info, want)
		}

		if err := b.(shared.Configurer).Configure(ctx, fullTarget); err != nil {
			t.Fatal(err)
		}
		w := fullWindow(t, map[string]string{"progress": "0", "label": "a=b, ünïcode"})
		if err := b.Start(ctx, w); err != nil {
			t.Fatal(err)
		}
		res, err := b.Stop(ctx, w, shared.Discard)
		if err != nil {
			t.Fatal(err)
		}
		checkResult(t, "Stop", res, w, fullTarget)
		res, err = b.(shared.Finalizer).Finalize(ctx, w, nil) // nil progress is allowed
		if err != nil {
			t.Fatal(err)
		}
		checkResult(t, "Finalize", res, w, fullTarget)
		res, err = b.(shared.Salvager).Salvage(ctx, w, shared.Discard)
		if err != nil {
			t.Fatal(err)
		}
		checkResult(t, "Salvage", res, w, fullTarget)
		res, err = b.(shared.Waiter).Wait(ctx, w)
		if err != nil {
			t.Fatal(err)
		}
		checkResult(t, "Wait", res, w, fullTarget)

		// A zero window crosses as a zero window (nil options, not an empty map).
		zero := shared.Window{}
		res, err = b.Stop(ctx, zero, shared.Discard)
		if err != nil {
			t.Fatal(err)
		}
		checkResult(t, "Stop", res, zero, fullTarget)

		in := shared.Launch{
			Argv:    []string{"python", "-m", "sglang.launch_server", "--tp", "2"},
			Env:     []string{"A=1"},
			Arm:     "launch",
			Changes: []string{"earlier change"},
		}
		out, err := b.(shared.Launcher).PrepareLaunch(ctx, in)
		if err != nil {
			t.Fatal(err)
		}
		wantL := shared.Launch{
			Argv:    append(slicesClone(in.Argv), "--scripted"),
			Env:     []string{"A=1", "SCRIPTED=1"},
			Arm:     "cuda-profiler",
			Changes: []string{"earlier change", "added --scripted: the tests asked for it"},
		}
		if !reflect.DeepEqual(out, wantL) {
			t.Errorf("PrepareLaunch\n%+v\nwant\n%+v", out, wantL)
		}
	})
}

func TestProgressArrivesInOrderBeforeTheResult(t *testing.T) {
	forEachWire(t, func(t *testing.T, b shared.Backend) {
		ctx := ctxT(t)
		w := fullWindow(t, map[string]string{"progress": "5"})
		var want []shared.ProgressEvent
		for i, f := range []float64{0.2, 0.4, 0.6, 0.8, 1} {
			want = append(want, shared.ProgressEvent{Step: "step " + string(rune('1'+i)), Fraction: f})
		}
		calls := map[string]func(p shared.Progress) (shared.Result, error){
			"Stop":     func(p shared.Progress) (shared.Result, error) { return b.Stop(ctx, w, p) },
			"Finalize": func(p shared.Progress) (shared.Result, error) { return b.(shared.Finalizer).Finalize(ctx, w, p) },
			"Salvage":  func(p shared.Progress) (shared.Result, error) { return b.(shared.Salvager).Salvage(ctx, w, p) },
		}
		for rpc, call := range calls {
			rec := &recorder{}
			res, err := call(rec)
			if err != nil {
				t.Fatalf("%s: %v", rpc, err)
			}
			// The call returns with its result only after the stream delivered every event.
			if got := rec.got(); !reflect.DeepEqual(got, want) {
				t.Errorf("%s progress %+v, want %+v", rpc, got, want)
			}
			checkResult(t, rpc, res, w, shared.Target{})
		}
	})
}

func TestErrorsMapToTheContractWithTheirMessage(t *testing.T) {
	cases := []struct {
		kind string
		want error // nil: a plain error, of no contract kind
	}{
		{"busy", shared.ErrBusy},
		{"gone", shared.ErrTargetGone},
		{"unsupported", shared.ErrUnsupported},
		{"exited", shared.ErrPluginExited},
		{"plain", nil},
	}
	kinds := []error{shared.ErrBusy, shared.ErrTargetGone, shared.ErrUnsupported, shared.ErrPluginExited}
	forEachWire(t, func(t *testing.T, b shared.Backend) {
		ctx := ctxT(t)
		for _, c := range cases {
			for _, rpc := range []string{"Start", "Stop", "Finalize", "Wait"} {
				msg := "nsys said: Configuring is not allowed in this state. (" + rpc + "/" + c.kind + ")"
				w := fullWindow(t, map[string]string{rpc + ".fail": c.kind, rpc + ".message": msg, rpc + ".partial": "partial.qdstrm"})
				var res shared.Result
				var err error
				switch rpc {
				case "Start":
					err = b.Start(ctx, w)
				case "Stop":
					res, err = b.Stop(ctx, w, shared.Discard)
				case "Finalize":
					res, err = b.(shared.Finalizer).Finalize(ctx, w, shared.Discard)
				case "Wait":
					res, err = b.(shared.Waiter).Wait(ctx, w)
				}
				if err == nil || err.Error() != msg {
					t.Errorf("%s %s: error %v, want the backend's own message %q", rpc, c.kind, err, msg)
				}
				for _, k := range kinds {
					if errors.Is(err, k) != (k == c.want) {
						t.Errorf("%s %s: errors.Is(%v, %v) = %v", rpc, c.kind, err, k, !(k == c.want))
					}
				}
				// A failed call still returns what it left (the agent keeps it).
				if rpc != "Start" && !reflect.DeepEqual(res.Artifacts, []string{"partial.qdstrm"}) {
					t.Errorf("%s %s: partial result %+v, want partial.qdstrm", rpc, c.kind, res)
				}
			}
		}
	})
}

func TestPanicIsAnInternalErrorAndThePluginLives(t *testing.T) {
	forEachWire(t, func(t *testing.T, b shared.Backend) {
		ctx := ctxT(t)
		w := fullWindow(t, map[string]string{"Stop.panic": "index out of range [3]", "Start.panic": "nil map"})
		_, err := b.Stop(ctx, w, shared.Discard)
		if err == nil || !strings.Contains(err.Error(), "backend Stop panicked: index out of range [3]") || errors.Is(err, shared.ErrPluginExited) {
			t.Errorf("Stop panicking: %v, want a plain error naming the panic", err)
		}
		if err := b.Start(ctx, w); err == nil || !strings.Contains(err.Error(), "backend Start panicked: nil map") {
			t.Errorf("Start panicking: %v", err)
		}
		if _, err := b.Info(ctx); err != nil {
			t.Errorf("Info after the panics: %v; the plugin must keep serving", err)
		}
	})
}

// waitFile waits for path to exist (a scripted call writes it) and returns its content.
func waitFile(t *testing.T, path string) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if b, err := os.ReadFile(path); err == nil {
			return string(b)
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%s never appeared", path)
	return ""
}

func TestCallerCancelReachesTheBackend(t *testing.T) {
	forEachWire(t, func(t *testing.T, b shared.Backend) {
		w := fullWindow(t, map[string]string{"Stop.block": "1", "Wait.block": "1"})

		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { _, err := b.Stop(ctx, w, shared.Discard); done <- err }()
		waitFile(t, filepath.Join(w.Dir, "Stop.begun"))
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) || errors.Is(err, shared.ErrPluginExited) {
			t.Errorf("Stop cancelled by its caller: %v, want context.Canceled", err)
		}
		if got := waitFile(t, filepath.Join(w.Dir, "Stop.cancelled")); got != context.Canceled.Error() {
			t.Errorf("the backend's Stop saw %q, want its context cancelled", got)
		}

		ctx, cancel = context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		if _, err := b.(shared.Waiter).Wait(ctx, w); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Wait past its caller's deadline: %v, want context.DeadlineExceeded", err)
		}
		// The deadline travels with the call: the backend's own context ends with it.
		if got := waitFile(t, filepath.Join(w.Dir, "Wait.cancelled")); got != context.DeadlineExceeded.Error() && got != context.Canceled.Error() {
			t.Errorf("the backend's Wait saw %q", got)
		}
	})
}

func TestOptionalInterfacesTheBackendLacks(t *testing.T) {
	b := sharedtest.Connect(t, &scripted.Minimal{})
	ctx := ctxT(t)
	info, err := b.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(info.Interfaces) != 0 || info.Implements(shared.InterfaceWaiter) {
		t.Errorf("a plain Backend claims %v", info.Interfaces)
	}
	if err := b.(shared.Configurer).Configure(ctx, fullTarget); err != nil {
		t.Errorf("Configure: %v, want a no-op", err)
	}
	w := fullWindow(t, nil)
	for name, call := range map[string]func() (shared.Result, error){
		"Finalize": func() (shared.Result, error) { return b.(shared.Finalizer).Finalize(ctx, w, shared.Discard) },
		"Salvage":  func() (shared.Result, error) { return b.(shared.Salvager).Salvage(ctx, w, shared.Discard) },
	} {
		if res, err := call(); err != nil || !reflect.DeepEqual(res, shared.Result{}) {
			t.Errorf("%s: %+v, %v; want an empty result", name, res, err)
		}
	}
	_, err = b.(shared.Waiter).Wait(ctx, w)
	if !errors.Is(err, shared.ErrUnsupported) || !strings.Contains(err.Error(), `"scripted"`) {
		t.Errorf("Wait: %v, want ErrUnsupported naming the backend", err)
	}
	l := shared.Launch{Argv: []string{"server"}, Env: []string{"X=1"}, Arm: "launch", Changes: []string{"c"}}
	if out, err := b.(shared.Launcher).PrepareLaunch(ctx, l); err != nil || !reflect.DeepEqual(out, l) {
		t.Errorf("PrepareLaunch: %+v, %v; want the launch unchanged", out, err)
	}
}
