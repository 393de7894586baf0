package serverprof

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// The tests start fake servers and trace writers: none may outlive its test.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func wantKind(t *testing.T, err, kind error, mention ...string) {
	t.Helper()
	if !errors.Is(err, kind) {
		t.Fatalf("error %v, want %v", err, kind)
	}
	for _, m := range mention {
		if !strings.Contains(err.Error(), m) {
			t.Errorf("error %q does not mention %q", err, m)
		}
	}
}

func TestDetect(t *testing.T) {
	ctx := ctxT(t)
	for _, tc := range []struct {
		fake *fakeServer
		want Flavor
	}{
		{newFakeSGLang(t, false).fakeServer, SGLang},
		{newFakeVLLM(t, true, t.TempDir()).fakeServer, VLLM},
		{newFakeVLLM(t, false, t.TempDir()).fakeServer, VLLM},
		{newFakeTRTLLM(t).fakeServer, TRTLLM},
	} {
		got, err := Detect(ctx, tc.fake.srv.URL, Options{})
		if err != nil || got != tc.want {
			t.Errorf("Detect: %q, %v; want %q", got, err, tc.want)
		}
		if n := tc.fake.count("/start_profile") + tc.fake.count("/stop_profile") + tc.fake.count("/metrics") + tc.fake.count("/perf_metrics"); n != 0 {
			t.Errorf("%s: Detect touched a route with side effects %d times", tc.want, n)
		}
	}
	if c, err := New("http://127.0.0.1:1", VLLM, Options{}); err != nil {
		t.Fatal(err)
	} else if _, err := c.ServerInfo(ctx); !errors.Is(err, ErrUnsupported) {
		t.Errorf("vLLM ServerInfo: %v", err)
	}

	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { notFound(w) }))
	defer other.Close()
	_, err := Detect(ctx, other.URL, Options{})
	wantKind(t, err, ErrUnsupported, "name the flavor")

	locked := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/models" && r.Header.Get("Authorization") != "Bearer tok-s3cret" {
			jsonReply(w, 401, map[string]string{"error": "Unauthorized"})
			return
		}
		if r.URL.Path == "/v1/models" {
			jsonReply(w, 200, map[string]any{"data": []any{map[string]any{"owned_by": "vllm"}}})
			return
		}
		notFound(w)
	}))
	defer locked.Close()
	_, err = Detect(ctx, locked.URL, Options{})
	wantKind(t, err, ErrRefused, "Options.Header")
	if f, err := Detect(ctx, locked.URL, Options{Header: http.Header{"Authorization": {"Bearer tok-s3cret"}}}); err != nil || f != VLLM {
		t.Errorf("with the key: %q, %v", f, err)
	}
	if strings.Contains(err.Error(), "s3cret") {
		t.Error("an error carries the header")
	}

	down := httptest.NewServer(http.NotFoundHandler())
	down.Close()
	_, err = Detect(ctx, down.URL, Options{})
	wantKind(t, err, ErrServerDown, "connection refused")
}

func TestNewRefusesCredentialsInURL(t *testing.T) {
	_, err := New("http://user:s3cret@127.0.0.1:1", SGLang, Options{})
	wantKind(t, err, ErrInvalid, "Options.Header")
	if strings.Contains(err.Error(), "s3cret") {
		t.Errorf("error shows the password: %v", err)
	}
	for _, u := range []string{"127.0.0.1:30000", "ftp://h", "http://", "http://h/?q=1"} {
		_, err := New(u, SGLang, Options{})
		wantKind(t, err, ErrInvalid)
	}
	_, err = New("http://h", "tgi", Options{})
	wantKind(t, err, ErrInvalid, "sglang, vllm or trtllm")
}
