package mux_test

import (
	"crypto/tls"
	"io"
	"strings"
	"testing"
	"time"
)

// TestBogusHTTP2GreetingLogsNoSecret: a client that chooses h2 by ALPN
// and then sends an HTTP/1 request gets net/http's HTTP/2 server to log
// (at debug level) the first 24 bytes it sent, its request line. A query
// string's token, or a header after a short request line, is not logged;
// the method and path are, as in an access line.
func TestBogusHTTP2GreetingLogsNoSecret(t *testing.T) {
	for _, tc := range []struct {
		name, request, secret, kept string
	}{
		{"query string", "GET /v2/?access_token=SECRETTOKEN HTTP/1.1\r\nHost: team-a.nexmux.test\r\n\r\n", "access_token", `"GET /v2/"`},
		{"header after a short request line", "GET / HTTP/1.1\r\nX:SECRETS\r\n\r\n", "SECRET", `"GET /"`},
		// An absolute-form target's userinfo and host are no path: an
		// access line logs neither.
		{"absolute-form target", "GET http://u:SECRETPW@team-a.nexmux.test/v2/ HTTP/1.1\r\n\r\n", "SECRETPW", `"GET "`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := startMuxWith(t, muxConfig{debugLog: true})
			cfg := m.tlsConfig("team-a.nexmux.test")
			cfg.NextProtos = []string{"h2"}
			c, err := tls.Dial("tcp", m.addr, cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if p := c.ConnectionState().NegotiatedProtocol; p != "h2" {
				t.Fatalf("negotiated %q, want h2", p)
			}
			if _, err := io.WriteString(c, tc.request); err != nil {
				t.Fatal(err)
			}
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			io.Copy(io.Discard, c) // the server ends the connection
			eventually(t, func() (bool, string) {
				return strings.Contains(m.logs.String(), "bogus greeting"), "no bogus greeting line logged:\n" + m.logs.String()
			})
			logs := m.logs.String()
			if strings.Contains(logs, tc.secret) {
				t.Errorf("the log holds %q:\n%s", tc.secret, logs)
			}
			if !strings.Contains(logs, "bogus greeting "+strings.ReplaceAll(tc.kept, `"`, `\"`)) {
				t.Errorf("the log does not keep %s:\n%s", tc.kept, logs)
			}
		})
	}
}
