package agent

import (
	"log/slog"
	"net/http"

	"github.com/nsys-agent/nsys-agent/agent/windows"
)

// Group windows (issue 14): the two routes a coordinator needs beyond the window routes,
// which take a group id wherever they take a window id.

// clock answers GET /v1/clock: the agent's clocks, read as late as possible before the
// answer is written, for the coordinator's offset estimate.
func (a *api) clock(w http.ResponseWriter, r *http.Request) error {
	writeJSON(w, http.StatusOK, a.svc.Clock(r.Context()))
	return nil
}

// setGroup answers PUT /v1/windows/{id}/group with the window, its group record stored.
func (a *api) setGroup(w http.ResponseWriter, r *http.Request) error {
	var rec windows.GroupRecord
	if err := decodeBody(r, &rec); err != nil {
		return err
	}
	who := a.requester(r)
	m, err := a.svc.SetGroup(r.Context(), r.PathValue("id"), rec)
	a.audit(r, "set group", who, m, err, slog.String("group", rec.ID), slog.Int("members", len(rec.Members)))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, m)
	return nil
}
