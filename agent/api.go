package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/nsys-agent/nsys-agent/agent/windows"
	"github.com/nsys-agent/nsys-agent/internal/regularfile"
)

// MaxBodyBytes bounds every request body; the largest real one is a few hundred bytes.
const MaxBodyBytes = 1 << 20

// APIOptions configures NewHandler.
type APIOptions struct {
	// Tokens are the accepted bearer tokens. Empty means no authentication, which `run`
	// allows only on a loopback listener.
	Tokens  []string
	Logger  *slog.Logger // nil: slog.Default()
	Version string       // reported by /v1/health and /v1/status
	// Metrics receives request counts and serves /metrics; nil: a private set.
	Metrics *Metrics
	// Heartbeat is the idle interval of /v1/events comments; 0: DefaultHeartbeat.
	Heartbeat time.Duration
}

type api struct {
	svc       Service
	tokens    *tokenSet
	log       *slog.Logger
	version   string
	metrics   *Metrics
	heartbeat time.Duration
	mux       *http.ServeMux
}

// NewHandler serves the HTTP API (docs/api.md) over svc. Streams on /v1/events end when
// the client leaves; to end them on shutdown, give the http.Server a BaseContext that
// is cancelled when shutting down.
func NewHandler(svc Service, opts APIOptions) http.Handler {
	a := &api{
		svc:       svc,
		tokens:    newTokenSet(opts.Tokens),
		log:       opts.Logger,
		version:   opts.Version,
		metrics:   opts.Metrics,
		heartbeat: opts.Heartbeat,
		mux:       http.NewServeMux(),
	}
	if a.log == nil {
		a.log = slog.Default()
	}
	if a.metrics == nil {
		a.metrics = NewMetrics(nil)
	}
	if a.heartbeat <= 0 {
		a.heartbeat = DefaultHeartbeat
	}
	a.metrics.windows.svc.Store(&svc)

	a.mux.HandleFunc("GET /v1/health", a.health)
	a.handle("GET /v1/status", a.status)
	a.handle("GET /v1/backends", a.backends)
	a.handle("POST /v1/windows", a.createWindow)
	a.handle("GET /v1/windows", a.listWindows)
	a.handle("GET /v1/windows/{id}", a.getWindow)
	a.handle("POST /v1/windows/{id}/stop", a.stopWindow)
	a.handle("GET /v1/windows/{id}/artifacts/{name}", a.artifact)
	// Retention (issue 15, item 3): api_retention.go.
	a.handle("DELETE /v1/windows/{id}", a.deleteWindow)
	a.handle("POST /v1/windows/{id}/pin", a.pinWindow(true))
	a.handle("POST /v1/windows/{id}/unpin", a.pinWindow(false))
	// Issue 15, triggers part.
	a.handle("GET /v1/triggers", a.listTriggers)
	a.handle("POST /v1/triggers", a.addTrigger)
	a.handle("GET /v1/clock", a.clock)
	a.handle("PUT /v1/windows/{id}/group", a.setGroup)
	a.mux.HandleFunc("GET /v1/events", a.serveEvents)
	a.mux.Handle("GET /metrics", a.metrics.handler())
	return a
}

// handle registers a handler that returns its error instead of writing it.
func (a *api) handle(pattern string, h func(w http.ResponseWriter, r *http.Request) error) {
	a.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		if err := h(w, r); err != nil {
			a.writeError(w, r, err)
		}
	})
}

// allMethods are the methods probed to tell a 405 from a 404.
var allMethods = []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete}

