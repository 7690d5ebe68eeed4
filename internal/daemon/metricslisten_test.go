package daemon_test

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nexmux/nexmux/fixtures/stack"
	"github.com/nexmux/nexmux/internal/daemon"
)

// The metrics listener closes idle keep-alive connections, and /readyz
// answers a generic body while the log gets the reason.
func TestMetricsListenerIdleTimeoutAndGenericReadyz(t *testing.T) {
	cfg := teamRoutes()
	cfg.MetricsListen = "127.0.0.1:0" // the daemon binds it: no port another process can take first
	logs := &logBuffer{}
	st := stack.Start(t, stack.Options{Config: cfg, Logger: slog.New(slog.NewTextHandler(logs, nil)),
		Daemon: daemon.Options{MetricsIdleTimeout: 300 * time.Millisecond}})
	maddr := st.Daemon.Addr("metrics").String()

	c, err := net.Dial("tcp", maddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: m\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	// Idle now: the server must close it; 20 s is the "never" bound.
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	if _, err := br.ReadByte(); !errors.Is(err, io.EOF) {
		t.Fatalf("idle metrics connection not closed by the server: %v", err)
	}

	st.Nexus.SetDown(true)
	var body []byte
	waitFor(t, "/readyz to report Nexus down", func() bool {
		resp, err := http.Get("http://" + maddr + "/readyz")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		body, _ = io.ReadAll(resp.Body)
		return resp.StatusCode == http.StatusServiceUnavailable
	})
	nexusHost := strings.TrimPrefix(strings.TrimPrefix(st.NexusURL, "http://"), "https://")
	_, nexusPort, _ := net.SplitHostPort(strings.SplitN(nexusHost, "/", 2)[0])
	if bytes.Contains(body, []byte(nexusPort)) || bytes.Contains(body, []byte("127.0.0.1")) || bytes.Contains(body, []byte("status")) {
		t.Errorf("/readyz body tells Nexus's address or error: %q", body)
	}
	if !strings.Contains(logs.String(), "not ready") || !strings.Contains(logs.String(), nexusPort) {
		t.Errorf("the reason (with the node) is not logged:\n%s", logs.String())
	}
}

// A request body that never ends does not hold a metrics connection: none
// of its endpoints reads one, and net/http would wait for it without end
// before answering (it discards a small unread body first).
func TestMetricsListenerStalledBodyClosed(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for the metrics read timeout")
	}
	cfg := teamRoutes()
	cfg.MetricsListen = "127.0.0.1:0" // the daemon binds it: no port another process can take first
	st := stack.Start(t, stack.Options{Config: cfg, Daemon: daemon.Options{MetricsIdleTimeout: time.Hour}})
	maddr := st.Daemon.Addr("metrics").String()

	c, err := net.Dial("tcp", maddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "POST /healthz HTTP/1.1\r\nHost: m\r\nContent-Length: 100\r\n\r\nab"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	_, err = io.Copy(io.Discard, c)
	if err != nil {
		t.Fatalf("metrics connection with a stalled body still open after %v: %v", time.Since(start).Round(time.Second), err)
	}
}
