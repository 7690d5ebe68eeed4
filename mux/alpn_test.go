package mux_test

import (
	"bufio"
	"crypto/tls"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// A client that offers only ALPN "http/1.0" (curl --http1.0) is served over
// HTTP/1, as it would be without ALPN; a protocol nexmux does not speak
// still gets the no_application_protocol alert.
func TestALPNHTTP10Served(t *testing.T) {
	m := startMuxWith(t, muxConfig{})
	cfg := m.tlsConfig("team-a.nexmux.test")
	cfg.NextProtos = []string{"http/1.0"}
	c, err := tls.Dial("tcp", m.addr, cfg)
	if err != nil {
		t.Fatalf("handshake offering only http/1.0: %v", err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, "GET /v2/ HTTP/1.0\r\nHost: team-a.nexmux.test\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || resp.Header.Get("X-Path") != "/v2/" || c.ConnectionState().NegotiatedProtocol != "http/1.0" {
		t.Fatalf("%d X-Path %q ALPN %q; want the handler's 200 over http/1.0", resp.StatusCode, resp.Header.Get("X-Path"), c.ConnectionState().NegotiatedProtocol)
	}
	cfg = m.tlsConfig("team-a.nexmux.test")
	cfg.NextProtos = []string{"spdy/3"}
	if c, err := tls.Dial("tcp", m.addr, cfg); err == nil || !strings.Contains(err.Error(), "no application protocol") {
		if c != nil {
			c.Close()
		}
		t.Fatalf("offering only spdy/3: %v, want the no_application_protocol alert", err)
	}
}
