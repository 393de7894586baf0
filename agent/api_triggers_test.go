package agent_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nsys-agent/nsys-agent/agent/triggers"
	"github.com/nsys-agent/nsys-agent/agent/windows"
)

// TestTriggersAPI: POST /v1/triggers arms a trigger (201 with its status), a bad one is
// a 400 naming the field, GET lists them; a line of the target's output that matches
// opens a window recorded as the trigger's, with the value that fired it; a second
// matching line while that window captures is a "window-active" non-fire.
func TestTriggersAPI(t *testing.T) {
	ta := newTestAPI(t, tokenA)
	code, _, body := ta.do(http.MethodPost, "/v1/triggers", tokenA, `{"name":"slow","log":"gen throughput \\(token/s\\): (?P<value>[0-9.]+)","below":100,"duration":"2s","cooldown":"0s","max":3}`)
	if code != http.StatusCreated {
		t.Fatalf("POST /v1/triggers: %d %s", code, body)
	}
	var st triggers.Status
	if err := json.Unmarshal(body, &st); err != nil || st.Name != "slow" || st.Max != 3 || st.Duration != "2s" || st.Condition == "" {
		t.Fatalf("status %+v (%v)", st, err)
	}
	for _, tc := range []struct{ body, want string }{
		{`{"log":"x","metric":"m<1"}`, "not both"},
		{`{"metric":"m=1"}`, "NAME<X"},
		{`{"log":"x","every":"1s"}`, `unknown field "every"`},
		{`{"name":"slow","log":"x"}`, `a trigger named "slow" exists`},
	} {
		code, _, body := ta.do(http.MethodPost, "/v1/triggers", tokenA, tc.body)
		if e := errorOf(t, body); code != http.StatusBadRequest || !strings.Contains(e.Message, tc.want) || e.Code != "bad_request" {
			t.Errorf("%s: %d %s, want 400 saying %q", tc.body, code, body, tc.want)
		}
	}
	if code, _, _ := ta.do(http.MethodGet, "/v1/triggers", "", ""); code != http.StatusUnauthorized {
		t.Errorf("GET /v1/triggers without a token: %d", code)
	}

	ta.svc.Line("[TP0] Decode batch, #running-req: 1, gen throughput (token/s): 87.50, #queue-req: 0,")
	var list []triggers.Status
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, _, body = ta.do(http.MethodGet, "/v1/triggers", tokenA, "")
		if err := json.Unmarshal(body, &list); err != nil {
			t.Fatal(err)
		}
		if len(list) == 1 && list[0].Fired == 1 || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if len(list) != 1 || list[0].Fired != 1 || list[0].Fires[0].Window == "" {
		t.Fatalf("triggers %s", body)
	}
	_, _, body = ta.do(http.MethodGet, "/v1/windows/"+list[0].Fires[0].Window, tokenA, "")
	var m windows.Manifest
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatal(err)
	}
	if m.Trigger != "trigger:slow" || m.Labels["trigger"] != "slow" || m.Labels["trigger_value"] != "87.5" || m.Name != "slow" || m.Duration != "2s" {
		t.Errorf("window %s", body)
	}

	ta.svc.Line("[TP0] Decode batch, #running-req: 1, gen throughput (token/s): 12.00, #queue-req: 0,")
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		_, _, body = ta.do(http.MethodGet, "/v1/triggers", tokenA, "")
		if strings.Contains(string(body), `"reason": "window-active"`) {
			return
		}
	}
	t.Errorf("a match while the window captures should be a window-active non-fire: %s", body)
}
