package agent_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/nsys-agent/nsys-agent/agent"
	"github.com/nsys-agent/nsys-agent/agent/agenttest"
	"github.com/nsys-agent/nsys-agent/agent/windows"
	"github.com/nsys-agent/nsys-agent/nsys/nsystest"
)

func TestMain(m *testing.M) {
	if hc := os.Getenv(agentHelperEnv); hc != "" {
		os.Exit(runAgentHelper(hc)) // run_clock_test.go: this process is an agent
	}
	goleak.VerifyTestMain(m)
}

const (
	tokenA = "token-a-0123456789"
	tokenB = "token-b-9876543210"
)

type testAPI struct {
	t    *testing.T
	srv  *httptest.Server
	svc  *agenttest.Service
	logs *nsystest.Buffer
	m    *agent.Metrics
}

func newTestAPI(t *testing.T, tokens ...string) *testAPI {
	t.Helper()
	svc := agenttest.New(t)
	logs := &nsystest.Buffer{}
	m := agent.NewMetrics(nil)
	h := agent.NewHandler(svc, agent.APIOptions{Tokens: tokens, Version: "test", Metrics: m,
		Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &testAPI{t: t, srv: srv, svc: svc, logs: logs, m: m}
}

// do sends a request with the token (if any) and returns status, headers and body.
func (ta *testAPI) do(method, path, token, body string, hdr ...string) (int, http.Header, []byte) {
	ta.t.Helper()
	req, err := http.NewRequest(method, ta.srv.URL+path, strings.NewReader(body))
	if err != nil {
		ta.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := ta.srv.Client().Do(req)
	if err != nil {
		ta.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		ta.t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, b
}

func errorOf(t *testing.T, body []byte) agent.ErrorDetail {
	t.Helper()
	var eb agent.ErrorBody
	if err := json.Unmarshal(body, &eb); err != nil {
		t.Fatalf("error body is not JSON: %v: %s", err, body)
	}
	return eb.Error
}

func TestAuth(t *testing.T) {
	ta := newTestAPI(t, tokenA, tokenB)
	cases := []struct {
		name, method, path string
		hdr                []string
		want               int
	}{
		{"no token", "GET", "/v1/status", nil, 401},
		{"wrong token", "GET", "/v1/status", []string{"Authorization", "Bearer nope"}, 401},
		{"prefix of a token", "GET", "/v1/status", []string{"Authorization", "Bearer " + tokenA[:5]}, 401},
		{"token plus extra", "GET", "/v1/status", []string{"Authorization", "Bearer " + tokenA + "x"}, 401},
		{"wrong scheme", "GET", "/v1/status", []string{"Authorization", "Basic " + tokenA}, 401},
		{"first token", "GET", "/v1/status", []string{"Authorization", "Bearer " + tokenA}, 200},
		{"second token, lower-case scheme", "GET", "/v1/status", []string{"Authorization", "bearer " + tokenB}, 200},
		{"token header", "GET", "/v1/windows", []string{agent.TokenHeader, tokenB}, 200},
		{"health without token", "GET", "/v1/health", nil, 200},
		{"metrics without token", "GET", "/metrics", nil, 401},
		{"metrics with token", "GET", "/metrics", []string{agent.TokenHeader, tokenA}, 200},
		{"unknown route without token hides the route table", "GET", "/v1/nope", nil, 401},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, h, body := ta.do(c.method, c.path, "", "", c.hdr...)
			if code != c.want {
				t.Fatalf("status %d, want %d: %s", code, c.want, body)
			}
			if c.want == 401 {
				if e := errorOf(t, body); e.Code != agent.CodeUnauthorized {
					t.Errorf("code %q, want %q", e.Code, agent.CodeUnauthorized)
				}
				if !strings.HasPrefix(h.Get("WWW-Authenticate"), "Bearer") {
					t.Errorf("WWW-Authenticate = %q", h.Get("WWW-Authenticate"))
				}
			}
		})
	}
}

func TestNoTokensMeansNoAuth(t *testing.T) {
	ta := newTestAPI(t)
	if code, _, body := ta.do("GET", "/v1/status", "", ""); code != 200 {
		t.Fatalf("status %d: %s", code, body)
	}
	code, _, body := ta.do("POST", "/v1/windows", "", "{}")
	if code != 201 {
		t.Fatalf("create: %d %s", code, body)
	}
	var m windows.Manifest
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatal(err)
	}
	if m.RequestedBy.TokenID != "" || m.RequestedBy.Remote == "" {
		t.Errorf("requester = %+v, want a remote address and no token id", m.RequestedBy)
	}
}

func TestCreateWindowBadInput(t *testing.T) {
	ta := newTestAPI(t, tokenA)
	cases := []struct {
		body, want string
		status     int
	}{
		{`{"durration":"5s"}`, `unknown field "durration"`, 400},
		{`{"duration":"abc"}`, `duration: invalid duration "abc"`, 400},
		{`{"duration":"-1s"}`, `duration: must be positive`, 400},
		{`{"duration":"25h"}`, `duration: at most 24h0m0s`, 400},
		{`{"duration":5}`, `duration: expected string, got number`, 400},
		{`{"steps":-1}`, `steps: must be 0 or more`, 400},
		{`{"name":"a/b"}`, `name: only letters`, 400},
		{`{"name":"a..b"}`, `name: must not contain ".."`, 400},
		{`{"name":"` + strings.Repeat("x", 65) + `"}`, `name: at most 64`, 400},
		{`{"start_at":"tomorrow"}`, `start_at: not an RFC 3339 time`, 400},
		{`{"start_at":"2999-01-02T15:04:05Z"}`, `start_at: at most 24h0m0s ahead`, 400},
		{`{"name":".hidden"}`, `name: must not start with '.'`, 400},
		{`{"backend":"perf"}`, `backend: unknown backend "perf"`, 400},
		{`{"duration":"5s"`, `truncated JSON`, 400},
		{`{"duration":"5s"} {}`, `unexpected data after the JSON object`, 400},
		{`[1]`, `expected a JSON object`, 400},
		{`{"name":"` + strings.Repeat("x", agent.MaxBodyBytes) + `"}`, `larger than`, 413},
	}
	for _, c := range cases {
		t.Run(c.want, func(t *testing.T) {
			code, _, body := ta.do("POST", "/v1/windows", tokenA, c.body)
			if code != c.status {
				t.Fatalf("status %d, want %d: %s", code, c.status, body)
			}
			e := errorOf(t, body)
			if e.Code != agent.CodeBadRequest || !strings.Contains(e.Message, c.want) {
				t.Errorf("error = %+v, want code %s and message containing %q", e, agent.CodeBadRequest, c.want)
			}
		})
	}
	if ws := ta.svc.Windows(context.Background()); len(ws) != 0 {
		t.Errorf("bad requests created windows: %+v", ws)
	}
}

func TestCreateStopLifecycle(t *testing.T) {
	ta := newTestAPI(t, tokenA)

	code, _, body := ta.do("POST", "/v1/windows/active/stop", tokenA, "")
	if code != 409 || errorOf(t, body).Code != agent.CodeNoWindow {
		t.Fatalf("stop with nothing capturing: %d %s", code, body)
	}
	code, _, body = ta.do("POST", "/v1/windows", tokenA, `{"duration":"5s","name":"spike-1","start_at":"2020-01-02T15:04:05Z"}`)
	if code != 201 {
		t.Fatalf("create: %d %s", code, body)
	}
	var m windows.Manifest
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatal(err)
	}
	if m.State != windows.StateCapturing || m.RequestedBy.TokenID != agent.TokenID(tokenA) || !strings.HasPrefix(m.RequestedBy.Remote, "127.0.0.1:") {
		t.Errorf("created window = %+v", m)
	}
	code, _, body = ta.do("POST", "/v1/windows", tokenA, `{}`)
	if code != 409 || errorOf(t, body).Code != agent.CodeWindowActive {
		t.Fatalf("second create: %d %s", code, body)
	}
	code, _, body = ta.do("POST", "/v1/windows/-/stop", tokenA, "")
	if code != 202 {
		t.Fatalf("stop: %d %s", code, body)
	}
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatal(err)
	}
	if m.State != windows.StateFinalizing || m.StoppedBy == nil || m.StoppedBy.TokenID != agent.TokenID(tokenA) {
		t.Errorf("stopped window = %+v", m)
	}

	code, _, body = ta.do("GET", "/v1/windows/"+m.ID, tokenA, "")
	if code != 200 {
		t.Fatalf("get: %d %s", code, body)
	}
	code, _, body = ta.do("GET", "/v1/windows/nope", tokenA, "")
	if code != 404 || errorOf(t, body).Code != agent.CodeNotFound {
		t.Fatalf("unknown window: %d %s", code, body)
	}
	code, _, body = ta.do("GET", "/v1/windows", tokenA, "")
	var list []windows.Manifest
	if code != 200 || json.Unmarshal(body, &list) != nil || len(list) != 1 {
		t.Fatalf("list: %d %s", code, body)
	}

	logs := ta.logs.String()
	if strings.Contains(logs, tokenA) {
		t.Errorf("a token was logged:\n%s", logs)
	}
	for _, want := range []string{"api: create window", "api: stop window", "token_id=" + agent.TokenID(tokenA), "remote=127.0.0.1:"} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs lack %q:\n%s", want, logs)
		}
	}
}

