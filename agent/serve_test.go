package agent

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/nsys-agent/nsys-agent/agent/windows"
)

// TestIdleConnectionsAreClosed: a keep-alive connection left idle is closed by the agent
// (before, it was kept for ever, and enough of them locked the API out).
func TestIdleConnectionsAreClosed(t *testing.T) {
	saved := defaultLimits
	defaultLimits.idle, defaultLimits.header = 200*time.Millisecond, 200*time.Millisecond
	defer func() { defaultLimits = saved }()
	srv, url := serveEmpty(t, 8)
	defer srv.shutdown(time.Second)

	c, err := net.Dial("tcp", url)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("health: %v %v", resp, err)
	}
	io.Copy(io.Discard, resp.Body)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("an idle keep-alive connection should be closed by the server, got %v", err)
	}

	// A connection that never sends a request is closed too.
	silent, err := net.Dial("tcp", url)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	_ = silent.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := silent.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("a silent connection should be closed, got %v", err)
	}
}

// TestConnectionCapKeepsAPIReachable: beyond the cap new connections are closed at once,
// and the API answers again as soon as one is released.
func TestConnectionCapKeepsAPIReachable(t *testing.T) {
	srv, url := serveEmpty(t, 3)
	defer srv.shutdown(time.Second)
	var held []net.Conn
	for i := 0; i < 3; i++ {
		c, err := net.Dial("tcp", url)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	time.Sleep(50 * time.Millisecond) // let the server accept them
	extra, err := net.Dial("tcp", url)
	if err != nil {
		t.Fatal(err)
	}
	_ = extra.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := extra.Read(make([]byte, 1)); err == nil {
		t.Fatal("a connection beyond the cap should be closed")
	}
	extra.Close()
	held[0].Close()
	time.Sleep(50 * time.Millisecond)
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + url + "/v1/health")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("after a release the API answers: %v %v", resp, err)
	}
	resp.Body.Close()
	for _, c := range held[1:] {
		c.Close()
	}
}

func serveEmpty(t *testing.T, maxConns int) (*server, string) {
	t.Helper()
	store, err := windows.NewStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	reg, _ := windows.NewRegistry()
	mgr, err := windows.New(windows.Options{Store: store, Backends: reg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mgr.Close(t.Context()) })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := newServer(&daemon{Manager: mgr}, Config{}, NewMetrics(nil))
	go srv.Serve(capConns(ln, maxConns))
	return srv, ln.Addr().String()
}
