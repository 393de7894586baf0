package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"

	"github.com/nsys-agent/nsys-agent/agent"
	"github.com/nsys-agent/nsys-agent/nsys/doctor"
)

// agentCheck is what the doctor learned from one agent's /v1/status.
type agentCheck struct {
	URL    string
	Status *agent.Status // nil: it did not answer
	Err    error
	// Explicit: the user named this agent (--agent / NSYS_AGENT_ADDR); an unreachable
	// one is then a failure, while nothing at the default address is just "none running".
	Explicit bool
}

func checkAgents(ctx context.Context, s *clientSetup, explicit bool) []agentCheck {
	out := make([]agentCheck, len(s.agents))
	for i, ac := range s.agents {
		out[i] = agentCheck{URL: ac.base, Explicit: explicit}
		var st agent.Status
		if err := ac.call(ctx, http.MethodGet, "/v1/status", nil, &st); err != nil {
			out[i].Err = err
			continue
		}
		out[i].Status = &st
	}
	return out
}

// agentResults turns each agent's answer into a check: its target must be running for a
// window to start.
func agentResults(agents []agentCheck) []doctor.Result {
	var out []doctor.Result
	for _, a := range agents {
		r := doctor.Result{Check: "agent", Status: doctor.OK}
		switch {
		case a.Status == nil && !a.Explicit && unreachable(a.Err):
			r.Finding = "no agent answers at " + a.URL + " (none running yet: start one with nsys-agent run)"
		case a.Status == nil:
			r.Status, r.Finding = doctor.Fail, "agent at "+a.URL+": "+a.Err.Error()
			r.Fix = "start it with nsys-agent run, or give --agent the address it listens on (and --token if it needs one)"
		default:
			r = statusResult(a.URL, a.Status)
		}
		out = append(out, r)
	}
	return out
}

// unreachable: nothing answered at all (no HTTP status), as opposed to an agent that
// refused the request.
func unreachable(err error) bool {
	var ce *clientError
	return errors.As(err, &ce) && ce.Status == 0
}

func statusResult(url string, st *agent.Status) doctor.Result {
	r := doctor.Result{Check: "agent", Status: doctor.OK}
	target := st.Target.State
	switch {
	case st.Target.PID != 0 && len(st.Target.Ranks) > 0:
		target += fmt.Sprintf(" (pid %d, %d processes)", st.Target.PID, len(st.Target.Ranks))
	case st.Target.PID != 0:
		target += fmt.Sprintf(" (pid %d)", st.Target.PID)
	}
	window := "no window capturing"
	if st.Active != nil {
		window = fmt.Sprintf("window %s %s", st.Active.ID, st.Active.State)
	}
	r.Finding = fmt.Sprintf("agent %s at %s: target %s, nsys session %s %s, %s, %d windows",
		st.Agent, url, target, st.Session.Name, dashIfEmpty(st.Session.State), window, st.Windows)
	if st.Target.State == "exited" {
		r.Status = doctor.Fail
		code := "unknown code"
		if st.Target.ExitCode != nil {
			code = fmt.Sprintf("code %d", *st.Target.ExitCode)
		}
		r.Finding = fmt.Sprintf("agent %s at %s: its target exited (%s), so no window can start", st.Agent, url, code)
		if n := len(st.Target.LogTail); n > 0 {
			r.Finding += "; last line: " + st.Target.LogTail[n-1]
		}
		r.Fix = "see the target's log (nsys-agent status), fix its command, and start the agent again"
	}
	return r
}

func dashIfEmpty(s string) string {
	if s == "" {
		return "(state unknown)"
	}
	return s
}

// explainPort: a listen port held by an agent that answered is that agent, not a
// stranger; it only stops a second agent on this host.
func explainPort(results []doctor.Result, listen string, agents []agentCheck) []doctor.Result {
	_, port, err := net.SplitHostPort(listen)
	if err != nil {
		return results
	}
	for i, r := range results {
		if r.Check != "port" || r.Status != doctor.Fail || !strings.Contains(r.Finding, "in use") {
			continue
		}
		for _, a := range agents {
			u, err := url.Parse(a.URL)
			if a.Status == nil || err != nil || u.Port() != port || !isLocal(u.Hostname()) {
				continue
			}
			results[i] = doctor.Result{Check: "port", Status: doctor.OK,
				Finding: listen + " is held by the agent at " + a.URL + " (a second agent on this host needs another --listen)"}
		}
	}
	return results
}

// isLocal: the host is this machine's loopback (the doctor checks this host's port).
func isLocal(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && (ip.IsLoopback() || ip.IsUnspecified())
}