func TestRoutingErrorsAreJSON(t *testing.T) {
	ta := newTestAPI(t, tokenA)
	code, _, body := ta.do("GET", "/v1/nope", tokenA, "")
	if code != 404 || errorOf(t, body).Code != agent.CodeNotFound {
		t.Errorf("unknown route: %d %s", code, body)
	}
	code, h, body := ta.do("DELETE", "/v1/windows", tokenA, "")
	if code != 405 || errorOf(t, body).Code != "method_not_allowed" || !strings.Contains(h.Get("Allow"), "POST") {
		t.Errorf("wrong method: %d %v %s", code, h.Get("Allow"), body)
	}
	code, _, body = ta.do("GET", "/v1/status", tokenA, "")
	var st agent.Status
	if code != 200 || json.Unmarshal(body, &st) != nil || st.Agent != "test" || st.Target.PID != 7 {
		t.Errorf("status: %d %s", code, body)
	}
}

func TestArtifactDownload(t *testing.T) {
	ta := newTestAPI(t, tokenA)
	data := []byte("0123456789abcdefghij")
	art := ta.svc.AddWindow(t, "w9", map[string]string{"report.nsys-rep": string(data)}).Artifacts[0]
	path := "/v1/windows/w9/artifacts/report.nsys-rep"

	code, h, body := ta.do("GET", path, tokenA, "")
	if code != 200 || !bytes.Equal(body, data) {
		t.Fatalf("full download: %d %q", code, body)
	}
	etag := `"` + art.SHA256 + `"`
	if h.Get("ETag") != etag || h.Get("Accept-Ranges") != "bytes" {
		t.Errorf("headers: ETag %q Accept-Ranges %q", h.Get("ETag"), h.Get("Accept-Ranges"))
	}

	code, h, body = ta.do("GET", path, tokenA, "", "Range", "bytes=10-")
	if code != 206 || string(body) != "abcdefghij" || h.Get("Content-Range") != "bytes 10-19/20" {
		t.Errorf("range: %d %q %q", code, body, h.Get("Content-Range"))
	}
	// If-Range with the current ETag keeps the range; a stale one gets the whole file.
	code, _, body = ta.do("GET", path, tokenA, "", "Range", "bytes=15-", "If-Range", `"stale"`)
	if code != 200 || len(body) != len(data) {
		t.Errorf("stale If-Range: %d %q", code, body)
	}
	code, _, _ = ta.do("GET", path, tokenA, "", "If-None-Match", etag)
	if code != 304 {
		t.Errorf("If-None-Match: %d, want 304", code)
	}

	for name, want := range map[string]int{
		"/v1/windows/w9/artifacts/other":             404,
		"/v1/windows/w9/artifacts/..%2Fmanifest":     400,
		"/v1/windows/w9/artifacts/a%5Cb":             400,
		"/v1/windows/nope/artifacts/report.nsys-rep": 404,
	} {
		if code, _, body := ta.do("GET", name, tokenA, ""); code != want {
			t.Errorf("GET %s: %d, want %d: %s", name, code, want, body)
		}
	}
	if err := os.Remove(filepath.Join(ta.svc.Dir, "w9", "report.nsys-rep")); err != nil {
		t.Fatal(err)
	}
	if code, _, body := ta.do("GET", path, tokenA, ""); code != 404 || !strings.Contains(string(body), "missing") {
		t.Errorf("missing file: %d %s", code, body)
	}
}

