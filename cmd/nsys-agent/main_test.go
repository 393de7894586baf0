package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
	"go.uber.org/goleak"

	"github.com/nsys-agent/nsys-agent/nsys"
	"github.com/nsys-agent/nsys-agent/nsys/nsystest"
)

func TestMain(m *testing.M) {
	testscript.Main(leakChecked{m}, map[string]func(){
		"nsys-agent": main,
	})
}

// leakChecked runs the tests, then fails the run if goroutines leaked (goleak).
type leakChecked struct{ m *testing.M }

func (l leakChecked) Run() int {
	code := l.m.Run()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			return 1
		}
	}
	return code
}

// TestScripts runs the user-level scripts in testdata/script: the binary as a user
// types it, against the real nsys.
func TestScripts(t *testing.T) {
	nsysPath := nsystest.Require(t)
	testscript.Run(t, testscript.Params{
		Dir: "testdata/script",
		Setup: func(env *testscript.Env) error {
			env.Setenv("NSYS", nsysPath)
			env.Setenv(nsys.EnvNsys, nsysPath)
			env.Setenv("SESSION", fmt.Sprintf("ts%d", time.Now().UnixNano()%1_000_000_000))
			env.Setenv("LAUNCH_LOCK", nsys.LockPath())
			// issue 15, doctor: the real importer, copied into fake nsys layouts (doctor.txtar).
			env.Setenv("IMPORTER", nsys.LocateImporter(nsysPath))
			// nsys keeps session state under TMPDIR; every command of a session must agree.
			env.Setenv("TMPDIR", os.TempDir())
			env.Defer(func() { cleanupSessions(env.Getenv("SESSION")) })
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"wait-session":    cmdWaitSession,
			"wait-ready":      cmdWaitReady,
			"verify-pulled":   cmdVerifyPulled,
			"rank-activity":   cmdRankActivity,
			"sleep":           cmdSleep,
			"gen-certs":       cmdGenCerts,
			"reports-contain": cmdReportsContain,
			"http-get":        cmdHTTPGet,
			"http-post":       cmdHTTPPost,
			"metrics-server":  cmdMetricsServer, // issue 15, triggers part
			"trigger-fires":   cmdTriggerFires,  // issue 15, triggers part
			"build-plugin":    cmdBuildPlugin,   // issue 14, group windows (group_cmds_test.go)
			"group-window":    cmdGroupWindow,   // issue 14
			"check-group":     cmdCheckGroup,    // issue 14
		},
	})
}

// wait-session NAME STATE [TIMEOUT]: wait until `nsys sessions list` shows NAME in STATE
// (with !, until NAME is gone).
func cmdWaitSession(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) < 1 || (!neg && len(args) < 2) {
		ts.Fatalf("usage: wait-session NAME STATE [TIMEOUT] | ! wait-session NAME")
	}
	timeout := optDuration(ts, args, 2, 60*time.Second)
	r := nsys.NewExecRunner(ts.Getenv("NSYS"))
	deadline := time.Now().Add(timeout)
	var last []nsys.Session
	for time.Now().Before(deadline) {
		list, err := nsys.ListSessions(context.Background(), r)
		ts.Check(err)
		last = list
		s, ok := nsys.Lookup(list, args[0])
		if neg && (!ok || s.State == nsys.StateShutdown) {
			return
		}
		if !neg && ok && string(s.State) == args[1] {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	ts.Fatalf("session %s: wanted %v, sessions are %+v", args[0], args[1:], last)
}

// cleanupSessions ends any session a script left behind, its target included (a failed
// script leaves a killed agent, whose target survives by design).
func cleanupSessions(prefix string) {
	if prefix == "" {
		return
	}
	path, err := nsys.Locate("")
	if err != nil {
		return
	}
	r := nsys.NewExecRunner(path)
	list, err := nsys.ListSessions(context.Background(), r)
	if err != nil {
		return
	}
	for _, s := range list {
		if strings.HasPrefix(s.Name, prefix) {
			(&nsys.Controller{Runner: r, Session: s.Name}).Kill(context.Background())
		}
	}
}

// http-get URL: GET URL; the body goes to stdout (no curl on a bare CI machine).
func cmdHTTPGet(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 1 {
		ts.Fatalf("usage: http-get URL")
	}
	httpCall(ts, neg, http.MethodGet, args[0], "")
}

// http-post URL BODY: POST a JSON body (the API's calls that have no CLI command, e.g.
// POST /v1/triggers); fails unless 2xx (with !, unless not).
func cmdHTTPPost(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 {
		ts.Fatalf("usage: http-post URL BODY")
	}
	httpCall(ts, neg, http.MethodPost, args[0], args[1])
}

func httpCall(ts *testscript.TestScript, neg bool, method, url, body string) {
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	ts.Check(err)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	ts.Check(err)
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	ts.Check(err)
	_, _ = ts.Stdout().Write(out)
	if ok := resp.StatusCode/100 == 2; ok == neg {
		ts.Fatalf("%s %s: %s", method, url, resp.Status)
	}
}
