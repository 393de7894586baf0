package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nsys-agent/nsys-agent/agent"
	"github.com/nsys-agent/nsys-agent/agent/windows"
	"github.com/urfave/cli/v2"
)

// defaultAgent is where `nsys-agent run` listens unless told otherwise.
const defaultAgent = agent.DefaultAgentURL

// controlTimeout bounds a control call (status, start, stop); downloads and event
// streams are bounded only by the command's context.
const controlTimeout = 30 * time.Second

// apiClient talks to one agent's HTTP API. The token travels only in a header.
type apiClient struct {
	base  string // scheme://host[:port][/prefix], no trailing slash
	token string
	hc    *http.Client
	// hintFlags are the flags a suggested command needs to reach this agent the same way
	// (--agent, --token-file, TLS files); see command.
	hintFlags []string
}

func newAPIClient(base, token string, tr http.RoundTripper) *apiClient {
	return &apiClient{base: base, token: token, hc: &http.Client{Transport: tr}}
}

// newTransport is one transport per command run, closed at its end so no idle
// connection outlives the command.
func newTransport() *http.Transport {
	return &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout:   10 * time.Second,
		MaxIdleConnsPerHost:   4,
		IdleConnTimeout:       30 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
}

// clientError is a failed call, worded for the person at the terminal: what the agent
// said, and what to do about it.
type clientError struct {
	Agent   string
	Status  int
	Code    string
	Message string
	Hint    string
}

func (e *clientError) Error() string {
	msg := e.Message
	if e.Status != 0 {
		msg = fmt.Sprintf("%s (HTTP %d %s)", msg, e.Status, e.Code)
	}
	if e.Hint != "" {
		msg += "; " + e.Hint
	}
	return msg
}

func (c *apiClient) newRequest(ctx context.Context, method, path string, body io.Reader) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return nil, err
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	req.Header.Set("User-Agent", "nsys-agent-cli")
	return req, nil
}

// send performs req and turns transport failures and non-2xx answers into clientErrors.
// ok lists extra statuses that are not errors (206, 304).
func (c *apiClient) send(req *http.Request, ok ...int) (*http.Response, error) {
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, c.transportError(err)
	}
	if resp.StatusCode/100 == 2 {
		return resp, nil
	}
	for _, s := range ok {
		if resp.StatusCode == s {
			return resp, nil
		}
	}
	defer resp.Body.Close()
	return nil, c.statusError(resp)
}

func (c *apiClient) transportError(err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	ce := &clientError{Agent: c.base, Message: fmt.Sprintf("cannot reach %s: %v", c.base, unwrapURLError(err))}
	if errors.Is(err, syscall.ECONNREFUSED) {
		ce.Message = fmt.Sprintf("connection refused by %s", c.base)
	}
	ce.Hint = fmt.Sprintf("is `nsys-agent run` running at %s? (set --agent or NSYS_AGENT_ADDR)", c.base)
	return ce
}

func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

func (c *apiClient) statusError(resp *http.Response) error {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	ce := &clientError{Agent: c.base, Status: resp.StatusCode}
	var eb agent.ErrorBody
	if json.Unmarshal(body, &eb) == nil && eb.Error.Message != "" {
		ce.Code, ce.Message = eb.Error.Code, eb.Error.Message
	} else {
		// Not our agent, or a proxy in between: show what came back.
		ce.Code = "http_" + fmt.Sprint(resp.StatusCode)
		ce.Message = strings.TrimSpace(string(body))
		if ce.Message == "" {
			ce.Message = http.StatusText(resp.StatusCode)
		}
	}
	switch {
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		ce.Hint = "set --token or NSYS_AGENT_TOKEN (or --token-file) to a token the agent accepts"
	case ce.Code == agent.CodeWindowActive:
		ce.Hint = "stop it first with " + c.command("stop")
	case ce.Code == agent.CodeNoWindow:
		ce.Hint = "open one with " + c.command("start")
	case ce.Code == agent.CodeTargetDown:
		ce.Hint = "see the target's state and log tail with " + c.command("status")
	case resp.StatusCode == http.StatusNotFound && ce.Code == agent.CodeNotFound:
		ce.Hint = "list windows with " + c.command("windows")
	}
	if ce.Code != agent.CodeUnauthorized && strings.Contains(ce.Message, "'nsys-agent ") {
		// The agent already said what to do; it cannot know how this client reached it.
		ce.Hint = ""
		if len(c.hintFlags) > 0 {
			ce.Hint = "add `" + strings.Trim(strings.TrimPrefix(c.command(), "`nsys-agent"), " `") + "` to that command"
		}
	}
	return ce
}

