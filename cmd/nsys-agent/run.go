package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/mattn/go-shellwords"
	"github.com/urfave/cli/v2"

	"github.com/nsys-agent/nsys-agent/agent"
	"github.com/nsys-agent/nsys-agent/agent/cost"
	"github.com/nsys-agent/nsys-agent/agent/triggers"
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
   nsys-agent run --cmd "CUDA_VISIBLE_DEVICES=0,1 python -m sglang.launch_server --tp 2"
   nsys-agent run --cmd "vllm serve M --profiler-config ..." --arm launch
   nsys-agent run --listen 0.0.0.0:7477 --token-file /etc/nsys-agent/token -- ...
   nsys-agent run                       # the demo target

Arming (fixed for the server's life; nsys injects at launch):
   start-later   nsys profile --start-later=true (nsys 2024+; the default where supported)
   launch        nsys launch, then nsys start -o per window (every nsys; default otherwise)
   cuda-profiler nsys profile --capture-range=cudaProfilerApi: the server opens windows itself

Backends: windows are captured by nsys (the default), cuda-profiler (with --arm
cuda-profiler) or a plugin: a binary nsys-agent-backend-NAME in --plugin-dir (default: the
folder of this binary), started with the agent and killed with it. --backend NAME makes NAME
the default of windows; a plugin may then adjust the server's launch (its changes are printed
before anything starts). 'nsys-agent backends' lists them, and why any was skipped.

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
			&cli.StringFlag{Name: "cmd", Usage: "the server command as one string (parsed like a shell, without operators; leading NAME=value words are its environment)"},
			&cli.StringFlag{Name: "session", Usage: "nsys session name (default nsys-agent-<random>)"},
			pluginDirFlag(),
			&cli.StringFlag{Name: "backend", Usage: "default backend of windows; a plugin may adjust the server's launch for it (see 'nsys-agent backends')"},
			&cli.StringFlag{Name: "cost-metric", Usage: "read the server's throughput from this Prometheus `METRIC` at <server-url>/metrics (e.g. sglang:gen_throughput; SGLang needs --enable-metrics); a counter is read as its rate"},
			&cli.StringFlag{Name: "cost-log-regex", Usage: "read it from the server's output instead: `REGEX` whose first group is the number (default: SGLang's \"gen throughput (token/s): X\"; off = no costs)"},
			&cli.DurationFlag{Name: "cost-after", Value: time.Minute, Usage: "how long after a window is ready its \"after\" throughput is measured (before: the same span before it)"},
			&cli.Float64Flag{Name: "cost-slowdown", Value: 0.10, Usage: "a window after which the server stays slower than before by more than this fraction gets a slowdown finding"},
			// Issue 15, triggers part: windows that open by themselves (run_triggers.go).
			&cli.StringFlag{Name: "trigger-log", Usage: "open a window when a line of the server's output matches `REGEX` (with --trigger-below/--trigger-above, its group named value is the number compared)"},
			&cli.Float64Flag{Name: "trigger-below", Usage: "with --trigger-log: fire only when the captured value is below `X`"},
			&cli.Float64Flag{Name: "trigger-above", Usage: "with --trigger-log: fire only when the captured value is above `X`"},
			&cli.StringFlag{Name: "trigger-metric", Usage: "open a window when a Prometheus metric at <server-url>/metrics crosses a threshold: `'NAME<X'` or 'NAME>X' (read every 2 s)"},
			&cli.DurationFlag{Name: "trigger-duration", Value: triggers.DefaultDuration, Usage: "how long each window a trigger opens captures"},
			&cli.DurationFlag{Name: "trigger-cooldown", Value: triggers.DefaultCooldown, Usage: "the least time from one triggered window to the next"},
			&cli.IntFlag{Name: "trigger-max", Value: triggers.DefaultMax, Usage: "how many windows each trigger opens in all"},
			&cli.IntFlag{Name: "demo-ranks", Value: 2, Usage: "rank workers of the built-in demo target"},
			&cli.StringFlag{Name: "min-free", Value: "100MiB", Usage: "free space the data dir needs for a window to start (0 = no floor)"},
			// Retention (issue 15, item 3); read in run_retention.go.
			&cli.StringFlag{Name: "max-bytes", Value: "0", Usage: "`SIZE` all window folders may hold; the oldest finished, unpinned windows are removed first (0 = no bound)"},
			&cli.IntFlag{Name: "keep-windows", Usage: "keep at most `N` finished, unpinned windows; older ones are removed (0 = all)"},
			&cli.StringFlag{Name: "max-window-bytes", Value: "0", Usage: "stop a window early once its capture has written `SIZE` (0 = no bound; start --max-bytes overrides)"},
			&cli.DurationFlag{Name: "stop-timeout", Value: 5 * time.Minute, Usage: "how long one nsys stop may take before the window fails"},
			&cli.StringFlag{Name: "ready-file", Usage: "write the API URL here once serving (for scripts)"},
			&cli.StringFlag{Name: "log-level", Value: "info", Usage: "debug, info, warn or error"},
		},
		Action: runAgent,
	}
}

