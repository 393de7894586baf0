package main

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nsys-agent/nsys-agent/agent"
	"github.com/nsys-agent/nsys-agent/agent/fleet"
	"github.com/nsys-agent/nsys-agent/agent/windows"
)

// groupAgent is one agent of a group test: the shared fake over the real API and real
// HTTP, its clock shifted like another host's, its scheduled windows starting by
// themselves at their start_at.
type groupAgent struct {
	*served
	url   string
	shift time.Duration
	dying *atomic.Bool // set: the agent dies once it accepted a window
	dead  atomic.Bool
}

func newGroupAgent(t *testing.T, shift time.Duration) *groupAgent {
	t.Helper()
	g := &groupAgent{served: newScriptedAgent(t), shift: shift}
	g.AutoStart = true
	g.SetClockShift(shift)
	h := agent.NewHandler(g.Service, agent.APIOptions{Version: "test", Logger: slog.New(slog.DiscardHandler)})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if g.dead.Load() {
			// A host that died: the connection drops without an answer.
			if hj, ok := w.(http.Hijacker); ok {
				if c, _, err := hj.Hijack(); err == nil {
					c.Close()
					return
				}
			}
			panic(http.ErrAbortHandler)
		}
		h.ServeHTTP(w, r)
		if g.dying != nil && g.dying.Load() && r.Method == http.MethodPost && r.URL.Path == "/v1/windows" && len(g.Windows(context.Background())) > 0 {
			g.dead.Store(true)
		}
	}))
	t.Cleanup(srv.Close)
	g.url = srv.URL
	return g
}

// groupOf makes n agents with these clock shifts and returns them with their --agent.
func groupOf(t *testing.T, shifts ...time.Duration) ([]*groupAgent, string) {
	var gs []*groupAgent
	var urls []string
	for _, sh := range shifts {
		g := newGroupAgent(t, sh)
		gs = append(gs, g)
		urls = append(urls, g.url)
	}
	return gs, strings.Join(urls, ",")
}

// window is the fake's window of group id.
func (g *groupAgent) window(t *testing.T, id string) *windows.Manifest {
	t.Helper()
	m, err := g.Window(context.Background(), id)
	if err != nil {
		t.Fatalf("%s: %v", g.url, err)
	}
	return m
}

func TestGroupStartSync(t *testing.T) {
	gs, agents := groupOf(t, -2500*time.Millisecond, 0, 4*time.Second)
	begin := time.Now()
	r := runCLI(t, "start", "--sync", "--duration", "1m", "--name", "decode", "--agent", agents, "-o", "json").must(t, 0)
	var rec windows.GroupRecord
	if err := json.Unmarshal([]byte(r.stdout), &rec); err != nil {
		t.Fatalf("%v\n%s", err, r.stdout)
	}
	if !windows.ValidGroupID(rec.ID) || !strings.HasPrefix(rec.ID, "g-"+begin.UTC().Format("20060102")) || rec.State != "capturing" || len(rec.Members) != 3 {
		t.Fatalf("record: %+v", rec)
	}
	if lead := rec.StartAt.Sub(begin); lead < fleet.DefaultMinLead || lead > 3*time.Second {
		t.Errorf("the start was %s after the command began, want about the 1s lead", lead)
	}
	for i, g := range gs {
		gm, w := rec.Members[i], g.window(t, rec.ID)
		if gm.Agent != g.url || gm.Host != agentDirName(g.url) || gm.Window != w.ID || gm.State != "capturing" {
			t.Errorf("%s: member %+v", g.url, gm)
		}
		// Over real HTTP the offset estimate still holds to its uncertainty.
		if e := gm.OffsetNs - int64(g.shift); e > gm.UncertaintyNs+1000 || -e > gm.UncertaintyNs+1000 {
			t.Errorf("%s: offset %s, true %s, ±%s", g.url, time.Duration(gm.OffsetNs), g.shift, time.Duration(gm.UncertaintyNs))
		}
		// Each agent was told T in its own clock, and fired then.
		if d := w.StartAt.Sub(rec.StartAt.Add(g.shift)); d.Abs() > time.Duration(gm.UncertaintyNs)+time.Microsecond {
			t.Errorf("%s: start_at %s is %s from T in its clock", g.url, w.StartAt, d)
		}
		if gm.FiredAt == nil || gm.FiredAt.Sub(rec.StartAt) < -time.Millisecond || gm.FiredAt.Sub(rec.StartAt) > 200*time.Millisecond {
			t.Errorf("%s: fired %v, T %s (the coordinator's clock)", g.url, gm.FiredAt, rec.StartAt)
		}
		if w.GroupInfo == nil || w.GroupInfo.ID != rec.ID || len(w.GroupInfo.Members) != 3 || w.Name != "decode" {
			t.Errorf("%s: the window lacks the record: %+v", g.url, w)
		}
	}
	if rec.SkewNs <= 0 || rec.SkewNs > int64(200*time.Millisecond) {
		t.Errorf("skew %s", time.Duration(rec.SkewNs))
	}

	// The table names the group, each member with its offset, and the skew.
	for _, g := range gs {
		runCLI(t, "stop", rec.ID, "--agent", g.url, "--no-wait").must(t, 0)
	}
	r = runCLI(t, "start", "--sync", "--group", "g-table", "--agent", agents).must(t, 0)
	for _, want := range []string{"GROUP", "g-table", "START AT", "CLOCK OFFSET", "-2.5|-2.49", "+4|+3.99", "±", "capturing", "SKEW", "between the captures' starts", gs[2].url} {
		if !containsOneOf(r.stdout, want) {
			t.Errorf("table lacks %q:\n%s", want, r.stdout)
		}
	}
}

