package main

import (
	"context"
	"encoding/json"
	"net/http"
	"time"

	"github.com/nsys-agent/nsys-agent/agent/windows"
)

// A capturing window's CAPTURED is the agent's now minus its start, both on the agent's
// clock: this client's own now would be off by the two clocks' difference (a host 3 s
// ahead showed a window captured 3 s too short). agentNow reads the agent's clock
// (GET /v1/clock, at the middle of the round trip); an agent without the route, or one
// that does not answer, leaves this client's clock.
func agentNow(ctx context.Context, ac *apiClient) time.Time {
	t0 := time.Now()
	var r windows.ClockReading
	if err := ac.call(ctx, http.MethodGet, "/v1/clock", nil, &r); err != nil || r.WallNs <= 0 {
		return time.Now()
	}
	return time.Unix(0, r.WallNs).Add(time.Since(t0) / 2)
}

// capturing says whether one of ws is capturing now (started, not stopped): only then
// does its CAPTURED depend on now.
func capturing(ws ...windows.Manifest) bool {
	for i := range ws {
		if ws[i].StartedAt != nil && ws[i].StoppedAt == nil {
			return true
		}
	}
	return false
}

// windowsAt are windows with the agent's now; as JSON, the windows alone.
type windowsAt struct {
	list []windows.Manifest
	now  time.Time
}

func (l windowsAt) MarshalJSON() ([]byte, error) { return json.Marshal(l.list) }

// manifestAt is one window with the agent's now; as JSON, the manifest alone.
type manifestAt struct {
	m   *windows.Manifest
	now time.Time
}

func (s manifestAt) MarshalJSON() ([]byte, error) { return json.Marshal(s.m) }

// listedAt gives the agent's now when a listed window is capturing, else this client's.
func listedAt(ctx context.Context, ac *apiClient, ws []windows.Manifest) time.Time {
	if capturing(ws...) {
		return agentNow(ctx, ac)
	}
	return time.Now()
}
