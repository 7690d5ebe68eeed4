package mux_test

import (
	"bytes"
	"strings"
	"testing"
	"time"
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
