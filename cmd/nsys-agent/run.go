package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/mattn/go-shellwords"
	"github.com/urfave/cli/v2"

	"github.com/nsys-agent/nsys-agent/agent"
	"github.com/nsys-agent/nsys-agent/nsys"
)

// version is the agent's version string (set with -ldflags "-X main.version=...").
var version = "0.1.0-dev"

func runCommand() *cli.Command {
	return &cli.Command{
		Name:      "run",
		Usage:     "launch a server under nsys and serve the capture API (the agent)",
		ArgsUsage: "[-- SERVER COMMAND...]",
		Description: `Launches the server once under Nsight Systems and serves the HTTP API that opens and
closes capture windows on it. With no server command it runs the built-in demo target
(an SGLang-compatible toy server with rank workers), so you can try everything on any
machine with nsys.

   nsys-agent run -- python -m sglang.launch_server --model-path M --tp 2
   nsys-agent run --cmd "vllm serve M --profiler-config ..." --arm launch
   nsys-agent run --listen 0.0.0.0:7477 --token-file /etc/nsys-agent/token -- ...
   nsys-agent run                       # the demo target

Arming (fixed for the server's life; nsys injects at launch):
   start-later   nsys profile --start-later=true (nsys 2024+; the default where supported)
   launch        nsys launch, then nsys start -o per window (every nsys; default otherwise)
   cuda-profiler nsys profile --capture-range=cudaProfilerApi: the server opens windows itself

If a previous agent on the same --data-dir died, its server (still running under nsys) is
adopted instead of launched again, with the window that was capturing. One agent per
--data-dir.

Security: the API listens on loopback by default. A non-loopback --listen needs a token
(--token, --token-file or NSYS_AGENT_TOKEN) or TLS client certificates (--tls-client-ca).
nsys reports embed the server's whole environment: treat them as secrets.`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "listen", Value: "127.0.0.1:7477", Usage: "address of the HTTP API"},
			&cli.StringFlag{Name: "token", EnvVars: []string{"NSYS_AGENT_TOKEN"}, Usage: "bearer token clients must send"},
			&cli.StringFlag{Name: "token-file", Usage: "file holding the token (first line)"},
			&cli.StringFlag{Name: "tls-cert", Usage: "serve HTTPS with this certificate (PEM)"},
			&cli.StringFlag{Name: "tls-key", Usage: "private key for --tls-cert (PEM)"},
			&cli.StringFlag{Name: "tls-client-ca", Usage: "require client certificates signed by this CA (mTLS)"},
			&cli.StringFlag{Name: "data-dir", Value: "./nsys-agent-data", Usage: "where windows, manifests and target.log are kept"},
			nsysFlag(),
			&cli.StringFlag{Name: "arm", Usage: "start-later, launch or cuda-profiler (default: start-later where nsys supports it, else launch)"},
			&cli.StringFlag{Name: "trace", Usage: "APIs nsys traces, fixed at launch (default cuda,nvtx; the demo adds osrt)"},
			&cli.StringSliceFlag{Name: "nsys-arg", Usage: "extra nsys option for the launch, repeatable (e.g. --nsys-arg=--cuda-memory-usage=true)"},
			&cli.BoolFlag{Name: "sample-cpu", Usage: "turn CPU sampling and context switches on (large reports)"},
			&cli.StringFlag{Name: "server-url", Usage: "the server's own HTTP address, for server-driven backends"},
			&cli.StringFlag{Name: "cmd", Usage: "the server command as one string (parsed like a shell, without operators)"},
			&cli.StringFlag{Name: "session", Usage: "nsys session name (default nsys-agent-<random>)"},
			&cli.IntFlag{Name: "demo-ranks", Value: 2, Usage: "rank workers of the built-in demo target"},
			&cli.DurationFlag{Name: "stop-timeout", Value: 5 * time.Minute, Usage: "how long one nsys stop may take before the window fails"},
			&cli.StringFlag{Name: "ready-file", Usage: "write the API URL here once serving (for scripts)"},
			&cli.StringFlag{Name: "log-level", Value: "info", Usage: "debug, info, warn or error"},
		},
		Action: runAgent,
	}
}

