package agent

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/nsys-agent/nsys-agent/nsys"
)

// DefaultAgentURL is where clients look for an agent when told nothing.
const DefaultAgentURL = "http://127.0.0.1:7477"

// listen opens the API's listener (TLS when configured) and says its URL.
func listen(cfg Config) (net.Listener, string, error) {
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, "", fmt.Errorf("listening on %s: %w (is another agent running? choose --listen)", cfg.Listen, err)
	}
	ln = capConns(ln, defaultLimits.maxConns)
	scheme := "http"
	if cfg.TLSCert != "" {
		tc, err := tlsConfig(cfg.TLSCert, cfg.TLSKey, cfg.TLSClientCA)
		if err != nil {
			ln.Close()
			return nil, "", err
		}
		ln = tls.NewListener(ln, tc)
		scheme = "https"
	}
	return ln, fmt.Sprintf("%s://%s", scheme, ln.Addr()), nil
}

// server is the API's http.Server; its event streams end when it shuts down.
type server struct {
	*http.Server
	cancelStreams context.CancelFunc
}

func newServer(svc Service, cfg Config, metrics *Metrics) *server {
	var tokens []string
	if cfg.Token != "" {
		tokens = []string{cfg.Token}
	}
	handler := NewHandler(svc, APIOptions{Tokens: tokens, Logger: cfg.Log, Version: cfg.Version, Metrics: metrics})
	base, cancel := context.WithCancel(context.Background())
	t := defaultLimits
	return &server{Server: &http.Server{Handler: handler,
		ReadHeaderTimeout: t.header, ReadTimeout: t.read, IdleTimeout: t.idle, MaxHeaderBytes: 64 << 10,
		BaseContext: func(net.Listener) context.Context { return base }}, cancelStreams: cancel}
}

// limits bound what a client can hold. Before them, idle keep-alive connections (no
// token needed) were kept for ever: about `ulimit -n` of them locked the API out, health
// and stop included, and left the agent no descriptor for nsys or a report.
type limits struct {
	header, read, idle time.Duration
	maxConns           int
}

// defaultLimits: request bodies are at most 1 MiB, so a minute to read one is generous;
// downloads and event streams are writes and stay unbounded.
var defaultLimits = limits{header: 10 * time.Second, read: time.Minute, idle: time.Minute, maxConns: maxConns()}

// maxConns leaves half the descriptors to nsys, reports and the target's log.
func maxConns() int {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil || rl.Cur == 0 {
		return 512
	}
	return int(min(rl.Cur/2, 4096))
}

// capListener closes connections beyond max at once, rather than letting accept fail for
// every client once descriptors run out.
type capListener struct {
	net.Listener
	slots chan struct{}
}

func capConns(ln net.Listener, max int) net.Listener {
	return &capListener{Listener: ln, slots: make(chan struct{}, max)}
}

func (l *capListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		select {
		case l.slots <- struct{}{}:
			return &cappedConn{Conn: c, release: func() { <-l.slots }}, nil
		default:
			c.Close() // full: this client retries later; the others keep working
		}
	}
}

type cappedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *cappedConn) Close() error {
	c.once.Do(c.release)
	return c.Conn.Close()
}

func (s *server) shutdown(grace time.Duration) {
	s.cancelStreams()
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	_ = s.Shutdown(ctx)
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
	if url != DefaultAgentURL {
		agentFlag = " --agent " + url
	}
	if hasToken {
		fmt.Fprintf(w, "  clients need the token: export NSYS_AGENT_TOKEN=...\n")
	}
	if mode == nsys.ModeCudaProfiler {
		// The server opens its capture ranges at step boundaries: bound windows by steps.
		fmt.Fprintf(w, "  open a window:  nsys-agent start%s --steps 20\n", agentFlag)
	} else {
		fmt.Fprintf(w, "  open a window:  nsys-agent start%s --duration 5s\n", agentFlag)
	}
	fmt.Fprintf(w, "  close it:       nsys-agent stop%s\n", agentFlag)
	fmt.Fprintf(w, "  fetch reports:  nsys-agent pull%s latest --dir ./reports\n", agentFlag)
	fmt.Fprintf(w, "  Ctrl-C finishes the open window, stops the server and exits.\n\n")
}
