package agent

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/nsys-agent/nsys-agent/agent/windows"
)

// apiError is an error of the HTTP layer itself (auth, routing, a body that is not
// JSON), with its status and code.
type apiError struct {
	status int
	code   string
	msg    string
}

func (e *apiError) Error() string { return e.msg }

func apiErrorf(status int, code, format string, a ...any) *apiError {
	return &apiError{status: status, code: code, msg: fmt.Sprintf(format, a...)}
}

// domainStatus is the one table from the state machine's errors to HTTP.
var domainStatus = []struct {
	kind   error
	status int
	code   string
}{
	{windows.ErrInvalid, http.StatusBadRequest, CodeBadRequest},
	{windows.ErrNotFound, http.StatusNotFound, CodeNotFound},
	{windows.ErrWindowActive, http.StatusConflict, CodeWindowActive},
	{windows.ErrNoWindow, http.StatusConflict, CodeNoWindow},
	{windows.ErrCancelled, http.StatusConflict, CodeCancelled},
	{windows.ErrTargetDown, http.StatusServiceUnavailable, CodeTargetDown},
	{windows.ErrNoSpace, http.StatusInsufficientStorage, CodeNoSpace},
	{windows.ErrPinned, http.StatusConflict, CodePinned}, // retention (issue 15, item 3)
}

// ErrorStatus maps an error to its HTTP status and body: the API's own errors, then the
// domain's; anything else is a 500.
func ErrorStatus(err error) (int, ErrorBody) {
	body := func(code string) ErrorBody { return ErrorBody{Error: ErrorDetail{Code: code, Message: err.Error()}} }
	var ae *apiError
	if errors.As(err, &ae) {
		return ae.status, body(ae.code)
	}
	for _, d := range domainStatus {
		if errors.Is(err, d.kind) {
			return d.status, body(d.code)
		}
	}
	return http.StatusInternalServerError, body(CodeInternal)
}
