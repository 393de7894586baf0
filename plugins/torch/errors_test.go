package torch

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/nsys-agent/nsys-agent/plugins/shared"
	"github.com/nsys-agent/nsys-agent/torchprof/serverprof"
)

func TestMapServerError(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want error // nil: no contract kind
	}{
		{&serverprof.Error{Kind: serverprof.ErrUnsupported, Msg: "steps on vLLM"}, shared.ErrUnsupported},
		{&serverprof.Error{Kind: serverprof.ErrNotFound, Msg: "404"}, shared.ErrUnsupported},
		{&serverprof.Error{Kind: serverprof.ErrServerDown, Msg: "refused"}, shared.ErrTargetGone},
		{&serverprof.Error{Kind: serverprof.ErrAlreadyRunning, Msg: "in progress"}, shared.ErrBusy},
		{&OptionError{Name: "x", Value: "1", Reason: "unknown"}, shared.ErrUnsupported},
		{&serverprof.Error{Kind: serverprof.ErrRefused, Msg: "HTTP 502"}, nil},
		{fmt.Errorf("wrapped: %w", context.Canceled), nil},
	} {
		got := mapServerError(tc.err)
		for _, kind := range []error{shared.ErrUnsupported, shared.ErrTargetGone, shared.ErrBusy} {
			if errors.Is(got, kind) != (kind == tc.want) {
				t.Errorf("mapServerError(%v): errors.Is(%v) = %v", tc.err, kind, !(kind == tc.want))
			}
		}
		if got.Error() != tc.err.Error() {
			t.Errorf("mapServerError changed the text %q to %q", tc.err, got)
		}
	}
	if mapServerError(nil) != nil {
		t.Error("nil maps to an error")
	}
}

// TestConfigure: no URL, or one that is not a server's base URL, is refused saying what
// to do; a server that does not answer yet is accepted (asked again at Start).
func TestConfigure(t *testing.T) {
	for _, tc := range []struct {
		url, want string
	}{
		{"", "--server-url"},
		{"  ", "--server-url"},
		{"localhost:30000", "want http://HOST:PORT"},
		{"http://user:pw@127.0.0.1:1", "carries credentials"},
	} {
		err := New("v").Configure(context.Background(), shared.Target{ServerURL: tc.url})
		if !errors.Is(err, shared.ErrUnsupported) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Configure(%q) = %v, want ErrUnsupported saying %q", tc.url, err, tc.want)
		}
	}
	b := New("v")
	// Port 1 on loopback: nothing listens there.
	if err := b.Configure(context.Background(), shared.Target{ServerURL: "http://127.0.0.1:1"}); err != nil {
		t.Errorf("Configure with a server not up yet = %v, want nil", err)
	}
	w := newWindow(t, "w")
	if err := b.Start(context.Background(), w); !errors.Is(err, shared.ErrTargetGone) {
		t.Errorf("Start with no server = %v, want ErrTargetGone", err)
	}
	if err := New("v").Start(context.Background(), w); !errors.Is(err, shared.ErrUnsupported) || !strings.Contains(err.Error(), "--server-url") {
		t.Errorf("Start before Configure = %v, want ErrUnsupported naming --server-url", err)
	}
	w.Options = map[string]string{"bogus": "1"}
	if err := b.Start(context.Background(), w); !errors.Is(err, shared.ErrUnsupported) || !strings.Contains(err.Error(), "bogus") {
		t.Errorf("Start with an unknown option = %v, want ErrUnsupported naming it", err)
	}
}

// TestServerDir: the server's folder is always a direct child of the window folder.
func TestServerDir(t *testing.T) {
	for _, tc := range []struct {
		w    shared.Window
		want string // "" = refused
	}{
		{shared.Window{ID: "w1", Dir: "/data/windows/w1"}, "/data/windows/w1/w1"},
		{shared.Window{ID: "..", Dir: "/data/windows/w1"}, ""},
		{shared.Window{ID: "../../etc", Dir: "/data/windows/w1"}, ""},
		{shared.Window{ID: "a/b", Dir: "/data/windows/w1"}, ""},
		{shared.Window{ID: "", Dir: "/data/windows/w1"}, ""},
		{shared.Window{ID: "w1", Dir: "relative/w1"}, ""},
	} {
		got, err := serverDir(tc.w)
		if got != tc.want || (err == nil) != (tc.want != "") {
			t.Errorf("serverDir(%+v) = %q, %v; want %q", tc.w, got, err, tc.want)
		}
		if tc.want == "" {
			if _, err := New("v").Finalize(context.Background(), tc.w, shared.Discard); err == nil {
				t.Errorf("Finalize(%+v) accepted the window", tc.w)
			}
		}
	}
}

// TestRefusedUnderCUDATracing: a session whose nsys traces CUDA leaves the torch profiler
// no GPU data (measured on the H200), so the window is refused before the server is asked.
func TestRefusedUnderCUDATracing(t *testing.T) {
	b := New("test")
	// The URL is never reached: the refusal comes first.
	if err := b.Configure(context.Background(), shared.Target{ServerURL: "http://127.0.0.1:1", Trace: []string{"cuda", "nvtx"}}); err != nil {
		t.Fatal(err)
	}
	err := b.Start(context.Background(), shared.Window{ID: "w1", Dir: t.TempDir()})
	if !errors.Is(err, shared.ErrUnsupported) || !strings.Contains(err.Error(), "--trace nvtx") {
		t.Errorf("Start under CUDA tracing: %v", err)
	}
}