func TestGroupStartAt(t *testing.T) {
	gs, agents := groupOf(t, time.Second, -time.Second)
	at := time.Now().Add(1500 * time.Millisecond).UTC().Truncate(time.Millisecond)
	r := runCLI(t, "start", "--at", at.Format(time.RFC3339Nano), "--group", "g-at", "--agent", agents, "-o", "json").must(t, 0)
	var rec windows.GroupRecord
	if err := json.Unmarshal([]byte(r.stdout), &rec); err != nil || rec.ID != "g-at" || !rec.StartAt.Equal(at) {
		t.Fatalf("%v: %+v", err, rec)
	}
	for _, g := range gs {
		if w := g.window(t, "g-at"); w.State != windows.StateCapturing {
			t.Errorf("%s: %s", g.url, w.State)
		}
	}
}

// A group start that fails leaves no agent capturing and says which agent failed and why.
func TestGroupStartFailure(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, bad *groupAgent)
		want  []string
	}{
		{"refuses", func(t *testing.T, bad *groupAgent) {
			if _, err := bad.CreateWindow(context.Background(), windows.CreateRequest{}, windows.Local(windows.TriggerAPI)); err != nil {
				t.Fatal(err)
			}
		}, []string{"scheduling its window failed", "window w1 is already capturing"}},
		{"fails at its start", func(t *testing.T, bad *groupAgent) {
			bad.FailAtStart = "CUPTI_ERROR_MULTIPLE_SUBSCRIBERS_NOT_SUPPORTED"
		},
			[]string{"its capture did not start", "CUPTI_ERROR_MULTIPLE_SUBSCRIBERS_NOT_SUPPORTED"}},
		{"dies after accepting", func(t *testing.T, bad *groupAgent) {
			bad.dying = new(atomic.Bool)
			bad.dying.Store(true)
		}, []string{"the agent stopped answering", "NOT stopped", "once they answer, run `nsys-agent stop g-"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			gs, agents := groupOf(t, 3*time.Second, -time.Second, 0)
			bad := gs[1]
			tc.setup(t, bad)
			r := runCLI(t, "start", "--sync", "--duration", "1m", "--agent", agents, "-o", "json").must(t, 1)
			for _, want := range append(tc.want, "group g-", "failed", bad.url) {
				if !strings.Contains(r.stderr, want) {
					t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
				}
			}
			var rec windows.GroupRecord
			if err := json.Unmarshal([]byte(r.stdout), &rec); err != nil || rec.State != "failed" || rec.Members[1].Error == "" {
				t.Errorf("-o json prints the failed record: %v\n%s", err, r.stdout)
			}
			for _, g := range []*groupAgent{gs[0], gs[2]} {
				// Past any timer that could still fire.
				time.Sleep(50 * time.Millisecond)
				for _, w := range g.Windows(context.Background()) {
					if w.State == windows.StateCapturing || w.State == windows.StateRequested {
						t.Errorf("%s: window %s left %s by a failed group", g.url, w.ID, w.State)
					}
					if w.Group == rec.ID && (w.GroupInfo == nil || w.GroupInfo.State != "failed") {
						t.Errorf("%s: the failed record is not stored: %+v", g.url, w.GroupInfo)
					}
				}
			}
		})
	}
}

