package mux_test

import (
	"bytes"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nexmux/nexmux/mux"
)

// A PROXY header sent to a listener not told to expect one is refused as
// one however the balancer's first segment is cut: a first read of "P",
// "PRO" or part of the v2 signature was taken for the start of something
// else (not_tls, or a request net/http answered 400 on a port route).
func TestUnexpectedProxyHeaderCutRefusedAsOne(t *testing.T) {
	m := startMuxWith(t, muxConfig{ports: []string{"8082=team-p"}})
	v2 := "\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0c\xcb\x00\x71\x07\x7f\x00\x00\x01\x15\xb3\x1f\x92"
	for _, tc := range []struct {
		name, hdr string
		port      int
	}{
		{"v1 on the TLS listener", "PROXY TCP4 203.0.113.7 127.0.0.1 5555 443\r\n", 0},
		{"v2 on the TLS listener", v2, 0},
		{"v1 on a port route", "PROXY TCP4 203.0.113.7 127.0.0.1 5555 8082\r\n", 8082},
		{"v2 on a port route", v2, 8082},
	} {
		in := tc.hdr + "GET /v2/ HTTP/1.1\r\nHost: team-a.nexmux.test\r\n\r\n"
		for _, chunk := range []int{len(in), 1, 2, 3, 4, 5} {
			m.logs.Reset()
			before := m.refused.get("proxy_header")
			c := &memConn{in: []byte(in), chunk: chunk, closed: make(chan struct{})}
			done := make(chan error, 1)
			go func() { done <- m.srv.ServeConn(c, tc.port) }()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				t.Fatalf("%s cut in %d-byte reads: still routing after 10 s", tc.name, chunk)
			}
			select { // a port route's HTTP server answers after ServeConn
			case <-c.closed:
			case <-time.After(10 * time.Second):
				t.Fatalf("%s cut in %d-byte reads: still open after 10 s", tc.name, chunk)
			}
			// Counted, as lines are rate-limited.
			if out := c.written(); len(out) != 0 || m.refused.get("proxy_header") != before+1 {
				t.Errorf("%s cut in %d-byte reads: answered %q, logged:\n%s\nwant no answer and reason=proxy_header", tc.name, chunk, bytes.TrimSpace(out), strings.TrimSpace(m.logs.String()))
			}
		}
	}
}

// A trusted balancer whose connection carries a second PROXY header (two
// balancers in a row, each adding one) is refused as proxy_header, but the
// line must not send the operator to --proxy-protocol-from, which names
// that balancer already.
func TestSecondProxyHeaderFromTrustedPeer(t *testing.T) {
	m := startMux(t, []string{"127.0.0.0/8"}, "", 0)
	c, err := net.Dial("tcp", m.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "PROXY TCP4 203.0.113.7 127.0.0.1 5555 443\r\nPROXY TCP4 198.51.100.9 127.0.0.1 6666 443\r\n"); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if got, err := io.ReadAll(c); len(got) != 0 || err != nil {
		t.Fatalf("got %q back (%v), want the connection closed", got, err)
	}
	m.waitRefusal(t, "203.0.113.7:5555", mux.ReasonProxyHeader)
	for _, l := range strings.Split(m.logs.String(), "\n") {
		if strings.Contains(l, "client=203.0.113.7:5555 ") && (strings.Contains(l, "not told to expect") || !strings.Contains(l, "second")) {
			t.Errorf("a second header from a trusted balancer logged as\n%s\nwant a line saying a second PROXY header came", l)
		}
	}
}