// call sends a JSON request (body may be nil) and decodes a JSON answer into out.
func (c *apiClient) call(ctx context.Context, method, path string, body, out any) error {
	ctx, cancel := context.WithTimeout(ctx, controlTimeout)
	defer cancel()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := c.newRequest(ctx, method, path, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.send(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("%s %s%s: unreadable answer: %w", method, c.base, path, err)
	}
	return nil
}

func (c *apiClient) window(ctx context.Context, id string) (*windows.Manifest, error) {
	var m windows.Manifest
	if err := c.call(ctx, http.MethodGet, "/v1/windows/"+url.PathEscape(id), nil, &m); err != nil {
		return nil, err
	}
	return &m, nil
}

// lookup finds the window a user named: "latest" (the newest window), "active" or "-"
// (the one requested or capturing), an id, or a name (the newest window of that name;
// an id wins over a name).
func (c *apiClient) lookup(ctx context.Context, word string) (*windows.Manifest, error) {
	switch word {
	case "latest":
		ws, err := c.windows(ctx)
		if err != nil {
			return nil, err
		}
		if len(ws) == 0 {
			return nil, &clientError{Agent: c.base, Message: "the agent has no windows yet", Hint: "open one with " + c.command("start")}
		}
		return &ws[0], nil
	case "active", "-":
		var st agent.Status
		if err := c.call(ctx, http.MethodGet, "/v1/status", nil, &st); err != nil {
			return nil, err
		}
		if st.Active == nil {
			return nil, &clientError{Agent: c.base, Code: agent.CodeNoWindow, Message: "no window is active", Hint: "open one with " + c.command("start")}
		}
		return st.Active, nil
	}
	m, err := c.window(ctx, word)
	var ce *clientError
	if err == nil || !errors.As(err, &ce) || ce.Code != agent.CodeNotFound {
		return m, err
	}
	ws, lerr := c.windows(ctx)
	if lerr != nil {
		return nil, err
	}
	for i := range ws {
		if ws[i].Name == word {
			return &ws[i], nil
		}
	}
	return nil, &clientError{Agent: c.base, Status: ce.Status, Code: ce.Code,
		Message: fmt.Sprintf("no window has the id or name %q", word), Hint: "list them with " + c.command("windows")}
}

// windows lists the agent's windows, newest first.
func (c *apiClient) windows(ctx context.Context) ([]windows.Manifest, error) {
	var ws []windows.Manifest
	if err := c.call(ctx, http.MethodGet, "/v1/windows", nil, &ws); err != nil {
		return nil, err
	}
	return newestFirst(ws), nil
}

// resolveWindow turns what the user typed into a window id (see lookup).
func (c *apiClient) resolveWindow(ctx context.Context, word string) (string, error) {
	m, err := c.lookup(ctx, word)
	if err != nil {
		return "", err
	}
	return m.ID, nil
}

// Flags every client command shares.
var (
	flagAgent = &cli.StringSliceFlag{
		Name:    "agent",
		Usage:   "agent `URL`; repeat or comma-separate to run on several agents in parallel",
		EnvVars: []string{"NSYS_AGENT_ADDR"},
	}
	flagToken = &cli.StringFlag{
		Name:    "token",
		Usage:   "bearer `TOKEN` for the agent (prefer the environment: flags show in ps)",
		EnvVars: []string{"NSYS_AGENT_TOKEN"},
	}
	flagTokenFile = &cli.StringFlag{
		Name:  "token-file",
		Usage: "read the token from `FILE`",
	}
	flagCACert = &cli.StringFlag{
		Name:    "ca-cert",
		Usage:   "trust this CA (`PEM` file) for https agents, besides the system's",
		EnvVars: []string{"NSYS_AGENT_CA_CERT"},
	}
	flagClientCert = &cli.StringFlag{
		Name:    "client-cert",
		Usage:   "client certificate (`PEM`) for agents that require one (--tls-client-ca)",
		EnvVars: []string{"NSYS_AGENT_CLIENT_CERT"},
	}
	flagClientKey = &cli.StringFlag{
		Name:    "client-key",
		Usage:   "private key (`PEM`) of --client-cert",
		EnvVars: []string{"NSYS_AGENT_CLIENT_KEY"},
	}
)

// connectionFlags are how a client reaches and proves itself to an agent.
func connectionFlags() []cli.Flag {
	return []cli.Flag{flagAgent, flagToken, flagTokenFile, flagCACert, flagClientCert, flagClientKey}
}

// clientTLS builds the TLS settings for https agents from --ca-cert and --client-cert/key.
func clientTLS(c *cli.Context) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if ca := c.String("ca-cert"); ca != "" {
		pem, err := os.ReadFile(ca)
		if err != nil {
			return nil, usagef("--ca-cert: %v", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, usagef("--ca-cert: %s holds no PEM certificate", ca)
		}
		cfg.RootCAs = pool
	}
	certFile, keyFile := c.String("client-cert"), c.String("client-key")
	if (certFile == "") != (keyFile == "") {
		return nil, usagef("--client-cert and --client-key go together")
	}
	if certFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, usagef("--client-cert/--client-key: %v", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

func outputFlag(name string, aliases ...string) *cli.StringFlag {
	return &cli.StringFlag{Name: name, Aliases: aliases, Value: "table", Usage: "output `FORMAT`: table or json"}
}

// clientFlags are the shared flags plus -o/--output for the output format.
func clientFlags(extra ...cli.Flag) []cli.Flag {
	return append(append(extra, connectionFlags()...), outputFlag("output", "o"))
}

// clientCommand fills in what every client command shares: usage errors exit 2, and
// flags may follow the positional arguments (`pull W1 -o DIR`), which urfave/cli v2
// would otherwise leave unparsed.
func clientCommand(cmd *cli.Command) *cli.Command {
	cmd.OnUsageError = func(c *cli.Context, err error, _ bool) error { return usageError{err} }
	action := cmd.Action
	cmd.Action = func(c *cli.Context) error {
		if err := parseTrailingFlags(c); err != nil {
			return err
		}
		return action(c)
	}
	return cmd
}

// trailingArgsKey keys the positional arguments left after parseTrailingFlags.
type trailingArgsKey struct{}

// parseTrailingFlags sets flags found among the positional arguments on the command's
// own flag set, and keeps the rest as the positional arguments.
func parseTrailingFlags(c *cli.Context) error {
	pos, err := interspersedArgs(c)
	if err != nil {
		return err
	}
	c.Context = context.WithValue(c.Context, trailingArgsKey{}, pos)
	return nil
}

// positional returns the command's positional arguments, checking their number.
func positional(c *cli.Context, min, max int, what string) ([]string, error) {
	pos, _ := c.Context.Value(trailingArgsKey{}).([]string)
	if len(pos) < min || len(pos) > max {
		return nil, usagef("%s: expected %s, got %d argument(s); see 'nsys-agent %s --help'", c.Command.Name, what, len(pos), c.Command.Name)
	}
	return pos, nil
}

// clientSetup is what a client command learned from its shared flags.
type clientSetup struct {
	agents []*apiClient
	format string
	tr     *http.Transport

	mu     sync.Mutex // notes come from one goroutine per agent
	stderr io.Writer
}

// notef writes a note about one agent's window on stderr: what the command is doing
// besides what was asked (waiting for a window that was finalizing already).
func (s *clientSetup) notef(ac *apiClient, format string, a ...any) {
	msg := fmt.Sprintf(format, a...)
	if len(s.agents) > 1 {
		msg = ac.base + ": " + msg
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	fmt.Fprintf(s.stderr, "nsys-agent: %s\n", msg)
}

func (s *clientSetup) close() { s.tr.CloseIdleConnections() }

func (s *clientSetup) json() bool { return s.format == "json" }

// setupClients reads --agent, --token, --token-file and the output format flag named
// formatFlag; mistakes in them are usage errors.
func setupClients(c *cli.Context, formatFlag string) (*clientSetup, error) {
	format := c.String(formatFlag)
	if format != "table" && format != "json" {
		return nil, usagef("--%s: want table or json, got %q", formatFlag, format)
	}
	token := c.String("token")
	if path := c.String("token-file"); path != "" {
		if c.String("token") != "" {
			return nil, usagef("--token and --token-file: give one, not both")
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, usagef("--token-file: %v", err)
		}
		token = strings.TrimSpace(string(b))
		if token == "" {
			return nil, usagef("--token-file: %s is empty", path)
		}
	}
	var addrs []string
	for _, v := range c.StringSlice("agent") {
		for _, a := range strings.Split(v, ",") {
			if a = strings.TrimSpace(a); a != "" {
				addrs = append(addrs, a)
			}
		}
	}
	if len(addrs) == 0 {
		addrs = []string{defaultAgent}
	}
	tlsCfg, err := clientTLS(c)
	if err != nil {
		return nil, err
	}
	s := &clientSetup{format: format, tr: newTransport(), stderr: c.App.ErrWriter}
	s.tr.TLSClientConfig = tlsCfg
	// Files given as flags go into hints; the environment's apply to a pasted hint anyway.
	var fileFlags []string
	for _, f := range []struct{ name, env string }{
		{"token-file", ""}, {"ca-cert", "NSYS_AGENT_CA_CERT"}, {"client-cert", "NSYS_AGENT_CLIENT_CERT"}, {"client-key", "NSYS_AGENT_CLIENT_KEY"},
	} {
		if v := c.String(f.name); v != "" && (f.env == "" || os.Getenv(f.env) != v) {
			fileFlags = append(fileFlags, "--"+f.name, v)
		}
	}
	seen := map[string]bool{}
	for _, a := range addrs {
		base, err := normalizeAgentURL(a)
		if err != nil {
			return nil, usagef("--agent %q: %v", a, err)
		}
		if seen[base] {
			continue // the same agent twice would run the command twice
		}
		seen[base] = true
		ac := newAPIClient(base, token, s.tr)
		if base != defaultAgent {
			ac.hintFlags = append(ac.hintFlags, "--agent", base)
		}
		ac.hintFlags = append(ac.hintFlags, fileFlags...)
		s.agents = append(s.agents, ac)
	}
	return s, nil
}

// normalizeAgentURL accepts "host:port" as well as full http(s) URLs.
func normalizeAgentURL(s string) (string, error) {
	if !strings.Contains(s, "://") {
		s = "http://" + s
	}
	u, err := url.Parse(s)
	if err != nil {
		return "", err
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return "", fmt.Errorf("scheme must be http or https")
	}
	if u.Host == "" {
		return "", fmt.Errorf("no host")
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		// A token in the URL would leak into shell history and logs.
		return "", fmt.Errorf("give only scheme://host:port[/path]; pass the token with --token or NSYS_AGENT_TOKEN")
	}
	return strings.TrimRight(u.Scheme+"://"+u.Host+u.Path, "/"), nil
}