// parseCommand returns the server argv and environment from `--` args or --cmd. --cmd is
// split like a shell would, but shell operators and backticks are refused: nothing here
// runs a shell. Leading NAME=value words (CUDA_VISIBLE_DEVICES=0 python ...) are the
// server's environment, as a shell takes them; nsys would run "NAME=value" as a program.
func parseCommand(args []string, cmdString string) (argv, env []string, err error) {
	if cmdString != "" && len(args) > 0 {
		return nil, nil, usagef("give the server command either after -- or with --cmd, not both")
	}
	words := args
	if cmdString != "" {
		if strings.ContainsAny(cmdString, "`") || strings.Contains(cmdString, "$(") {
			return nil, nil, usagef("--cmd: backticks and $(...) are not allowed; nsys-agent runs no shell (put a script in a file and run that)")
		}
		p := shellwords.NewParser()
		p.ParseBacktick = false
		p.ParseEnv = false
		words, err = p.Parse(cmdString)
		if err != nil {
			return nil, nil, usagef("--cmd: %v", err)
		}
		if p.Position != -1 {
			return nil, nil, usagef("--cmd: shell operators (;, &&, ||, |, >, <) are not allowed at %q; nsys-agent runs no shell (put a script in a file and run that)", cmdString[p.Position:])
		}
		if len(words) == 0 {
			return nil, nil, usagef("--cmd is empty")
		}
	}
	n := 0
	for n < len(words) && isAssignment(words[n]) {
		n++
	}
	if n > 0 && n == len(words) {
		return nil, nil, usagef("the server command has only environment assignments (%s) and no program; write them before the program: NAME=value python -m ...", strings.Join(words, " "))
	}
	if n == 0 {
		return words, nil, nil
	}
	return words[n:], words[:n], nil
}

