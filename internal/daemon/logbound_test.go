package daemon_test

import (
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nexmux/nexmux/fixtures/stack"
	"github.com/nexmux/nexmux/internal/testnet"
)

// maxLogLine is where log pipelines split a line (Docker's json-file
// driver, the CRI log format): a JSON line split there no longer parses.
const maxLogLine = 16 << 10

// Every line a request makes nexmux log stays under maxLogLine, whatever
// the length of the path the client sent: the access line cuts it at 1 KiB
// (README, Logs), and so must the warning that Nexus could not be reached.
func TestLogLinesOfALongPathStayBounded(t *testing.T) {
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadURL := "http://" + dead.Addr().String()
	dead.Close() // nothing listens: every request to Nexus fails to dial
	st, logs := logStackWith(t, stack.Options{Config: teamRoutes(), Upstreams: func(string) []string { return []string{deadURL} }})

	path := "/v2/" + strings.Repeat("a/", 20<<10) + "manifests/1"
	raw := "GET " + path + " HTTP/1.1\r\nHost: " + st.Host("team-a") + "\r\nConnection: close\r\n\r\n"
	res := rawExchange(st, "team-a.nexmux.test", []byte(raw), 1, http.MethodGet)
	if res.err != nil {
		t.Fatal(res.err)
	}
	if res.statuses[0] != http.StatusServiceUnavailable {
		t.Fatalf("status %d, want 503 (Nexus unreachable)", res.statuses[0])
	}
	waitLog(t, logs, "upstream request failed")
	for _, line := range strings.Split(logs.String(), "\n") {
		if len(line) > maxLogLine {
			t.Errorf("a log line of %d bytes: %.200s...", len(line), line)
		}
	}
}

// A TLS handshake that fails is logged with crypto/tls's error, which
// for an ALPN mismatch quotes every protocol the client offered: up to a
// whole 16 KiB ClientHello of them, escaped. The refusal line must stay
// under maxLogLine all the same.
func TestHandshakeRefusalOfAHugeALPNListStaysBounded(t *testing.T) {
	st, logs := logStack(t, teamRoutes())
	var protos []string
	for i := range 55 {
		protos = append(protos, strings.Repeat("\xff", 250)+strconv.Itoa(i))
	}
	c, err := net.DialTimeout("tcp", st.Addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	tc := tls.Client(c, &tls.Config{ServerName: "team-a.nexmux.test", RootCAs: st.Pool(), NextProtos: protos})
	if err := tc.Handshake(); err == nil || !strings.Contains(err.Error(), "no application protocol") {
		t.Fatalf("handshake: %v, want a no_application_protocol alert", err)
	}
	line := waitLog(t, logs, "TLS handshake failed")
	if len(line) > maxLogLine {
		t.Errorf("the refusal line has %d bytes: %.200s...", len(line), line)
	}
}

// Something at the --upstream address that answers with a 40 KB line that
// is no HTTP status line (another service on the port): net/http's error
// quotes the line, and that error is the access line's reason and the
// "upstream request failed" line's err. Both stay under maxLogLine.
func TestLogLinesOfAMalformedNexusAnswerStayBounded(t *testing.T) {
	ln := testnet.Listen(t)
	testnet.Serve(ln, func(c net.Conn) {
		_, _ = c.Read(make([]byte, 64<<10))
		_, _ = io.WriteString(c, "SSH-2.0-x "+strings.Repeat("A", 40<<10)+"\r\n")
	})
	cfg := teamRoutes()
	cfg.HealthInterval = 100 * time.Millisecond
	cfg.MetricsListen = "127.0.0.1:0"
	st, logs := logStackWith(t, stack.Options{Config: cfg, Upstreams: func(string) []string { return []string{"http://" + ln.Addr().String()} }})
	raw := "GET /v2/app/manifests/1 HTTP/1.1\r\nHost: " + st.Host("team-a") + "\r\nConnection: close\r\n\r\n"
	res := rawExchange(st, "team-a.nexmux.test", []byte(raw), 1, http.MethodGet)
	if res.err != nil {
		t.Fatal(res.err)
	}
	if res.statuses[0] < 500 {
		t.Fatalf("status %d, want a 5xx", res.statuses[0])
	}
	waitLog(t, logs, "msg=request", "/v2/app/manifests/1")
	// The probes (a lone node is probed for /readyz) quote the line too:
	// the node's state change, the readiness lines, the /readyz answer
	// and the node table's lastError.
	get := func(path string) []byte {
		resp, err := http.Get("http://" + st.Daemon.Addr("metrics").String() + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return b
	}
	for deadline := time.Now().Add(10 * time.Second); len(logLines(logs, "upstream node state", "to=down")) == 0; {
		if time.Now().After(deadline) {
			t.Fatal("the node was never probed down")
		}
		if b := get("/readyz"); len(b) > maxLogLine {
			t.Fatalf("/readyz answered %d bytes", len(b))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if b := get("/upstreams"); len(b) > maxLogLine {
		t.Errorf("/upstreams answered %d bytes", len(b))
	}
	for _, line := range strings.Split(logs.String(), "\n") {
		if len(line) > maxLogLine {
			t.Errorf("a log line of %d bytes: %.200s...", len(line), line)
		}
	}
}
