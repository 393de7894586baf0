package main

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nsys-agent/nsys-agent/agent"
	"github.com/nsys-agent/nsys-agent/agent/windows"
)

// streamCounter counts, as each event stream opens, the windows being followed at that
// moment: that one, and every other agent's that has had a stream and has not ended.
// (Counting open connections instead overcounts: the agent sees a stream close a few
// milliseconds after the client closed it and opened the next.)
type streamCounter struct {
	gs  []*groupAgent
	max atomic.Int64
}

func (c *streamCounter) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/events" {
			n := int64(1)
			for _, g := range c.gs {
				if ws := g.Windows(r.Context()); g.Subscriptions() > 0 && len(ws) > 0 && !ws[0].State.Terminal() {
					n++
				}
			}
			for m := c.max.Load(); n > m && !c.max.CompareAndSwap(m, n); m = c.max.Load() {
			}
		}
		h.ServeHTTP(w, r)
	})
}

// start --wait follows a group's windows through at most groupFanOut event streams at
// once (it once opened one per agent, all at once: 1 000 streams for 1 000 agents); the
// agents past the bound are followed as streams free up, and every window's end is seen.
func TestGroupWaitIsBounded(t *testing.T) {
	defer func(old int) { groupFanOut = old }(groupFanOut)
	groupFanOut = 2
	streams := &streamCounter{}
	var urls []string
	for range 5 {
		g := &groupAgent{served: newScriptedAgent(t)}
		g.AutoStart = true
		streams.gs = append(streams.gs, g)
		h := agent.NewHandler(g.Service, agent.APIOptions{Version: "test", Logger: slog.New(slog.DiscardHandler)})
		srv := httptest.NewServer(streams.wrap(h))
		t.Cleanup(srv.Close)
		g.url = srv.URL
		urls = append(urls, srv.URL)
		// Its window ends once a client follows it, as a duration ending would.
		g.whenCapturing(t, stepReady)
	}
	r := runCLI(t, "start", "--sync", "--duration", "1s", "--wait", "--agent", strings.Join(urls, ","), "-o", "json").must(t, 0)
	var rec windows.GroupRecord
	if err := json.Unmarshal([]byte(r.stdout), &rec); err != nil {
		t.Fatalf("%v\n%s", err, r.stdout)
	}
	for i, m := range rec.Members {
		if m.State != string(windows.StateReady) {
			t.Errorf("member %d: %s, want ready", i, m.State)
		}
	}
	if n := streams.max.Load(); n > 2 || n < 1 {
		t.Errorf("%d windows followed at once, want at most groupFanOut = 2", n)
	}
}

// boundedFanOut keeps --agent order and never runs more than limit calls at once.
func TestGroupBoundedFanOut(t *testing.T) {
	s := &clientSetup{}
	for _, u := range []string{"http://a:1", "http://b:1", "http://c:1", "http://d:1", "http://e:1", "http://f:1", "http://g:1"} {
		s.agents = append(s.agents, &apiClient{base: u})
	}
	for _, limit := range []int{1, 3, 64} {
		var now, most atomic.Int64
		outs := boundedFanOut(context.Background(), s, limit, func(ctx context.Context, c *apiClient) (any, error) {
			n := now.Add(1)
			defer now.Add(-1)
			for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
			}
			time.Sleep(5 * time.Millisecond)
			return c.base, nil
		})
		for i, o := range outs {
			if o.agent != s.agents[i].base || o.value != s.agents[i].base || o.err != nil {
				t.Errorf("limit %d: outcome %d: %+v", limit, i, o)
			}
		}
		if m := most.Load(); m > int64(limit) {
			t.Errorf("limit %d: %d at once", limit, m)
		}
	}
	// A cancelled context ends the calls still waiting for their turn.
	ctx, cancel := context.WithCancel(context.Background())
	release := make(chan struct{})
	go func() { time.Sleep(20 * time.Millisecond); cancel(); close(release) }()
	outs := boundedFanOut(ctx, s, 1, func(ctx context.Context, c *apiClient) (any, error) {
		<-release
		return c.base, nil
	})
	cancelled := 0
	for _, o := range outs {
		if o.err != nil {
			cancelled++
		}
	}
	if cancelled != len(s.agents)-1 {
		t.Errorf("%d calls cancelled while waiting their turn, want %d", cancelled, len(s.agents)-1)
	}
}

// stop GROUP sends every stop before it waits for any window's end, and then follows at
// most groupFanOut windows at once: with one fan-out doing both, agent 3's capture would
// go on until agent 1's report was written.
func TestGroupStopIsBounded(t *testing.T) {
	defer func(old int) { groupFanOut = old }(groupFanOut)
	groupFanOut = 2
	streams := &streamCounter{}
	var stops atomic.Int64
	var stoppedBeforeAnEnd atomic.Int64 // stops seen when the first window ended
	stoppedBeforeAnEnd.Store(-1)
	var urls []string
	for range 5 {
		g := &groupAgent{served: newScriptedAgent(t)}
		streams.gs = append(streams.gs, g)
		if _, err := g.CreateWindow(context.Background(), windows.CreateRequest{Group: "g-stop"}, windows.Local(windows.TriggerAPI)); err != nil {
			t.Fatal(err)
		}
		h := agent.NewHandler(g.Service, agent.APIOptions{Version: "test", Logger: slog.New(slog.DiscardHandler)})
		srv := httptest.NewServer(streams.wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/stop") {
				stops.Add(1)
			}
			h.ServeHTTP(w, r)
		})))
		t.Cleanup(srv.Close)
		urls = append(urls, srv.URL)
		// Its report is written once a client follows its finalizing.
		done := make(chan struct{})
		t.Cleanup(func() { <-done })
		go func() {
			defer close(done)
			for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(2 * time.Millisecond) {
				if ws := g.Windows(context.Background()); ws[0].State == windows.StateFinalizing && g.Subscriptions() > 0 {
					stoppedBeforeAnEnd.CompareAndSwap(-1, stops.Load())
					g.Change(t, "w1", stepReady)
					return
				}
			}
			t.Errorf("%s: never stopped and followed", g.url)
		}()
	}
	r := runCLI(t, "stop", "g-stop", "--agent", strings.Join(urls, ","), "-o", "json").must(t, 0)
	if strings.Count(r.stdout, `"state": "ready"`) != 5 {
		t.Errorf("want 5 windows ready:\n%s", r.stdout)
	}
	if n := stoppedBeforeAnEnd.Load(); n != 5 {
		t.Errorf("%d of 5 stops had been sent when the first window ended, want all", n)
	}
	if n := streams.max.Load(); n > 2 || n < 1 {
		t.Errorf("%d windows followed at once, want at most groupFanOut = 2", n)
	}
}