func TestEventsStream(t *testing.T) {
	ta := newTestAPI(t, tokenA)
	if code, _, body := ta.do("POST", "/v1/windows", tokenA, `{}`); code != 201 {
		t.Fatalf("create: %d %s", code, body)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", ta.srv.URL+"/v1/events", nil)
	req.Header.Set("Authorization", "Bearer "+tokenA)
	resp, err := ta.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("events: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	sc := bufio.NewScanner(resp.Body)
	if !sc.Scan() || sc.Text() != ": subscribed" {
		t.Fatalf("first line %q, want the subscribed comment", sc.Text())
	}
	if code, _, body := ta.do("POST", "/v1/windows/active/stop", tokenA, ""); code != 202 {
		t.Fatalf("stop: %d %s", code, body)
	}
	var lines []string
	for len(lines) < 3 && sc.Scan() {
		if sc.Text() != "" || len(lines) > 0 {
			lines = append(lines, sc.Text())
		}
	}
	if len(lines) != 3 || lines[0] != "event: window" || !strings.HasPrefix(lines[1], "data: ") || lines[2] != "" {
		t.Fatalf("event lines = %q", lines)
	}
	var ev windows.Event
	if err := json.Unmarshal([]byte(strings.TrimPrefix(lines[1], "data: ")), &ev); err != nil {
		t.Fatal(err)
	}
	if ev.Window == nil || ev.Window.ID != "w1" || ev.Window.State != windows.StateFinalizing {
		t.Errorf("event = %+v", ev)
	}
}

func TestEventsHeartbeat(t *testing.T) {
	svc := agenttest.New(t)
	srv := httptest.NewServer(agent.NewHandler(svc, agent.APIOptions{Heartbeat: time.Millisecond}))
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL + "/v1/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if sc.Text() == ": heartbeat" {
			return
		}
	}
	t.Fatalf("stream ended without a heartbeat: %v", sc.Err())
}