func (a *api) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rec := &statusRecorder{ResponseWriter: w, code: http.StatusOK}
	_, route := a.mux.Handler(r)
	defer func() {
		label := route
		if label == "" {
			label = "unmatched" // unmatched paths must not create unbounded label values
		}
		a.metrics.observeRequest(label, rec.code)
	}()

	// Authenticate before routing so an unauthenticated caller learns nothing about
	// which paths exist.
	if route != "GET /v1/health" && a.tokens.enabled() && !a.tokens.match(presentedToken(r)) {
		rec.Header().Set("WWW-Authenticate", `Bearer realm="nsys-agent"`)
		a.writeError(rec, r, apiErrorf(http.StatusUnauthorized, CodeUnauthorized,
			"missing or wrong token: send \"Authorization: Bearer <token>\""))
		return
	}
	if route == "" {
		if allow := a.allowed(r); len(allow) > 0 {
			rec.Header().Set("Allow", strings.Join(allow, ", "))
			a.writeError(rec, r, apiErrorf(http.StatusMethodNotAllowed, "method_not_allowed",
				"%s is not allowed on %s (allowed: %s)", r.Method, r.URL.Path, strings.Join(allow, ", ")))
			return
		}
		a.writeError(rec, r, apiErrorf(http.StatusNotFound, CodeNotFound, "no such route: %s %s", r.Method, r.URL.Path))
		return
	}
	r.Body = http.MaxBytesReader(rec, r.Body, MaxBodyBytes)
	a.mux.ServeHTTP(rec, r)
}

// allowed lists the methods the path answers to, asking the mux itself so the answer
// follows the registered patterns.
func (a *api) allowed(r *http.Request) []string {
	var allow []string
	for _, m := range allMethods {
		probe := r.Clone(r.Context())
		probe.Method = m
		if _, p := a.mux.Handler(probe); p != "" {
			allow = append(allow, m)
		}
	}
	return allow
}

// statusRecorder remembers the status for metrics; Unwrap lets ResponseController reach
// the real writer's Flush.
type statusRecorder struct {
	http.ResponseWriter
	code        int
	wroteHeader bool
}

func (s *statusRecorder) WriteHeader(code int) {
	if !s.wroteHeader {
		s.code, s.wroteHeader = code, true
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	s.wroteHeader = true
	return s.ResponseWriter.Write(b)
}

func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

func (a *api) health(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, Health{OK: true, Version: a.version})
}

func (a *api) status(w http.ResponseWriter, r *http.Request) error {
	st := a.svc.Status(r.Context())
	if st.Agent == "" {
		st.Agent = a.version
	}
	writeJSON(w, http.StatusOK, st)
	return nil
}

func (a *api) backends(w http.ResponseWriter, r *http.Request) error {
	writeJSON(w, http.StatusOK, a.svc.Backends(r.Context()))
	return nil
}

// createWindow decodes the request; the Service validates it (the domain's rules, with
// the field named in the message).
func (a *api) createWindow(w http.ResponseWriter, r *http.Request) error {
	var req windows.CreateRequest
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	who := a.requester(r)
	m, err := a.svc.CreateWindow(r.Context(), req, who)
	a.audit(r, "create window", who, m, err,
		slog.String("backend", req.Backend), slog.String("duration", req.Duration),
		slog.Int("steps", req.Steps), slog.String("name", req.Name), slog.String("start_at", req.StartAt))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, m)
	return nil
}

func (a *api) stopWindow(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	if id == "active" || id == "-" {
		id = ""
	}
	who := a.requester(r)
	m, err := a.svc.StopWindow(r.Context(), id, who)
	a.audit(r, "stop window", who, m, err, slog.String("asked_for", r.PathValue("id")))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusAccepted, m)
	return nil
}

func (a *api) listWindows(w http.ResponseWriter, r *http.Request) error {
	if cached, ok := a.svc.(interface {
		WindowsJSON(context.Context) []byte
	}); ok {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		_, _ = w.Write(cached.WindowsJSON(r.Context()))
		return nil
	}
	ws := a.svc.Windows(r.Context())
	if ws == nil {
		ws = []windows.Manifest{} // [] rather than null for scripts
	}
	writeJSON(w, http.StatusOK, ws)
	return nil
}

func (a *api) getWindow(w http.ResponseWriter, r *http.Request) error {
	m, err := a.svc.Window(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, m)
	return nil
}