func TestGroupStartUsage(t *testing.T) {
	gs, agents := groupOf(t, 0, 0)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--sync", "--at", "5s", "--agent", agents}, "--sync and --at: give one"},
		{[]string{"--group", "g-x", "--agent", agents}, "--group names a group window"},
		{[]string{"--sync", "--group", "g-x", "--agent", gs[0].url}, "--group names a group window"},
		{[]string{"--sync", "--group", "nightly", "--agent", agents}, `--group "nightly"`},
		{[]string{"--sync", "--start-timeout", "0s", "--agent", agents}, "--start-timeout"},
		{[]string{"--sync", "--agent", agents + "," + gs[0].url + "/"}, ""}, // the same agent twice counts once
	} {
		r := runCLI(t, append([]string{"start"}, tc.args...)...)
		if tc.want == "" {
			r.must(t, 0)
			runCLI(t, "stop", "active", "--agent", agents, "--no-wait").must(t, 0)
			continue
		}
		r.must(t, 2)
		if !strings.Contains(r.stderr, tc.want) {
			t.Errorf("%q: stderr lacks %q:\n%s", tc.args, tc.want, r.stderr)
		}
	}
	// One agent with --sync is today's start: at once, no group.
	r := runCLI(t, "start", "--sync", "--agent", gs[0].url).must(t, 0)
	if strings.Contains(r.stdout, "GROUP") || gs[0].window(t, "w2").Group != "" {
		t.Errorf("one agent made a group:\n%s", r.stdout)
	}
}

// start --sync --wait follows every member to its end; a failed member exits 1.
func TestGroupStartWait(t *testing.T) {
	gs, agents := groupOf(t, time.Second, 0)
	for i, g := range gs {
		end := stepReady
		if i == 1 {
			end = windows.Manifest{State: windows.StateFailed, Error: "nsys stop hung"}
		}
		g.whenCapturing(t, end)
	}
	r := runCLI(t, "start", "--sync", "--duration", "1s", "--wait", "--agent", agents, "-o", "json").must(t, 1)
	var rec windows.GroupRecord
	if err := json.Unmarshal([]byte(r.stdout), &rec); err != nil || rec.Members[0].State != "ready" || rec.Members[1].State != "failed" {
		t.Errorf("%v\n%s", err, r.stdout)
	}
	if !strings.Contains(r.stderr, "1 of 2 windows did not end ready") || !strings.Contains(r.stderr, gs[1].url+": window w1 failed: nsys stop hung") {
		t.Errorf("stderr:\n%s", r.stderr)
	}
}

// whenCapturing moves the fake's first window to finalizing and then end once it
// captures and a client listens, as its duration running out would.
func (g *groupAgent) whenCapturing(t *testing.T, end windows.Manifest) {
	before := g.Subscriptions()
	done := make(chan struct{})
	t.Cleanup(func() { <-done })
	go func() {
		defer close(done)
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Errorf("%s: no capture with a client listening within 10s", g.url)
				return
			}
			ws := g.Windows(context.Background())
			if len(ws) > 0 && ws[0].State == windows.StateCapturing && g.Subscriptions() > before {
				break
			}
		}
		g.Change(t, "w1", windows.Manifest{State: windows.StateFinalizing})
		g.Change(t, "w1", end)
	}()
}

