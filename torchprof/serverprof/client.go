package serverprof

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
	"unicode"
)

// Options tune a Client. The zero value is ready to use.
type Options struct {
	// HTTPClient sends the requests. nil: one without keep-alives (a window is a handful
	// of requests) that never follows a redirect. The timeouts below apply on top of its
	// own.
	HTTPClient *http.Client
	// Header is added to every request, e.g. Authorization for a server run with
	// --api-key. It never appears in an error.
	Header http.Header
	// ProbeTimeout bounds GET /get_server_info and GET /v1/models. Default 10 s.
	ProbeTimeout time.Duration
	// StartTimeout bounds POST /start_profile. Default 2 min: trtllm-serve answers after
	// every worker acknowledged the start, SGLang after every scheduler did.
	StartTimeout time.Duration
	// StopTimeout bounds the stop request. Default 15 min: SGLang answers only after
	// every rank wrote its trace, which takes tens of seconds to minutes.
	StopTimeout time.Duration
}

const (
	defaultProbeTimeout = 10 * time.Second
	defaultStartTimeout = 2 * time.Minute
	defaultStopTimeout  = 15 * time.Minute

	replyLimit = 64 << 10 // control replies are one line of text or a small JSON object
	infoLimit  = 4 << 20  // /get_server_info carries every server argument and per-DP state
)

// Client drives one server's profiling endpoints. It is safe for concurrent use; the
// server itself allows one profile at a time.
type Client struct {
	base   *url.URL
	flavor Flavor
	hc     *http.Client
	header http.Header

	probeTimeout, startTimeout, stopTimeout time.Duration

	// endProfile is set once an SGLang answered /stop_profile with 404 and /end_profile
	// with something else, so later stops go straight to the route that exists.
	endProfile atomic.Bool
}

// New makes a client for the server at baseURL (http or https, e.g.
// "http://127.0.0.1:30000"; a path prefix is kept) of the given flavor (see Detect).
// Credentials belong in Options.Header, not in the URL.
func New(baseURL string, flavor Flavor, opts Options) (*Client, error) {
	if _, err := ParseFlavor(string(flavor)); err != nil {
		return nil, err
	}
	return newClient(baseURL, flavor, opts)
}

func newClient(baseURL string, flavor Flavor, opts Options) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, errorf(ErrInvalid, "server URL %q: want http://HOST:PORT or https://HOST:PORT", redact(baseURL))
	}
	if u.User != nil {
		return nil, errorf(ErrInvalid, "server URL %s carries credentials: pass them in Options.Header (e.g. Authorization) so they stay out of URLs and errors", u.Redacted())
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, errorf(ErrInvalid, "server URL %s: drop the query and fragment; give only scheme, host, port and an optional path prefix", u.Redacted())
	}
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath = ""
	hc := opts.HTTPClient
	if hc == nil {
		hc = &http.Client{
			Transport: &http.Transport{Proxy: http.ProxyFromEnvironment, DisableKeepAlives: true},
			// A profiling route never redirects; following one would send the request
			// somewhere the caller did not name.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	c := &Client{base: u, flavor: flavor, hc: hc, header: opts.Header.Clone(),
		probeTimeout: orDefault(opts.ProbeTimeout, defaultProbeTimeout),
		startTimeout: orDefault(opts.StartTimeout, defaultStartTimeout),
		stopTimeout:  orDefault(opts.StopTimeout, defaultStopTimeout)}
	return c, nil
}

func orDefault(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// Flavor is the server kind the client speaks to.
func (c *Client) Flavor() Flavor { return c.flavor }

// URL is the server's base URL.
func (c *Client) URL() string { return c.base.String() }

// reply is one HTTP answer: its status and a bounded body.
type reply struct {
	status    int
	body      []byte
	truncated bool
}

// do sends one request. A transport failure comes back as ErrServerDown or ErrTimeout;
// any HTTP status is a reply for the caller to judge.
func (c *Client) do(ctx context.Context, method, route string, body []byte, timeout time.Duration, limit int64) (reply, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base.String()+route, rd)
	if err != nil {
		return reply{}, errorf(ErrInvalid, "%s %s: %v", method, route, err)
	}
	for k, vs := range c.header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return reply{}, c.transportError(ctx, method, route, timeout, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return reply{}, c.transportError(ctx, method, route, timeout, err)
	}
	r := reply{status: resp.StatusCode, body: b}
	if int64(len(b)) > limit {
		r.body, r.truncated = b[:limit], true
	}
	return r, nil
}

// transportError says why no answer came: the caller gave up, the timeout passed, or the
// server is not there.
func (c *Client) transportError(ctx context.Context, method, route string, timeout time.Duration, err error) error {
	what := fmt.Sprintf("%s %s%s", method, c.base.Redacted(), route)
	switch {
	case errors.Is(err, context.Canceled):
		return fmt.Errorf("%s: %w", what, context.Canceled)
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(ctx.Err(), context.DeadlineExceeded) || isTimeout(err):
		return wrapf(ErrTimeout, err, "%s: no answer before the deadline (at most %s); the server may be busy or hung (raise the timeout in Options, or the caller's deadline, if it is only slow)", what, timeout)
	case errors.Is(err, syscall.ECONNREFUSED):
		return wrapf(ErrServerDown, err, "%s: connection refused: the server is not listening there (not started yet, exited, or another port)", what)
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE):
		return wrapf(ErrServerDown, err, "%s: the server closed the connection without an answer: it may have crashed; check that it is still running", what)
	}
	return wrapf(ErrServerDown, err, "%s: %v; check the URL and that the server is running", what, err)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// snippet is a bounded, printable piece of a server's answer for an error message.
func snippet(b []byte) string {
	const max = 200
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "(empty body)"
	}
	var sb strings.Builder
	n := 0
	for _, r := range s {
		if n == max {
			sb.WriteString("…")
			break
		}
		if !unicode.IsPrint(r) {
			r = '?'
		}
		sb.WriteRune(r)
		n++
	}
	return sb.String()
}

// redact hides userinfo in a URL that may not parse.
func redact(s string) string {
	if u, err := url.Parse(s); err == nil {
		return u.Redacted()
	}
	if i := strings.LastIndex(s, "@"); i >= 0 {
		return "…" + s[i:]
	}
	return s
}
