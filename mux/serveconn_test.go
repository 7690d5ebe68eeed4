package mux_test

import (
	"bufio"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/nexmux/nexmux/internal/testnet"
)

// get sends one HTTP/1.1 request over c and returns the response body and
// the route that served it.
func get(t *testing.T, c net.Conn, host string) (body, route, byPort string) {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, "GET /v2/ HTTP/1.1\r\nHost: "+host+"\r\nConnection: close\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b), resp.Header.Get("X-Route"), resp.Header.Get("X-By-Port")
}

// ServeConn routes a connection nexmux made itself (what the SOCKS5
// ingress hands over) like an accepted one: by server name, or by the
// port route it is given. It reads no PROXY header even where the peer's
// address would require one, and the connection's remote address is the
// client's.
func TestServeConn(t *testing.T) {
	m := startMuxWith(t, muxConfig{proxyFrom: []string{"127.0.0.0/8"}, ports: []string{"8082=team-p"}})
	for _, tc := range []struct {
		name       string
		port       int
		tls        bool
		wantRoute  string
		wantByPort string
	}{
		{"by server name", 0, true, "team-a.nexmux.test", "false"},
		{"port route, plain HTTP", 8082, false, ":8082", "true"},
		{"port route, TLS", 8082, true, ":8082", "true"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, s := testnet.Pair(t)
			done := make(chan error, 1)
			go func() { done <- m.srv.ServeConn(s, tc.port) }()
			var conn net.Conn = c
			want := c.LocalAddr().String() + "  false"
			if tc.tls {
				conn = tls.Client(c, m.tlsConfig("team-a.nexmux.test"))
				want = c.LocalAddr().String() + " team-a.nexmux.test true"
			}
			body, rt, byPort := get(t, conn, "team-a.nexmux.test")
			if body != want || rt != tc.wantRoute || byPort != tc.wantByPort {
				t.Fatalf("got %q from route %q (by port %s), want %q from %q (by port %s)", body, rt, byPort, want, tc.wantRoute, tc.wantByPort)
			}
			if err := <-done; err != nil {
				t.Fatalf("ServeConn: %v", err)
			}
		})
	}

	t.Run("after shutdown", func(t *testing.T) {
		m.shutdown()
		c, s := testnet.Pair(t)
		if err := m.srv.ServeConn(s, 0); !errors.Is(err, http.ErrServerClosed) {
			t.Fatalf("ServeConn after Shutdown: %v", err)
		}
		if got := readUntilClosed(t, c); len(got) != 0 {
			t.Fatalf("got %q", got)
		}
	})
}

// A legacy connector port may carry plain HTTP (behind a TLS-ending load
// balancer): it is served on the port's route, and not as TLS.
func TestServePortPlainHTTP(t *testing.T) {
	m := startMuxWith(t, muxConfig{ports: []string{"8082=team-p"}})
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
	body, rt, byPort := get(t, c, "nexus.example.com:8082")
	if want := c.LocalAddr().String() + "  false"; body != want || rt != ":8082" || byPort != "true" {
		t.Fatalf("got %q from route %q (by port %s), want %q from :8082 by port", body, rt, byPort, want)
	}
}
