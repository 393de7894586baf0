package agent

import (
	"log/slog"
	"net/http"

	"github.com/nsys-agent/nsys-agent/agent/triggers"
)

// listTriggers: GET /v1/triggers, every trigger with its fires and why it did not fire.
func (a *api) listTriggers(w http.ResponseWriter, r *http.Request) error {
	ts := a.svc.Triggers(r.Context())
	if ts == nil {
		ts = []triggers.Status{}
	}
	writeJSON(w, http.StatusOK, ts)
	return nil
}

// addTrigger: POST /v1/triggers, a triggers.Spec; 201 with its status.
func (a *api) addTrigger(w http.ResponseWriter, r *http.Request) error {
	var spec triggers.Spec
	if err := decodeBody(r, &spec); err != nil {
		return err
	}
	who := a.requester(r)
	st, err := a.svc.AddTrigger(r.Context(), spec, who)
	attrs := []slog.Attr{slog.String("log", spec.Log), slog.String("metric", spec.Metric), slog.String("remote", who.Remote), slog.String("token_id", who.TokenID)}
	if err != nil {
		code, body := ErrorStatus(err)
		a.log.LogAttrs(r.Context(), slog.LevelWarn, "api: add trigger", append(attrs, slog.Int("status", code), slog.String("error", body.Error.Message))...)
		return err
	}
	a.log.LogAttrs(r.Context(), slog.LevelInfo, "api: add trigger", append(attrs, slog.String("trigger", st.Name), slog.String("condition", st.Condition))...)
	writeJSON(w, http.StatusCreated, st)
	return nil
}