// isAssignment reports whether w is NAME=value with NAME a valid environment name.
func isAssignment(w string) bool {
	name, _, ok := strings.Cut(w, "=")
	if !ok || name == "" {
		return false
	}
	for i, c := range name {
		if !(c == '_' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || i > 0 && c >= '0' && c <= '9') {
			return false
		}
	}
	return true
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

func runAgent(c *cli.Context) error {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.String("log-level"))); err != nil {
		return usagef("--log-level: %v", err)
	}
	command, env, err := parseCommand(c.Args().Slice(), c.String("cmd"))
	if err != nil {
		return err
	}
	token, err := readToken(c)
	if err != nil {
		return err
	}
	cfg := agent.Config{
		Listen: c.String("listen"), Token: token, TokenFile: c.String("token-file"),
		TLSCert: c.String("tls-cert"), TLSKey: c.String("tls-key"), TLSClientCA: c.String("tls-client-ca"),
		DataDir: c.String("data-dir"), Nsys: c.String("nsys"), Arm: c.String("arm"),
		NsysArgs: c.StringSlice("nsys-arg"), SampleCPU: c.Bool("sample-cpu"), Session: c.String("session"),
		Command: command, Env: env, ServerURL: c.String("server-url"),
		Backend: c.String("backend"),
		Cost: agent.CostConfig{Metric: c.String("cost-metric"), LogRegex: c.String("cost-log-regex"),
			Before: c.Duration("cost-after"), After: c.Duration("cost-after"), Slowdown: c.Float64("cost-slowdown")},
		StopTimeout: c.Duration("stop-timeout"), ReadyFile: c.String("ready-file"), Version: version,
		Log:    slog.New(slog.NewTextHandler(c.App.ErrWriter, &slog.HandlerOptions{Level: level})),
		Banner: c.App.ErrWriter,
	}
	if err := checkCostFlags(cfg.Cost); err != nil {
		return err
	}
	if cfg.Triggers, err = triggerSpecs(c); err != nil { // issue 15, triggers part
		return err
	}
	if cfg.PluginDir, err = pluginDir(c); err != nil {
		return err
	}
	if cfg.MinFree, err = humanize.ParseBytes(c.String("min-free")); err != nil {
		return usagef("--min-free: %v (examples: 500MiB, 2GB, 0)", err)
	}
	if err := retentionConfig(c, &cfg); err != nil { // issue 15, item 3
		return err
	}
	if t := c.String("trace"); t != "" {
		cfg.Trace = strings.Split(t, ",")
	}
	if len(command) == 0 {
		if err := demoTarget(&cfg, c.Int("demo-ranks")); err != nil {
			return err
		}
	}
	ctx, stop := signal.NotifyContext(c.Context, stopSignals()...)
	defer stop()
	// A Go program writing to a closed pipe on stdout or stderr dies of SIGPIPE unless it
	// handles the signal: an agent whose terminal or log reader went away died on its
	// next log line and left its server to nobody. Handled, the write fails with EPIPE
	// and the agent carries on (children still get the default disposition at exec).
	signal.Notify(make(chan os.Signal, 1), syscall.SIGPIPE)
	err = agent.Run(ctx, cfg)
	if errors.Is(err, agent.ErrConfig) {
		return usageError{err}
	}
	return err
}

// demoTarget makes the built-in demo server (this binary's demo-server command) the
// target: it writes its URL into the data dir once it listens.
func demoTarget(cfg *agent.Config, ranks int) error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	dataDir, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return err
	}
	cfg.ServerURLFile = filepath.Join(dataDir, "demo-server.url")
	cfg.Command = []string{exe, "demo-server", "--port", "0", "--ranks", strconv.Itoa(ranks), "--ready-file", cfg.ServerURLFile}
	if cfg.Trace == nil {
		// The demo's ranks are CPU programs: OS-runtime tracing is what shows them.
		cfg.Trace = append(append([]string{}, nsys.DefaultTrace...), "osrt")
	}
	return nil
}

// checkCostFlags refuses cost settings that cannot work before anything starts.
func checkCostFlags(cc agent.CostConfig) error {
	if s := cc.Slowdown; s <= 0 || s >= 1 {
		return usagef("--cost-slowdown: a fraction between 0 and 1 (0.1 = 10%% slower), got %v", s)
	}
	if cc.After <= 0 || cc.After > time.Hour {
		return usagef("--cost-after: between 1s and 1h, got %s", cc.After)
	}
	if cc.LogRegex != "" && !strings.EqualFold(cc.LogRegex, "off") && cc.Metric == "" {
		if _, err := cost.NewLogSource(cc.LogRegex); err != nil {
			return usagef("--cost-log-regex: %v", err)
		}
	}
	return nil
}

// stopSignals end the agent gracefully: the open window is finished and the server ended
// through nsys. SIGHUP (the terminal went away) too, unless the agent was started with it
// ignored (nohup), which must stay so.
func stopSignals() []os.Signal {
	sigs := []os.Signal{syscall.SIGINT, syscall.SIGTERM}
	if !signal.Ignored(syscall.SIGHUP) {
		sigs = append(sigs, syscall.SIGHUP)
	}
	return sigs
}
