package mux_test

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/nexmux/nexmux/internal/testnet"
	"github.com/nexmux/nexmux/mux"
	"github.com/nexmux/nexmux/route"
)

// keptConn is a keep-alive HTTP/1.1 connection to a test server.
type keptConn struct {
	c  net.Conn
	br *bufio.Reader
}

// get sends one request and returns the X-Route of its answer, or "" and
// the error when the connection gave none (closed by a revocation).
func (k keptConn) get(host string) (string, error) {
	if _, err := fmt.Fprintf(k.c, "GET / HTTP/1.1\r\nHost: %s\r\n\r\n", host); err != nil {
		return "", err
	}
	resp, err := http.ReadResponse(k.br, nil)
	if err != nil {
		return "", err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.Header.Get("X-Route"), nil
}

// dialKept opens a TLS connection to addr for serverName, writing header
// (a PROXY header) first, and sees it routed to want.
func dialKept(t *testing.T, m *muxServer, dial func() (net.Conn, error), header, serverName, want string) keptConn {
	t.Helper()
	raw, err := dial()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { raw.Close() })
	_ = raw.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(raw, header); err != nil {
		t.Fatal(err)
	}
	cfg := m.tlsConfig(serverName)
	cfg.NextProtos = []string{"http/1.1"}
	k := keptConn{c: tls.Client(raw, cfg)}
	k.br = bufio.NewReader(k.c)
	if got, err := k.get(serverName); err != nil || got != want {
		t.Fatalf("header %q, SNI %s: route %q (%v), want %q", header, serverName, got, err, want)
	}
	return k
}

// withPorts is srv's state with its routes and the port routes ports.
func withPorts(t *testing.T, srv *mux.Server, ports ...string) *mux.State {
	t.Helper()
	st := *srv.State()
	tab, err := route.Build(route.Spec{Routes: []string{"team-a.nexmux.test=team-a"}, Ports: ports})
	if err != nil {
		t.Fatal(err)
	}
	st.Table = tab
	return &st
}

// A reload that gives a port a route moves the connections already open
// through it, as it moves those of a name given a route of its own
// (TestReloadRevokesConnectionWhoseNameMoved): a connection whose PROXY
// header names port 8082, routed by its SNI while 8082 had no route, would
// otherwise go on sending a legacy client's pushes to the SNI route's
// repository while its new connections reach 8082's, one push split
// between two. So it is revoked; a connection for a port still without a
// route is not. With port routes at accept and without.
func TestReloadRevokesConnectionWhosePortGotARoute(t *testing.T) {
	for name, before := range map[string][]string{
		"no port route before":      nil,
		"another port route before": {"8083=team-q"},
	} {
		t.Run(name, func(t *testing.T) {
			m := startMuxWith(t, muxConfig{proxyFrom: []string{"127.0.0.0/8"}, ports: before})
			dial := func() (net.Conn, error) { return net.Dial("tcp", m.addr) }
			header := func(port int) string {
				return fmt.Sprintf("PROXY TCP4 203.0.113.9 127.0.0.1 5555 %d\r\n", port)
			}
			moved := dialKept(t, m, dial, header(8082), "team-a.nexmux.test", "team-a.nexmux.test")
			stays := dialKept(t, m, dial, header(8084), "team-a.nexmux.test", "team-a.nexmux.test")

			m.srv.Update(withPorts(t, m.srv, append([]string{"8082=team-p"}, before...)...))

			if got, err := moved.get("team-a.nexmux.test"); err == nil {
				t.Errorf("the connection through port 8082 is still served after 8082 got a route: route %q", got)
			}
			if got, err := stays.get("team-a.nexmux.test"); err != nil || got != "team-a.nexmux.test" {
				t.Errorf("the connection through port 8084 (no route): route %q (%v), want team-a.nexmux.test", got, err)
			}
			dialKept(t, m, dial, header(8082), "team-a.nexmux.test", ":8082")
		})
	}
}

// A passthrough stream is moved as a terminated connection is: one whose
// PROXY header names a port given a route is closed by the reload, one
// naming a port still without a route goes on.
func TestReloadRevokesPassthroughStreamWhosePortGotARoute(t *testing.T) {
	backend, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { backend.Close() })
	go func() {
		for {
			c, err := backend.Accept()
			if err != nil {
				return
			}
			// Holds the stream open, echoing what comes.
			go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
		}
	}()
	m := startMuxWith(t, muxConfig{proxyFrom: []string{"127.0.0.0/8"}, passthrough: backend.Addr().String()})
	open := func(port int) net.Conn {
		c, err := net.Dial("tcp", m.addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		hello := testnet.ClientHello(t, &tls.Config{ServerName: "pt.nexmux.test"})
		fmt.Fprintf(c, "PROXY TCP4 203.0.113.9 127.0.0.1 5555 %d\r\n%s", port, hello)
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.ReadFull(c, make([]byte, len(hello))); err != nil {
			t.Fatalf("port %d: the hello did not come back through the stream: %v", port, err)
		}
		return c
	}
	moved, stays := open(8082), open(8084)

	st := *m.srv.State()
	tab, err := route.Build(route.Spec{Routes: []string{"team-a.nexmux.test=team-a"}, Passthrough: []string{"pt.nexmux.test=" + backend.Addr().String()}, Ports: []string{"8082=team-p"}})
	if err != nil {
		t.Fatal(err)
	}
	st.Table = tab
	m.srv.Update(&st)

	var ne net.Error
	if n, err := moved.Read(make([]byte, 1)); err == nil || errors.As(err, &ne) && ne.Timeout() {
		t.Errorf("the stream through port 8082 is still open after 8082 got a route: read %d, %v", n, err)
	}
	if _, err := stays.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(stays, make([]byte, 1)); err != nil {
		t.Errorf("the stream through port 8084 (no route): %v", err)
	}
}