// parseCommand returns the server argv from `--` args or --cmd. --cmd is split like a
// shell would, but shell operators and backticks are refused: nothing here runs a shell.
func parseCommand(args []string, cmdString string) ([]string, error) {
	if cmdString != "" && len(args) > 0 {
		return nil, usagef("give the server command either after -- or with --cmd, not both")
	}
	if cmdString == "" {
		return args, nil
	}
	if strings.ContainsAny(cmdString, "`") || strings.Contains(cmdString, "$(") {
		return nil, usagef("--cmd: backticks and $(...) are not allowed; nsys-agent runs no shell (put a script in a file and run that)")
	}
	p := shellwords.NewParser()
	p.ParseBacktick = false
	p.ParseEnv = false
	words, err := p.Parse(cmdString)
	if err != nil {
		return nil, usagef("--cmd: %v", err)
	}
	if p.Position != -1 {
		return nil, usagef("--cmd: shell operators (;, &&, ||, |, >, <) are not allowed at %q; nsys-agent runs no shell (put a script in a file and run that)", cmdString[p.Position:])
	}
	if len(words) == 0 {
		return nil, usagef("--cmd is empty")
	}
	return words, nil
}

// isLoopback reports whether a listen address only accepts local connections.
func isLoopback(listen string) (bool, error) {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return false, err
	}
	if host == "localhost" {
		return true, nil
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback(), nil
}

func readToken(c *cli.Context) (string, error) {
	tok := c.String("token")
	if f := c.String("token-file"); f != "" {
		if tok != "" {
			return "", usagef("give --token or --token-file, not both")
		}
		raw, err := os.ReadFile(f)
		if err != nil {
			return "", fmt.Errorf("reading --token-file: %w", err)
		}
		tok = strings.TrimSpace(strings.SplitN(string(raw), "\n", 2)[0])
		if tok == "" {
			return "", fmt.Errorf("--token-file %s is empty", f)
		}
	}
	return tok, nil
}

// targetEnv is the agent's environment for the target, minus the agent's own secrets:
// a .nsys-rep embeds the target's whole environment.
func targetEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "NSYS_AGENT_TOKEN=") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, nsys.LaunchEnv()...)
}

