package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nsys-agent/nsys-agent/agent/fleet"
	"github.com/nsys-agent/nsys-agent/agent/windows"
)

// member is one agent reached over its HTTP API, as agent/fleet sees it, with every
// call timed into a phases shared by the group's members.
type member struct {
	base   string
	client *http.Client
	ph     *phases
	// recordBytes adds up the group records sent (their JSON): whole on the keepers,
	// a member's own entry on the others.
	recordBytes *atomic.Int64
}

var _ fleet.Member = (*member)(nil)

func (m *member) Agent() string { return m.base }

func (m *member) Clock(ctx context.Context) (windows.ClockReading, error) {
	defer m.ph.span("clock")()
	var r windows.ClockReading
	return r, m.do(ctx, http.MethodGet, "/v1/clock", nil, &r)
}

func (m *member) Create(ctx context.Context, req windows.CreateRequest) (*windows.Manifest, error) {
	defer m.ph.span("schedule")()
	return m.manifest(ctx, http.MethodPost, "/v1/windows", req)
}

func (m *member) Window(ctx context.Context, id string) (*windows.Manifest, error) {
	defer m.ph.span("ack")()
	return m.manifest(ctx, http.MethodGet, "/v1/windows/"+url.PathEscape(id), nil)
}

func (m *member) Stop(ctx context.Context, id string) (*windows.Manifest, error) {
	return m.manifest(ctx, http.MethodPost, "/v1/windows/"+url.PathEscape(id)+"/stop", nil)
}

func (m *member) SetGroup(ctx context.Context, id string, rec windows.GroupRecord) (*windows.Manifest, error) {
	defer m.ph.span("record")()
	if b, err := json.Marshal(rec); err == nil {
		m.recordBytes.Add(int64(len(b)))
	}
	return m.manifest(ctx, http.MethodPut, "/v1/windows/"+url.PathEscape(id)+"/group", rec)
}

func (m *member) manifest(ctx context.Context, method, path string, body any) (*windows.Manifest, error) {
	var w windows.Manifest
	if err := m.do(ctx, method, path, body, &w); err != nil {
		return nil, err
	}
	return &w, nil
}

// do makes one call; an error answer keeps the agent's message (a 404 is
// windows.ErrNotFound, which the coordinator's cleanup asks about).
func (m *member) do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, m.base+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := m.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		err := fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, bytes.TrimSpace(raw))
		if resp.StatusCode == http.StatusNotFound {
			return fmt.Errorf("%w: %w", windows.ErrNotFound, err)
		}
		return err
	}
	return json.Unmarshal(raw, out)
}

// phases times a group start by its calls: each phase runs from its first call's start
// to its last call's end, over all members.
type phases struct {
	mu    sync.Mutex
	first map[string]time.Time
	last  map[string]time.Time
	calls map[string]int
}

func newPhases() *phases {
	return &phases{first: map[string]time.Time{}, last: map[string]time.Time{}, calls: map[string]int{}}
}

// span notes a call of phase name beginning now; the returned func notes its end.
func (p *phases) span(name string) func() {
	begin := time.Now()
	return func() {
		end := time.Now()
		p.mu.Lock()
		defer p.mu.Unlock()
		if f, ok := p.first[name]; !ok || begin.Before(f) {
			p.first[name] = begin
		}
		if end.After(p.last[name]) {
			p.last[name] = end
		}
		p.calls[name]++
	}
}

// took is how long phase name lasted (0 if it never ran).
func (p *phases) took(name string) time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.last[name].Sub(p.first[name])
}

// from is how long from t to phase name's last call's end.
func (p *phases) from(t time.Time, name string) time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.last[name].Sub(t)
}