// The group id works wherever a window goes: windows, show, stop, pull.
func TestGroupWindowsShowStopPull(t *testing.T) {
	gs, agents := groupOf(t, -2*time.Second, 3*time.Second)
	r := runCLI(t, "start", "--sync", "--group", "g-run-1", "--agent", agents).must(t, 0)

	r = runCLI(t, "windows", "--agent", gs[0].url).must(t, 0)
	if !strings.Contains(r.stdout, "GROUP") || !strings.Contains(r.stdout, "g-run-1") {
		t.Errorf("windows lacks the GROUP column:\n%s", r.stdout)
	}
	other := newScriptedAgent(t)
	other.AddWindow(t, "w1", nil)
	if r = runCLI(t, "windows", "--agent", other.serve(t)).must(t, 0); strings.Contains(r.stdout, "GROUP") {
		t.Errorf("a GROUP column without groups:\n%s", r.stdout)
	}

	r = runCLI(t, "show", "g-run-1", "--agent", agents).must(t, 0)
	for _, want := range []string{"g-run-1", "capturing (at its start)", "-2s |-2.00|-1.99", "+3s |+3.00|+2.99", "±", "SKEW", gs[0].url, gs[1].url, "FILES"} {
		if !containsOneOf(r.stdout, want) {
			t.Errorf("show lacks %q:\n%s", want, r.stdout)
		}
	}
	r = runCLI(t, "show", "g-run-1", "--agent", gs[0].url, "-o", "json").must(t, 0)
	var view groupView
	if err := json.Unmarshal([]byte(r.stdout), &view); err != nil || view.Record == nil || len(view.Record.Members) != 2 || len(view.Members) != 1 || view.Members[0].Window == nil {
		t.Errorf("show -o json: %v\n%s", err, r.stdout)
	}
	if !strings.Contains(r.stderr, "has 1 more members than --agent gives: "+gs[1].url) || !strings.Contains(r.stderr, "nsys-agent show g-run-1 --agent "+agents) {
		t.Errorf("show of one member should name the other:\n%s", r.stderr)
	}

	for i, g := range gs {
		g.Finalize = []windows.Manifest{stepReady}
		g.AddArtifacts(t, "w1", map[string]string{"report.nsys-rep": "report of host " + string(rune('A'+i)), "rank0-trace.json.gz": "trace " + string(rune('A'+i))})
	}
	r = runCLI(t, "stop", "g-run-1", "--agent", agents).must(t, 0)
	if strings.Count(r.stdout, " ok ") != 2 || strings.Count(r.stdout, "ready") != 2 {
		t.Errorf("stop of the group:\n%s", r.stdout)
	}
	for _, g := range gs {
		if w := g.window(t, "g-run-1"); w.State != windows.StateFinalizing || w.StoppedAt == nil {
			t.Errorf("%s: %s after stop", g.url, w.State)
		}
		g.Change(t, "w1", stepReady) // the fake's finalize ends as its events said
	}

	dir := filepath.Join(t.TempDir(), "run1")
	r = runCLI(t, "pull", "g-run-1", "--dir", dir, "--agent", agents).must(t, 0)
	if !strings.Contains(r.stdout, "group g-run-1: 2 of 2 hosts, 4 files") {
		t.Errorf("pull:\n%s", r.stdout)
	}
	for i, g := range gs {
		host := filepath.Join(dir, agentDirName(g.url))
		checkFile(t, filepath.Join(host, "report.nsys-rep"), "report of host "+string(rune('A'+i)))
		checkFile(t, filepath.Join(host, "rank0-trace.json.gz"), "trace "+string(rune('A'+i)))
		var m windows.Manifest
		if b, err := os.ReadFile(filepath.Join(host, "manifest.json")); err != nil || json.Unmarshal(b, &m) != nil || m.Group != "g-run-1" {
			t.Errorf("%s: manifest.json: %v %s", host, err, m.Group)
		}
		if _, err := os.Stat(filepath.Join(host, "w1")); err == nil {
			t.Errorf("%s: a window folder in a group pull", host)
		}
	}
	var rec windows.GroupRecord
	if b, err := os.ReadFile(filepath.Join(dir, "group.json")); err != nil || json.Unmarshal(b, &rec) != nil {
		t.Fatalf("group.json: %v", err)
	}
	if rec.ID != "g-run-1" || len(rec.Members) != 2 || rec.State != "capturing" {
		t.Errorf("group.json: %+v", rec)
	}
	for i, g := range gs {
		if m := rec.Members[i]; m.Host != agentDirName(g.url) || m.RTTNs <= 0 || m.StartedAt == nil {
			t.Errorf("group.json member %+v", m)
		}
	}
	// Again: everything is up to date.
	r = runCLI(t, "pull", "g-run-1", "--dir", dir, "--agent", agents, "-o", "json").must(t, 0)
	var res groupPullResult
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil || res.GroupFile != filepath.Join(dir, "group.json") || len(res.Agents) != 2 || !strings.Contains(r.stdout, `"up-to-date"`) {
		t.Errorf("pull -o json: %v\n%s", err, r.stdout)
	}

	// Another group's record in the folder is the user's: kept unless --force.
	rec.ID = "g-other"
	b, _ := json.Marshal(rec)
	if err := os.WriteFile(filepath.Join(dir, "group.json"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	r = runCLI(t, "pull", "g-run-1", "--dir", dir, "--agent", agents).must(t, 1)
	if !strings.Contains(r.stderr, "not group g-run-1's record, kept") {
		t.Errorf("stderr:\n%s", r.stderr)
	}
	runCLI(t, "pull", "g-run-1", "--dir", dir, "--agent", agents, "--force").must(t, 0)

	// An agent that is down: named, exit 1, the other's files kept.
	dir2 := filepath.Join(t.TempDir(), "run2")
	gs[1].dead.Store(true)
	r = runCLI(t, "pull", "g-run-1", "--dir", dir2, "--agent", agents).must(t, 1)
	if !strings.Contains(r.stderr, "1 of 2 agents failed: "+gs[1].url) || !strings.Contains(r.stderr, "the others' files are in "+dir2) {
		t.Errorf("stderr:\n%s", r.stderr)
	}
	checkFile(t, filepath.Join(dir2, agentDirName(gs[0].url), "report.nsys-rep"), "report of host A")
	if b, err := os.ReadFile(filepath.Join(dir2, "group.json")); err != nil || !strings.Contains(string(b), gs[1].url) {
		t.Errorf("group.json from the agent that answered should list every member: %v", err)
	}
}

// Members that disagree on the record: the newest wins.
func TestNewestRecord(t *testing.T) {
	t0 := time.Date(2025, 1, 2, 15, 4, 5, 0, time.UTC)
	later := t0.Add(time.Second)
	old := &windows.GroupRecord{ID: "g-a", StartAt: t0, State: "failed"}
	newer := &windows.GroupRecord{ID: "g-a", StartAt: t0, State: "capturing", Members: []windows.GroupMember{{Agent: "x", StartedAt: &later}}}
	for _, tc := range []struct {
		outs []outcome
		want string
	}{
		{[]outcome{{value: &windows.Manifest{GroupInfo: old}}, {value: &windows.Manifest{GroupInfo: newer}}}, "capturing"},
		{[]outcome{{value: &windows.Manifest{GroupInfo: newer}}, {value: &windows.Manifest{GroupInfo: old}}}, "capturing"},
		{[]outcome{{value: &windows.Manifest{}}, {value: &windows.Manifest{GroupInfo: old}}}, "failed"},
		{[]outcome{{value: &windows.Manifest{}}, {err: os.ErrClosed}}, ""},
	} {
		got := newestRecord(tc.outs)
		if (got == nil) != (tc.want == "") || got != nil && got.State != tc.want {
			t.Errorf("newest of %d: %+v, want %q", len(tc.outs), got, tc.want)
		}
	}
}

// containsOneOf reports whether s contains one of the '|'-separated alternatives.
func containsOneOf(s, alternatives string) bool {
	for _, a := range strings.Split(alternatives, "|") {
		if strings.Contains(s, a) {
			return true
		}
	}
	return false
}

// Four members: the first three keep the whole record, the fourth its own entry. Asked
// alone, the fourth shows what it holds and names the keepers; pulled alone, group.json
// has its own entry with its measured offset, which is what aligning its files needs.
func TestGroupRecordKeepers(t *testing.T) {
	gs, agents := groupOf(t, 0, time.Second, 2*time.Second, -3*time.Second)
	runCLI(t, "start", "--sync", "--group", "g-keep", "--agent", agents).must(t, 0)
	for i, g := range gs {
		rec := g.window(t, "g-keep").GroupInfo
		want := 4
		if i == 3 {
			want = 1
		}
		if rec == nil || len(rec.Members) != want || rec.MemberCount != 4 || len(rec.Keepers) != 3 || rec.Keepers[2] != gs[2].url {
			t.Fatalf("%s holds %+v", g.url, rec)
		}
	}
	fourth := gs[3].url
	r := runCLI(t, "show", "g-keep", "--agent", fourth).must(t, 0)
	if !strings.Contains(r.stdout, "MEMBERS   4, 1 of them below (the agents given); the whole record is kept by "+gs[0].url) ||
		!containsOneOf(r.stdout, "-3s |-3.00|-2.99") {
		t.Errorf("show of a member that is no keeper:\n%s", r.stdout)
	}
	if !strings.Contains(r.stderr, "group g-keep has 4 members; the 1 given hold only their own entries") ||
		!strings.Contains(r.stderr, "nsys-agent show g-keep --agent "+fourth+","+gs[0].url) {
		t.Errorf("it should name the keepers and the command that shows every member:\n%s", r.stderr)
	}
	r = runCLI(t, "show", "g-keep", "--agent", fourth+","+gs[1].url).must(t, 0)
	if strings.Contains(r.stdout, "MEMBERS") || strings.Count(r.stdout, "http://") < 4 {
		t.Errorf("with a keeper given, every member is shown:\n%s", r.stdout)
	}
	if !strings.Contains(r.stderr, "2 more members than --agent gives") {
		t.Errorf("the members not given are named:\n%s", r.stderr)
	}

	for _, g := range gs {
		g.Finalize = []windows.Manifest{{State: windows.StateReady}}
	}
	runCLI(t, "stop", "g-keep", "--agent", agents).must(t, 0)
	for _, g := range gs {
		g.Change(t, "w1", windows.Manifest{State: windows.StateReady})
	}
	dir := filepath.Join(t.TempDir(), "pulled")
	runCLI(t, "pull", "g-keep", "--dir", dir, "--agent", fourth).must(t, 0)
	var rec windows.GroupRecord
	if b, err := os.ReadFile(filepath.Join(dir, "group.json")); err != nil || json.Unmarshal(b, &rec) != nil {
		t.Fatalf("group.json: %v", err)
	}
	if len(rec.Members) != 1 || rec.Members[0].Agent != fourth || rec.Members[0].RTTNs <= 0 || rec.MemberCount != 4 ||
		rec.Members[0].Host != agentDirName(fourth) || time.Duration(rec.Members[0].OffsetNs).Round(100*time.Millisecond) != -3*time.Second {
		t.Errorf("group.json of the fourth alone: %+v", rec)
	}
}

// The record as pulled from members that are no keepers: their own entries together.
func TestNewestRecordPartial(t *testing.T) {
	t0 := time.Date(2025, 1, 2, 15, 4, 5, 0, time.UTC)
	part := func(agent string) *windows.Manifest {
		return &windows.Manifest{GroupInfo: &windows.GroupRecord{ID: "g-a", StartAt: t0, State: "capturing", MemberCount: 5,
			Keepers: []string{"k1", "k2", "k3"}, Members: []windows.GroupMember{{Agent: agent, RTTNs: 1}}}}
	}
	got := newestRecord([]outcome{{value: part("m4")}, {err: os.ErrClosed}, {value: part("m5")}, {value: part("m4")}})
	if got == nil || got.Whole() || len(got.Members) != 2 || got.Members[0].Agent != "m4" || got.Members[1].Agent != "m5" || len(got.Keepers) != 3 {
		t.Errorf("partial copies together: %+v", got)
	}
	whole := &windows.Manifest{GroupInfo: &windows.GroupRecord{ID: "g-a", StartAt: t0, MemberCount: 2, Members: []windows.GroupMember{{Agent: "k1"}, {Agent: "m4"}}}}
	if got := newestRecord([]outcome{{value: part("m4")}, {value: whole}}); got == nil || !got.Whole() || len(got.Members) != 2 || got.Members[0].Agent != "k1" {
		t.Errorf("a keeper's whole record wins: %+v", got)
	}
}

// --min-members 2 of 3: the member whose capture fails is left out, named in a warning
// and in the record; the two others capture on and the command exits 0. --wait follows
// only the members that started.
func TestGroupStartMinMembers(t *testing.T) {
	gs, agents := groupOf(t, 3*time.Second, -time.Second, 0)
	bad := gs[1]
	bad.FailAtStart = "CUPTI_ERROR_MULTIPLE_SUBSCRIBERS_NOT_SUPPORTED"
	r := runCLI(t, "start", "--sync", "--min-members", "2", "--group", "g-quorum", "--duration", "1m", "--agent", agents).must(t, 0)
	if !strings.Contains(r.stderr, "warning: group g-quorum started with 2 of 3 agents (--min-members 2); left out: "+bad.url) ||
		!strings.Contains(r.stderr, "CUPTI_ERROR_MULTIPLE_SUBSCRIBERS_NOT_SUPPORTED") {
		t.Errorf("the left-out agent should be named with why:\n%s", r.stderr)
	}
	if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(bad.url) + `\s.*failed`).MatchString(r.stdout) {
		t.Errorf("the record should show it failed:\n%s", r.stdout)
	}
	for _, g := range []*groupAgent{gs[0], gs[2]} {
		if w := g.window(t, "g-quorum"); w.State != windows.StateCapturing || w.GroupInfo == nil || w.GroupInfo.State != "capturing" {
			t.Errorf("%s: %s, record %+v", g.url, w.State, w.GroupInfo)
		}
	}
	if w := bad.window(t, "g-quorum"); w.State != windows.StateFailed {
		t.Errorf("the left-out window is %s", w.State)
	}
	// stop and pull of the group: the left-out member is no failure, it is said.
	for i, g := range gs {
		if i != 1 {
			g.Finalize = []windows.Manifest{stepReady}
			g.AddArtifacts(t, "w1", map[string]string{"report.nsys-rep": "report " + g.url})
		}
	}
	r = runCLI(t, "stop", "g-quorum", "--agent", agents).must(t, 0)
	for i, g := range gs {
		if i != 1 {
			g.Change(t, "w1", stepReady) // the fake's finalize ends as its events said
		}
	}
	if !regexp.MustCompile(regexp.QuoteMeta(bad.url) + `\s+ok\s+-\s+left out\s+left out at the group's start: .*CUPTI_ERROR_MULTIPLE`).MatchString(r.stdout) {
		t.Errorf("stop of a group with a member left out:\n%s\n%s", r.stdout, r.stderr)
	}
	dir := filepath.Join(t.TempDir(), "pulled")
	r = runCLI(t, "pull", "g-quorum", "--agent", agents, "--dir", dir).must(t, 0)
	if !strings.Contains(r.stdout, "left out at the group's start") || !strings.Contains(r.stdout, "group g-quorum: 2 of 3 hosts") {
		t.Errorf("pull of a group with a member left out:\n%s\n%s", r.stdout, r.stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, agentDirName(bad.url))); err == nil {
		t.Error("a folder for the member left out")
	}
	r = runCLI(t, "wait", "g-quorum", "--agent", bad.url).must(t, 0)
	if !strings.Contains(r.stdout, bad.url+": left out at the group's start: ") {
		t.Errorf("wait on the member left out alone:\n%s\n%s", r.stdout, r.stderr)
	}

	// --wait follows the members that started to their reports and exits 0: the one
	// left out is no failure of the wait.
	gs, agents = groupOf(t, 0, time.Second, 0)
	gs[2].FailAtStart = "no GPU"
	gs[0].whenCapturing(t, stepReady)
	gs[1].whenCapturing(t, stepReady)
	r = runCLI(t, "start", "--sync", "--min-members", "2", "--duration", "1s", "--wait", "--agent", agents, "-o", "json").must(t, 0)
	var rec windows.GroupRecord
	if err := json.Unmarshal([]byte(r.stdout), &rec); err != nil || rec.Members[0].State != "ready" || rec.Members[1].State != "ready" || rec.Members[2].Error == "" {
		t.Errorf("--wait with a member left out: %v\n%s", err, r.stdout)
	}

	// Two failures where one may be left out: the group fails as a whole.
	gs, agents = groupOf(t, 0, 0, 0)
	gs[0].FailAtStart, gs[2].FailAtStart = "no GPU", "no GPU"
	r = runCLI(t, "start", "--sync", "--min-members", "2", "--duration", "1m", "--agent", agents).must(t, 1)
	if !strings.Contains(r.stderr, "failed: 2 of 3 agents") {
		t.Errorf("stderr:\n%s", r.stderr)
	}
	if w := gs[1].Windows(context.Background()); len(w) != 1 || w[0].State == windows.StateCapturing {
		t.Errorf("the member that started is left %+v", w)
	}

	for _, bad := range [][]string{{"--min-members", "4"}, {"--min-members", "0"}} {
		r = runCLI(t, append([]string{"start", "--sync", "--agent", agents}, bad...)...).must(t, exitUsage)
		if !strings.Contains(r.stderr, "--min-members") {
			t.Errorf("%v: %s", bad, r.stderr)
		}
	}
}