func runAgent(c *cli.Context) error {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.String("log-level"))); err != nil {
		return usagef("--log-level: %v", err)
	}
	log := slog.New(slog.NewTextHandler(c.App.ErrWriter, &slog.HandlerOptions{Level: level}))

	command, err := parseCommand(c.Args().Slice(), c.String("cmd"))
	if err != nil {
		return err
	}
	token, err := readToken(c)
	if err != nil {
		return err
	}
	listen := c.String("listen")
	loop, err := isLoopback(listen)
	if err != nil {
		return usagef("--listen %q: %v (use HOST:PORT)", listen, err)
	}
	if !loop && token == "" && c.String("tls-client-ca") == "" {
		return usagef("--listen %s is reachable from other machines: set a token (--token-file, --token or NSYS_AGENT_TOKEN) or --tls-client-ca; refusing to serve without authentication", listen)
	}
	if (c.String("tls-cert") == "") != (c.String("tls-key") == "") || (c.String("tls-client-ca") != "" && c.String("tls-cert") == "") {
		return usagef("--tls-cert and --tls-key go together, and --tls-client-ca needs them")
	}

	nsysPath, err := nsys.Locate(c.String("nsys"))
	if err != nil {
		return err
	}
	ctx, stopSignals := signal.NotifyContext(c.Context, syscall.SIGINT, syscall.SIGTERM)
	defer stopSignals()
	runner := nsys.NewExecRunner(nsysPath)
	info, err := nsys.Probe(ctx, runner)
	if err != nil {
		return err
	}
	mode := nsys.DefaultMode(info.Caps)
	if a := c.String("arm"); a != "" {
		if mode, err = nsys.ParseMode(a); err != nil {
			return usagef("--arm: %v", err)
		}
	}
	store, err := agent.NewStore(c.String("data-dir"))
	if err != nil {
		return err
	}
	unlock, err := store.Lock()
	if err != nil {
		return err
	}
	defer unlock()
	// Listen (and load TLS) before launching: a taken port or a bad certificate must not
	// cost a server start.
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("listening on %s: %w (is another agent running? choose --listen)", listen, err)
	}
	scheme := "http"
	if c.String("tls-cert") != "" {
		cfg, err := tlsConfig(c.String("tls-cert"), c.String("tls-key"), c.String("tls-client-ca"))
		if err != nil {
			ln.Close()
			return err
		}
		ln = tls.NewListener(ln, cfg)
		scheme = "https"
	}
	defer ln.Close()
	session := c.String("session")
	if session == "" {
		session = "nsys-agent-" + agent.NewID(time.Now())[17:]
	}
	if err := nsys.ValidateSessionName(session); err != nil {
		return usagef("--session: %v", err)
	}

	var trace []string
	if t := c.String("trace"); t != "" {
		trace = strings.Split(t, ",")
	}
	demo := len(command) == 0
	serverURL := c.String("server-url")
	demoURLFile := filepath.Join(store.Root, "demo-server.url")
	if demo {
		exe, err := os.Executable()
		if err != nil {
			return err
		}
		_ = os.Remove(demoURLFile)
		command = []string{exe, "demo-server", "--port", "0", "--ranks", strconv.Itoa(c.Int("demo-ranks")), "--ready-file", demoURLFile}
		if trace == nil {
			// The demo's ranks are CPU programs: OS-runtime tracing is what shows them.
			trace = append(append([]string{}, nsys.DefaultTrace...), "osrt")
		}
	}
	ctl := &nsys.Controller{Runner: runner, Info: info, Session: session, Mode: mode,
		SampleCPU: c.Bool("sample-cpu"), StopTimeout: c.Duration("stop-timeout"), MaxStateAge: 3 * time.Second,
		Log: func(f string, a ...any) { log.Debug(fmt.Sprintf(f, a...)) }}
	logPath := filepath.Join(store.Root, "target.log")

	// A target left running by a previous agent (crashed or killed) is adopted, not
	// launched again: its session, its open capture and its output carry on.
	var sup *agent.Supervisor
	adopt := false
	if rec, found := previousTarget(ctx, store, runner, log); found {
		if len(c.Args().Slice()) > 0 || c.String("cmd") != "" {
			if strings.Join(command, " ") != strings.Join(rec.Command, " ") {
				log.Warn("a previous agent's target is still running; adopting it instead of launching the given command (stop it first to launch anew)", "running", strings.Join(rec.Command, " "))
			}
		}
		session, mode, command, serverURL = rec.Session, nsys.Mode(rec.Mode), rec.Command, rec.ServerURL
		ctl.Session, ctl.Mode, ctl.FirstOutput = session, mode, rec.First
		if sup, err = agent.AttachTarget(rec.PID, command, logPath); err != nil {
			return err
		}
		st, _ := ctl.State(ctx)
		adopt = st.Collecting()
		demo = false
		log.Info("attached to the running target of a previous agent", "session", session, "nsys_pid", rec.PID, "state", st)
	} else {
		first := filepath.Join(store.Root, "sessions", session, "first")
		if err := os.MkdirAll(filepath.Dir(first), 0o700); err != nil {
			return err
		}
		ctl.FirstOutput = first
		args, err := nsys.LaunchArgs(info.Caps, nsys.LaunchSpec{Mode: mode, Session: session, Trace: trace, Output: first,
			SampleCPU: c.Bool("sample-cpu"), PassThrough: c.StringSlice("nsys-arg"), Command: command})
		if err != nil {
			return usagef("%v", err)
		}
		if mode == nsys.ModeCudaProfiler {
			log.Warn("cuda-profiler arming: the server opens and closes capture ranges itself (e.g. SGLang /start_profile with CUDA_PROFILER); the API's nsys windows are refused in this mode, and range reports are written next to " + first)
		}
		log.Info("launching target under nsys", "nsys", nsysPath, "version", info.Version, "mode", mode, "session", session, "command", strings.Join(command, " "))
		sup, err = agent.StartTarget(ctx, ctl, args, command, logPath, targetEnv(), 2*time.Minute)
		if err != nil {
			return fmt.Errorf("launching the target: %w (see %s)", err, logPath)
		}
	}
	metrics := agent.NewMetrics(nil)
	mgr, err := agent.NewManager(agent.ManagerOptions{
		Store: store, Backends: agent.Backends{"nsys": &agent.NsysBackend{Ctl: ctl}}, Target: sup, Ctl: ctl,
		Session: agent.SessionStatus{Name: session, Mode: string(mode), Nsys: nsysPath, Version: info.Version},
		Log:     log, Version: version, Adopt: adopt,
		OnChange: func(old agent.WindowState, m agent.Manifest) {
			if m.State.Terminal() && !old.Terminal() && m.StoppedAt != nil && m.FinishedAt != nil {
				metrics.ObserveFinalize(m.Backend, m.State, m.FinishedAt.Sub(*m.StoppedAt))
			}
		},
	})
	if err != nil {
		_ = sup.Stop(30 * time.Second)
		return err
	}
	// A fresh cached session row lets a start skip one `nsys sessions list` (~10 ms of the
	// ~110 ms a start takes); the check after the start always runs.
	go ctl.Watch(ctx, 2*time.Second)
	if demo && serverURL == "" {
		serverURL = waitDemoURL(ctx, demoURLFile, sup)
	}
	if err := store.SaveTarget(&agent.TargetRecord{Session: session, Mode: string(mode), First: ctl.FirstOutput, Command: command,
		Nsys: nsysPath, PID: sup.PID(), ServerURL: serverURL, StartedAt: time.Now().UTC()}); err != nil {
		log.Warn("recording the target for a restarted agent", "err", err)
	}

	var tokens []string
	if token != "" {
		tokens = []string{token}
	}
	handler := agent.NewHandler(mgr, agent.APIOptions{Tokens: tokens, Logger: log, Version: version, Metrics: metrics})
	baseCtx, cancelBase := context.WithCancel(context.Background())
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second, BaseContext: func(net.Listener) context.Context { return baseCtx }}
	url := fmt.Sprintf("%s://%s", scheme, ln.Addr())
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	if f := c.String("ready-file"); f != "" {
		if err := os.WriteFile(f, []byte(url+"\n"), 0o600); err != nil {
			log.Warn("writing --ready-file", "err", err)
		}
	}
	printBanner(c.App.ErrWriter, url, token != "", store.Root, session, mode, serverURL)

	var runErr error
	select {
	case <-ctx.Done():
		log.Info("signal received: finishing the open window and stopping the target")
	case err := <-serveErr:
		runErr = fmt.Errorf("HTTP server: %w", err)
	}
	// Finish (or fail) the open window, then end the target through nsys, then the API.
	closeCtx, cancel := context.WithTimeout(context.Background(), c.Duration("stop-timeout")+time.Minute)
	defer cancel()
	if err := mgr.Close(closeCtx); err != nil {
		log.Warn("closing windows", "err", err)
	}
	if err := sup.Stop(30 * time.Second); err != nil {
		log.Warn("stopping the target", "err", err)
	}
	cancelBase()
	shutCtx, cancelShut := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancelShut()
	_ = srv.Shutdown(shutCtx)
	if f := c.String("ready-file"); f != "" {
		_ = os.Remove(f)
	}
	if exited, code := sup.Exited(); exited {
		log.Info("target ended", "exit_code", code)
		store.ClearTarget()
	}
	return runErr
}

