package mux_test

import (
	"bufio"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
)

// With --port-tls-only a port route answers plain HTTP with a JSON 400 and
// closes, and still serves TLS.
func TestPortTLSOnly(t *testing.T) {
	m := startMuxWith(t, muxConfig{ports: []string{"8082=team-p"}, portTLSOnly: true})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m.goServe(func() error { return m.srv.ServePort(ln, 8082) })

	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET /v2/ HTTP/1.1\r\nHost: nexus.example.com:8082\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), `"code":"UNSUPPORTED"`) || !resp.Close {
		t.Fatalf("plain HTTP on a TLS-only port: %d %q", resp.StatusCode, body)
	}
	m.waitRefusal(t, c.LocalAddr().String(), "not_tls")

	tc, err := tls.Dial("tcp", ln.Addr().String(), m.tlsConfig("team-a.nexmux.test"))
	if err != nil {
		t.Fatalf("TLS on the port: %v", err)
	}
	defer tc.Close()
	if _, rt, byPort := get(t, tc, "nexus.example.com:8082"); rt != ":8082" || byPort != "true" {
		t.Fatalf("TLS on the port: route %q by port %s", rt, byPort)
	}
}
