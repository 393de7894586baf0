package agent

import (
	"context"
	"errors"
	"fmt"
	"net/http"
)

// Service is what the HTTP API serves. The window manager implements it; the API layer
// (api.go) only translates HTTP to these calls and errors to status codes.
type Service interface {
	Status(ctx context.Context) Status
	// CreateWindow opens a window (201). A window already capturing is a 409
	// (CodeWindowActive); a target that is down is a 503 (CodeTargetDown).
	CreateWindow(ctx context.Context, req CreateWindowRequest, who Requester) (*Manifest, error)
	// StopWindow stops the window with this id ("" = the active one) and returns at once
	// (202) while finalizing goes on in the background. Nothing capturing: 409 (CodeNoWindow).
	StopWindow(ctx context.Context, id string, who Requester) (*Manifest, error)
	Windows(ctx context.Context) []Manifest
	Window(ctx context.Context, id string) (*Manifest, error)
	// ArtifactPath resolves an artifact of a window to a file inside the data dir.
	ArtifactPath(ctx context.Context, id, name string) (string, *Artifact, error)
	// Subscribe streams events until cancel is called.
	Subscribe() (events <-chan Event, cancel func())
}

// APIError carries an HTTP status and a stable code; every Service error that is not
// one is a 500.
type APIError struct {
	Status  int
	Code    string
	Message string
}

func (e *APIError) Error() string { return e.Message }

func apiErrorf(status int, code, format string, a ...any) *APIError {
	return &APIError{Status: status, Code: code, Message: fmt.Sprintf(format, a...)}
}

// ErrorStatus maps an error to its HTTP status and body.
func ErrorStatus(err error) (int, ErrorBody) {
	var ae *APIError
	if errors.As(err, &ae) {
		return ae.Status, ErrorBody{Error: ErrorDetail{Code: ae.Code, Message: ae.Message}}
	}
	return http.StatusInternalServerError, ErrorBody{Error: ErrorDetail{Code: CodeInternal, Message: err.Error()}}
}