// previousTarget returns the target a previous agent recorded in this data dir when its
// nsys front-end and session are both still alive; a stale record is removed.
func previousTarget(ctx context.Context, store *agent.Store, runner nsys.Runner, log *slog.Logger) (*agent.TargetRecord, bool) {
	rec, err := store.LoadTarget()
	if err != nil {
		log.Warn("ignoring an unreadable target record", "err", err)
		return nil, false
	}
	if rec == nil {
		return nil, false
	}
	list, err := nsys.ListSessions(ctx, runner)
	if err == nil {
		if s, ok := nsys.Lookup(list, rec.Session); ok && s.State != nsys.StateShutdown && isFrontEnd(rec.PID, rec.Session) {
			return rec, true
		}
	}
	log.Info("the target recorded by a previous agent has ended; launching anew", "session", rec.Session)
	store.ClearTarget()
	return nil, false
}

func waitDemoURL(ctx context.Context, file string, sup *agent.Supervisor) string {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if raw, err := os.ReadFile(file); err == nil && len(strings.TrimSpace(string(raw))) > 0 {
			return strings.TrimSpace(string(raw))
		}
		if exited, _ := sup.Exited(); exited {
			return ""
		}
		time.Sleep(100 * time.Millisecond)
	}
	return ""
}

func tlsConfig(certFile, keyFile, clientCA string) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("loading --tls-cert/--tls-key: %w", err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if clientCA != "" {
		pem, err := os.ReadFile(clientCA)
		if err != nil {
			return nil, fmt.Errorf("reading --tls-client-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, errors.New("--tls-client-ca holds no PEM certificate")
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}

func printBanner(w io.Writer, url string, hasToken bool, dataDir, session string, mode nsys.Mode, serverURL string) {
	fmt.Fprintf(w, "\nnsys-agent is serving on %s (session %s, %s mode)\n", url, session, mode)
	if serverURL != "" {
		fmt.Fprintf(w, "  target server:  %s\n", serverURL)
	}
	fmt.Fprintf(w, "  data dir:       %s (windows/, target.log)\n", dataDir)
	agentFlag := ""
	if url != defaultAgent {
		agentFlag = " --agent " + url
	}
	if hasToken {
		fmt.Fprintf(w, "  clients need the token: export NSYS_AGENT_TOKEN=...\n")
	}
	fmt.Fprintf(w, "  open a window:  nsys-agent start%s --duration 5s\n", agentFlag)
	fmt.Fprintf(w, "  close it:       nsys-agent stop%s\n", agentFlag)
	fmt.Fprintf(w, "  fetch reports:  nsys-agent pull%s latest -o ./reports\n", agentFlag)
	fmt.Fprintf(w, "  Ctrl-C finishes the open window, stops the server and exits.\n\n")
}

// isFrontEnd reports whether pid is still the nsys front-end of session (not a process
// that reused the pid).
func isFrontEnd(pid int, session string) bool {
	if pid <= 0 {
		return false
	}
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return false
	}
	return strings.Contains(string(raw), "\x00--session-new="+session+"\x00")
}
