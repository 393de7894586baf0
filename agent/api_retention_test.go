package agent_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nsys-agent/nsys-agent/agent"
	"github.com/nsys-agent/nsys-agent/agent/backends"
	"github.com/nsys-agent/nsys-agent/agent/triggers"
	"github.com/nsys-agent/nsys-agent/agent/windows"
	"github.com/nsys-agent/nsys-agent/nsys/nsystest"
	"github.com/nsys-agent/nsys-agent/plugins/shared"
)

// fileBackend captures by writing a report file at its stop: the smallest backend that
// lets the real state machine behind the API run whole windows.
type fileBackend struct{}

func (fileBackend) Info(context.Context) (shared.Info, error) {
	return shared.Info{Name: "nsys", Version: "test", APIVersion: shared.APIVersion}, nil
}
func (fileBackend) Start(ctx context.Context, w shared.Window) error {
	return os.MkdirAll(w.Dir, 0o700)
}
func (fileBackend) Stop(ctx context.Context, w shared.Window, p shared.Progress) (shared.Result, error) {
	return shared.Result{}, os.WriteFile(filepath.Join(w.Dir, "report.nsys-rep"), []byte("report"), 0o600)
}

// managerService is the real state machine as the API's Service.
type managerService struct{ *windows.Manager }

func (managerService) Status(context.Context) agent.Status            { return agent.Status{} }
func (managerService) Backends(context.Context) []agent.BackendStatus { return nil }
func (managerService) Triggers(context.Context) []triggers.Status     { return nil }
func (managerService) AddTrigger(context.Context, triggers.Spec, windows.Requester) (*triggers.Status, error) {
	return nil, errors.New("this test serves no triggers")
}

// TestRetentionRoutes: DELETE, pin and unpin over HTTP against the real state machine:
// a capturing or pinned window is refused with 409 and the reason, a finished one goes
// with its folder.
func TestRetentionRoutes(t *testing.T) {
	store, err := windows.NewStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	e, err := windows.EntryOf(context.Background(), fileBackend{}, "")
	if err != nil {
		t.Fatal(err)
	}
	reg, err := windows.NewRegistry(e)
	if err != nil {
		t.Fatal(err)
	}
	mgr, err := windows.New(windows.Options{Store: store, Backends: reg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = mgr.Close(context.Background()) })
	logs := &nsystest.Buffer{}
	srv := httptest.NewServer(agent.NewHandler(managerService{mgr}, agent.APIOptions{
		Logger: slog.New(slog.NewTextHandler(logs, nil))}))
	t.Cleanup(srv.Close)
	ta := &testAPI{t: t, srv: srv}

	code, _, body := ta.do("POST", "/v1/windows", "", `{"name":"a"}`)
	if code != http.StatusCreated {
		t.Fatalf("create: %d %s", code, body)
	}
	var w windows.Manifest
	if err := json.Unmarshal(body, &w); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, method, path string
		status             int
		code, msg          string
		pinned             bool
	}{
		{"capturing is not removed", "DELETE", "/v1/windows/" + w.ID, 409, agent.CodeWindowActive, "stop it first", false},
		{"unknown", "DELETE", "/v1/windows/w20260101-000000-abcdef", 404, agent.CodeNotFound, "no window", false},
		{"pin unknown", "POST", "/v1/windows/nope/pin", 404, agent.CodeNotFound, "no window", false},
		{"stop", "POST", "/v1/windows/" + w.ID + "/stop", 202, "", "", false},
		{"pin", "POST", "/v1/windows/" + w.ID + "/pin", 200, "", "", true},
		{"pinned is not removed", "DELETE", "/v1/windows/" + w.ID, 409, agent.CodePinned, "unpin it first", true},
		{"unpin", "POST", "/v1/windows/" + w.ID + "/unpin", 200, "", "", false},
		{"remove", "DELETE", "/v1/windows/" + w.ID, 200, "", "", false},
		{"gone", "GET", "/v1/windows/" + w.ID, 404, agent.CodeNotFound, "no window", false},
		{"wrong method", "PUT", "/v1/windows/" + w.ID + "/pin", 405, "method_not_allowed", "allowed: POST", false},
	} {
		if tc.name == "pin" { // the stop finalizes in the background
			deadline := time.Now().Add(5 * time.Second)
			for cur, _ := mgr.Window(context.Background(), w.ID); cur.State != windows.StateReady && time.Now().Before(deadline); cur, _ = mgr.Window(context.Background(), w.ID) {
				time.Sleep(5 * time.Millisecond)
			}
		}
		code, _, body := ta.do(tc.method, tc.path, "", "")
		if code != tc.status {
			t.Fatalf("%s: %s %s: %d %s, want %d", tc.name, tc.method, tc.path, code, body, tc.status)
		}
		if tc.code != "" {
			if d := errorOf(t, body); d.Code != tc.code || !strings.Contains(d.Message, tc.msg) {
				t.Errorf("%s: error %+v, want %s saying %q", tc.name, d, tc.code, tc.msg)
			}
			continue
		}
		var got windows.Manifest
		if err := json.Unmarshal(body, &got); err != nil || got.ID != w.ID || got.Pinned != tc.pinned {
			t.Errorf("%s: answer %+v (%v), want window %s pinned=%v", tc.name, got, err, w.ID, tc.pinned)
		}
	}
	dir, _ := store.WindowDir(w.ID)
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("the removed window's folder is still there: %v", err)
	}
	for _, want := range []string{"api: remove window", "api: pin window", "api: unpin window"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("audit log lacks %q:\n%s", want, logs.String())
		}
	}
}

// The nsys backend measures its capture where nsys writes it ($TMPDIR), not the folder.
var _ windows.CaptureSizer = (*backends.Nsys)(nil)
