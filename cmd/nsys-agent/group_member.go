package main

import (
	"context"
	"errors"
	"net/http"
	"net/url"

	"github.com/nsys-agent/nsys-agent/agent"
	"github.com/nsys-agent/nsys-agent/agent/fleet"
	"github.com/nsys-agent/nsys-agent/agent/windows"
)

// Group windows (issue 14): the CLI reaches each member of a group through its
// apiClient, adapted here to the coordinator's Member.

// groupMember is one agent as agent/fleet sees it.
type groupMember struct{ ac *apiClient }

var _ fleet.Member = groupMember{}

func (g groupMember) Agent() string { return g.ac.base }

func (g groupMember) Clock(ctx context.Context) (windows.ClockReading, error) {
	var r windows.ClockReading
	err := g.ac.call(ctx, http.MethodGet, "/v1/clock", nil, &r)
	return r, withKind(err)
}

func (g groupMember) Create(ctx context.Context, req windows.CreateRequest) (*windows.Manifest, error) {
	return g.manifest(ctx, http.MethodPost, "/v1/windows", req)
}

func (g groupMember) Window(ctx context.Context, id string) (*windows.Manifest, error) {
	return g.manifest(ctx, http.MethodGet, "/v1/windows/"+url.PathEscape(id), nil)
}

func (g groupMember) Stop(ctx context.Context, id string) (*windows.Manifest, error) {
	return g.manifest(ctx, http.MethodPost, "/v1/windows/"+url.PathEscape(id)+"/stop", nil)
}

func (g groupMember) SetGroup(ctx context.Context, id string, rec windows.GroupRecord) (*windows.Manifest, error) {
	return g.manifest(ctx, http.MethodPut, "/v1/windows/"+url.PathEscape(id)+"/group", rec)
}

func (g groupMember) manifest(ctx context.Context, method, path string, body any) (*windows.Manifest, error) {
	var m windows.Manifest
	if err := g.ac.call(ctx, method, path, body, &m); err != nil {
		return nil, withKind(err)
	}
	return &m, nil
}

// kindError is an agent's error answer that also says which of the state machine's
// domain errors it was, so the coordinator can tell "no such window" from "unreachable".
type kindError struct {
	err  error
	kind error
}

func (e *kindError) Error() string   { return e.err.Error() }
func (e *kindError) Unwrap() []error { return []error{e.err, e.kind} }

// codeKinds maps the API's error codes back to the domain errors behind them.
var codeKinds = map[string]error{
	agent.CodeNotFound:     windows.ErrNotFound,
	agent.CodeNoWindow:     windows.ErrNoWindow,
	agent.CodeWindowActive: windows.ErrWindowActive,
	agent.CodeTargetDown:   windows.ErrTargetDown,
	agent.CodeNoSpace:      windows.ErrNoSpace,
	agent.CodeCancelled:    windows.ErrCancelled,
	agent.CodeBadRequest:   windows.ErrInvalid,
}

func withKind(err error) error {
	var ce *clientError
	if errors.As(err, &ce) {
		if kind := codeKinds[ce.Code]; kind != nil {
			return &kindError{err: err, kind: kind}
		}
	}
	return err
}

// groupMembers adapts the command's agents.
func groupMembers(s *clientSetup) []fleet.Member {
	out := make([]fleet.Member, len(s.agents))
	for i, ac := range s.agents {
		out[i] = groupMember{ac}
	}
	return out
}
