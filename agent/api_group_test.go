package agent_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/nsys-agent/nsys-agent/agent"
	"github.com/nsys-agent/nsys-agent/agent/windows"
	"github.com/nsys-agent/nsys-agent/nsys/nsystest"
)

// newManagerAPI serves the real state machine over o (a store and fileBackend unless
// set) behind the real handler, with these tokens.
func newManagerAPI(t *testing.T, o windows.Options, tokens ...string) (*windows.Manager, *testAPI) {
	t.Helper()
	if o.Store == nil {
		store, err := windows.NewStore(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		o.Store = store
	}
	e, err := windows.EntryOf(context.Background(), fileBackend{}, "")
	if err != nil {
		t.Fatal(err)
	}
	if o.Backends, err = windows.NewRegistry(e); err != nil {
		t.Fatal(err)
	}
	mgr, err := windows.New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = mgr.Close(context.Background()) })
	logs := &nsystest.Buffer{}
	srv := httptest.NewServer(agent.NewHandler(managerService{mgr}, agent.APIOptions{Tokens: tokens,
		Logger: slog.New(slog.NewTextHandler(logs, nil))}))
	t.Cleanup(srv.Close)
	return mgr, &testAPI{t: t, srv: srv, logs: logs}
}

// TestGroupRoutes: PUT /v1/windows/{id}/group over HTTP against the real state machine,
// and a group id in every window route.
func TestGroupRoutes(t *testing.T) {
	store, err := windows.NewStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	mgr, ta := newManagerAPI(t, windows.Options{Store: store}, tokenA)
	code, _, body := ta.do("POST", "/v1/windows", tokenA, `{"group":"g-test.1"}`)
	if code != http.StatusCreated {
		t.Fatalf("create: %d %s", code, body)
	}
	var w windows.Manifest
	if err := json.Unmarshal(body, &w); err != nil || w.Group != "g-test.1" {
		t.Fatalf("created: %+v %v", w, err)
	}
	if code, _, body := ta.do("POST", "/v1/windows", tokenA, `{"name":"other"}`); code != http.StatusConflict {
		t.Fatalf("a second window while the first captures: %d %s", code, body)
	}
	rec := `{"id":"g-test.1","coordinator":"client","start_at":"2026-01-02T03:04:05.5Z","state":"capturing","skew_ns":1500,"fire_skew_ns":700,
		"members":[{"agent":"http://127.0.0.1:1","host":"127.0.0.1_1","window":"` + w.ID + `","offset_ns":-2500000000,"uncertainty_ns":40000,"rtt_ns":80000,"state":"capturing"}]}`
	for _, tc := range []struct {
		name, method, path, token, body string
		status                          int
		code, msg                       string
	}{
		{"no token", "PUT", "/v1/windows/" + w.ID + "/group", "", rec, 401, agent.CodeUnauthorized, "token"},
		{"clock needs the token too", "GET", "/v1/clock", "", "", 401, agent.CodeUnauthorized, "token"},
		{"bad JSON", "PUT", "/v1/windows/" + w.ID + "/group", tokenA, `{"id":`, 400, agent.CodeBadRequest, "JSON"},
		{"unknown field", "PUT", "/v1/windows/" + w.ID + "/group", tokenA, `{"id":"g-test.1","skew":1}`, 400, agent.CodeBadRequest, `unknown field "skew"`},
		{"wrong type", "PUT", "/v1/windows/" + w.ID + "/group", tokenA, `{"id":"g-test.1","skew_ns":"1"}`, 400, agent.CodeBadRequest, "skew_ns"},
		{"unknown window", "PUT", "/v1/windows/w20260101-000000-abcdef/group", tokenA, rec, 404, agent.CodeNotFound, "no window"},
		{"unknown group", "PUT", "/v1/windows/g-nope/group", tokenA, rec, 404, agent.CodeNotFound, "no window of group g-nope"},
		{"another group", "PUT", "/v1/windows/" + w.ID + "/group", tokenA, `{"id":"g-test.2"}`, 400, agent.CodeBadRequest, "not of group"},
		{"wrong method", "POST", "/v1/windows/" + w.ID + "/group", tokenA, rec, 405, "method_not_allowed", "allowed: PUT"},
		{"stored", "PUT", "/v1/windows/" + w.ID + "/group", tokenA, rec, 200, "", ""},
		{"by group id", "PUT", "/v1/windows/g-test.1/group", tokenA, rec, 200, "", ""},
		{"get by group id", "GET", "/v1/windows/g-test.1", tokenA, "", 200, "", ""},
		{"pin by group id", "POST", "/v1/windows/g-test.1/pin", tokenA, "", 200, "", ""},
		{"stop by group id", "POST", "/v1/windows/g-test.1/stop", tokenA, "", 202, "", ""},
		{"a second window of the group", "POST", "/v1/windows", tokenA, `{"group":"g-test.1"}`, 400, agent.CodeBadRequest, w.ID},
	} {
		code, _, body := ta.do(tc.method, tc.path, tc.token, tc.body)
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
		if err := json.Unmarshal(body, &got); err != nil || got.ID != w.ID {
			t.Fatalf("%s: answer %s (%v), want window %s", tc.name, body, err, w.ID)
		}
		if got.GroupInfo == nil || got.GroupInfo.SkewNs != 1500 || len(got.GroupInfo.Members) != 1 || got.GroupInfo.Members[0].OffsetNs != -2500000000 {
			t.Errorf("%s: group record %+v", tc.name, got.GroupInfo)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for cur, _ := mgr.Window(context.Background(), w.ID); cur.State != windows.StateReady; cur, _ = mgr.Window(context.Background(), w.ID) {
		if time.Now().After(deadline) {
			t.Fatalf("window still %s", cur.State)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if code, _, body := ta.do("GET", "/v1/windows/g-test.1/artifacts/report.nsys-rep", tokenA, ""); code != 200 || string(body) != "report" {
		t.Fatalf("artifact by group id: %d %q", code, body)
	}
	for _, want := range []string{"api: set group", "group=g-test.1", "members=1"} {
		if !strings.Contains(ta.logs.String(), want) {
			t.Errorf("audit log lacks %q:\n%s", want, ta.logs.String())
		}
	}
	if err := mgr.Close(context.Background()); err != nil {
		t.Fatal(err)
	}

	// A restarted agent keeps the record and still answers to the group id.
	_, again := newManagerAPI(t, windows.Options{Store: store}, tokenA)
	code, _, body = again.do("GET", "/v1/windows/g-test.1", tokenA, "")
	var got windows.Manifest
	if err := json.Unmarshal(body, &got); code != 200 || err != nil || got.ID != w.ID || got.GroupInfo == nil || got.GroupInfo.Coordinator != "client" || !got.Pinned {
		t.Fatalf("after a restart: %d %s", code, body)
	}
	if code, _, body := again.do("DELETE", "/v1/windows/g-test.1", tokenA, ""); code != 409 {
		t.Fatalf("a pinned group window is not removed: %d %s", code, body)
	}
}

// TestClockRoute: GET /v1/clock answers the agent's clock, the one its manifests are
// written on: here shifted 3 s ahead of the machine, as the test hook shifts an agent.
func TestClockRoute(t *testing.T) {
	const shift = 3 * time.Second
	_, ta := newManagerAPI(t, windows.Options{Now: func() time.Time { return time.Now().Add(shift) }}, tokenA)
	before := time.Now()
	code, _, body := ta.do("GET", "/v1/clock", tokenA, "")
	after := time.Now()
	var c windows.ClockReading
	if err := json.Unmarshal(body, &c); code != 200 || err != nil {
		t.Fatalf("clock: %d %s (%v)", code, body, err)
	}
	if wall := time.Unix(0, c.WallNs); wall.Before(before.Add(shift)) || wall.After(after.Add(shift)) {
		t.Errorf("wall_ns %s is not between %s and %s (the machine's clock plus %v)", wall, before.Add(shift), after.Add(shift), shift)
	}
	if c.MonoNs <= 0 {
		t.Errorf("mono_ns %d", c.MonoNs)
	}
}
