package agent

// Retention routes (issue 15, item 3): remove a window, pin and unpin one.

import (
	"log/slog"
	"net/http"
)

// deleteWindow removes a finished, unpinned window and answers with what it was.
func (a *api) deleteWindow(w http.ResponseWriter, r *http.Request) error {
	who := a.requester(r)
	m, err := a.svc.DeleteWindow(r.Context(), r.PathValue("id"), who)
	a.audit(r, "remove window", who, m, err, slog.String("asked_for", r.PathValue("id")))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, m)
	return nil
}

func (a *api) pinWindow(pinned bool) func(w http.ResponseWriter, r *http.Request) error {
	action := "unpin window"
	if pinned {
		action = "pin window"
	}
	return func(w http.ResponseWriter, r *http.Request) error {
		who := a.requester(r)
		m, err := a.svc.PinWindow(r.Context(), r.PathValue("id"), pinned, who)
		a.audit(r, action, who, m, err, slog.String("asked_for", r.PathValue("id")))
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, m)
		return nil
	}
}