func TestMetrics(t *testing.T) {
	ta := newTestAPI(t, tokenA)
	ta.svc.AddWindow(t, "w0", map[string]string{"r.nsys-rep": "x"})
	if code, _, body := ta.do("POST", "/v1/windows", tokenA, `{}`); code != 201 {
		t.Fatalf("create: %d %s", code, body)
	}
	ta.do("GET", "/v1/windows/nope", tokenA, "")
	ta.do("GET", "/v1/status", "", "")
	ta.m.ObserveFinalize("nsys", windows.StateReady, 3*time.Second)

	code, _, body := ta.do("GET", "/metrics", tokenA, "")
	if code != 200 {
		t.Fatalf("metrics: %d", code)
	}
	for _, want := range []string{
		`nsys_agent_windows{state="capturing"} 1`,
		`nsys_agent_windows{state="ready"} 1`,
		`nsys_agent_windows{state="failed"} 0`,
		`nsys_agent_api_requests_total{code="201",route="POST /v1/windows"} 1`,
		`nsys_agent_api_requests_total{code="404",route="GET /v1/windows/{id}"} 1`,
		`nsys_agent_api_requests_total{code="401",route="GET /v1/status"} 1`,
		`nsys_agent_window_finalize_seconds_count{backend="nsys",state="ready"} 1`,
		`go_goroutines`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// TestArtifactThroughSymlinkIsNotServed: a symbolic link planted where an artifact was
// listed is not followed (before: a link to /etc/passwd was served with 200).
func TestArtifactThroughSymlinkIsNotServed(t *testing.T) {
	ta := newTestAPI(t, tokenA)
	ta.svc.AddWindow(t, "w9", map[string]string{"report.nsys-rep": "the report"})
	p := filepath.Join(ta.svc.Dir, "w9", "report.nsys-rep")
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc/passwd", p); err != nil {
		t.Fatal(err)
	}
	code, _, body := ta.do("GET", "/v1/windows/w9/artifacts/report.nsys-rep", tokenA, "")
	if code != 404 || strings.Contains(string(body), "root:") {
		t.Fatalf("a symlinked artifact: %d %.200s", code, body)
	}
}