func (a *api) artifact(w http.ResponseWriter, r *http.Request) error {
	id, name := r.PathValue("id"), r.PathValue("name")
	// A path value is unescaped, so "%2F" arrives as "/": refuse anything but a base name
	// here as well as in the Service.
	if err := checkArtifactName(name); err != nil {
		return err
	}
	path, art, err := a.svc.ArtifactPath(r.Context(), id, name)
	if err != nil {
		return err
	}
	// Never through a symbolic link, never anything but a regular file: a link planted in
	// the window folder must not serve a file from outside the data dir.
	f, err := regularfile.Open(path, false)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return apiErrorf(http.StatusNotFound, CodeNotFound, "artifact %q of window %q is listed but its file is missing", name, id)
		}
		return apiErrorf(http.StatusNotFound, CodeNotFound, "artifact %q of window %q is not a regular file", name, id)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("stat artifact %q of window %q: %w", name, id, err)
	}
	h := w.Header()
	if art != nil && art.SHA256 != "" {
		// ServeContent answers If-None-Match (304) and If-Range from this header.
		h.Set("ETag", `"`+art.SHA256+`"`)
	}
	h.Set("Content-Disposition", fmt.Sprintf("attachment; filename=%q", name))
	h.Set("Content-Type", "application/octet-stream")
	http.ServeContent(w, r, name, fi.ModTime(), f)
	return nil
}

func checkArtifactName(name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, `/\`) || strings.ContainsRune(name, 0) {
		return apiErrorf(http.StatusBadRequest, CodeBadRequest, "artifact name %q: must be a plain file name", name)
	}
	return nil
}

// requester says who made a request: the remote address and the token's fingerprint.
// X-Forwarded-For is ignored: anyone can send it.
func (a *api) requester(r *http.Request) windows.Requester {
	who := windows.Requester{Remote: r.RemoteAddr, Trigger: windows.TriggerAPI}
	if a.tokens.enabled() {
		who.TokenID = TokenID(presentedToken(r))
	}
	return who
}

// audit logs a state-changing call with who made it and how it ended; never the token.
func (a *api) audit(r *http.Request, action string, who windows.Requester, m *windows.Manifest, err error, attrs ...slog.Attr) {
	attrs = append(attrs, slog.String("remote", who.Remote), slog.String("token_id", who.TokenID))
	level := slog.LevelInfo
	if err != nil {
		code, body := ErrorStatus(err)
		level = slog.LevelWarn
		attrs = append(attrs, slog.Int("status", code), slog.String("error", body.Error.Message))
	} else if m != nil {
		attrs = append(attrs, slog.String("window", m.ID), slog.String("state", string(m.State)))
	}
	a.log.LogAttrs(r.Context(), level, "api: "+action, attrs...)
}

func (a *api) writeError(w http.ResponseWriter, r *http.Request, err error) {
	code, body := ErrorStatus(err)
	if code >= 500 {
		a.log.LogAttrs(r.Context(), slog.LevelError, "api: request failed",
			slog.String("method", r.Method), slog.String("path", r.URL.Path),
			slog.String("remote", r.RemoteAddr), slog.String("error", err.Error()))
	}
	writeJSON(w, code, body)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v) // the client went away; nothing to tell it
}

// decodeBody reads one JSON object, refusing unknown fields and trailing data, and
// words every error after the field it concerns. An empty body is an empty object.
func decodeBody(r *http.Request, v any) error {
	data, err := io.ReadAll(r.Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return apiErrorf(http.StatusRequestEntityTooLarge, CodeBadRequest, "request body is larger than %d bytes", mbe.Limit)
		}
		return apiErrorf(http.StatusBadRequest, CodeBadRequest, "reading request body: %v", err)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return apiErrorf(http.StatusBadRequest, CodeBadRequest, "%s", describeJSONError(err))
	}
	if dec.More() {
		return apiErrorf(http.StatusBadRequest, CodeBadRequest, "request body: unexpected data after the JSON object")
	}
	return nil
}

func describeJSONError(err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return fmt.Sprintf("request body: malformed JSON at byte %d: %s", se.Offset, strings.TrimPrefix(se.Error(), "json: "))
	case errors.As(err, &te):
		field := te.Field
		if field == "" {
			return fmt.Sprintf("request body: expected a JSON object, got %s", te.Value)
		}
		return fmt.Sprintf("%s: expected %s, got %s", field, te.Type, te.Value)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "request body: truncated JSON"
	default:
		// Unknown fields come back as `json: unknown field "x"`.
		return "request body: " + strings.TrimPrefix(err.Error(), "json: ")
	}
}
