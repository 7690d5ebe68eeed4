package mux_test

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nexmux/nexmux/internal/testnet"
	"github.com/nexmux/nexmux/mux"
)

// fromConn is a connection nexmux made for the client at remote, as the
// SOCKS5 ingress presents its streams.
type fromConn struct {
	net.Conn
	remote net.Addr
}

func (c *fromConn) RemoteAddr() net.Addr { return c.remote }

// from returns the client end and, as client ip would be seen, the
// server end of a loopback connection.
func from(t *testing.T, ip string) (client, server net.Conn) {
	t.Helper()
	c, s := testnet.Pair(t)
	return c, &fromConn{Conn: s, remote: &net.TCPAddr{IP: net.ParseIP(ip).To4(), Port: 40000}}
}

// waitCounts waits until the server's limits hold exactly active places
// and clientSlots per-client slots.
func waitCounts(t *testing.T, srv *mux.Server, active int64, clientSlots int) {
	t.Helper()
	eventually(t, func() (bool, string) {
		a, c := srv.OpenCounts()
		return a == active && c == clientSlots, fmt.Sprintf("limits hold %d places and %d client slots, want %d and %d", a, c, active, clientSlots)
	})
}

// Admit counts a stream against --max-conns (two places: its socket pair
// is two descriptors more) and --max-conns-per-client before anything is
// promised to its client; ServeConn then serves it without counting it
// again, and every path gives the places back.
func TestAdmit(t *testing.T) {
	m := startMuxWith(t, muxConfig{maxConns: 4, maxConnsPerClient: 1})

	_, a1 := from(t, "10.0.0.1")
	admitted1, err := m.srv.Admit(a1, nil)
	if err != nil {
		t.Fatalf("first stream of 10.0.0.1: %v", err)
	}
	_, a2 := from(t, "10.0.0.1")
	if _, err := m.srv.Admit(a2, nil); !errors.Is(err, mux.ErrOverLimit) {
		t.Fatalf("second stream of 10.0.0.1: %v, want ErrOverLimit", err)
	}
	m.waitRefusal(t, "10.0.0.1:40000", mux.ReasonPerClient)
	_, b := from(t, "10.0.0.2")
	admitted2, err := m.srv.Admit(b, nil)
	if err != nil {
		t.Fatalf("first stream of 10.0.0.2: %v", err)
	}
	_, c := from(t, "10.0.0.3")
	if _, err := m.srv.Admit(c, nil); !errors.Is(err, mux.ErrOverLimit) {
		t.Fatalf("a third stream with --max-conns 4: %v, want ErrOverLimit", err)
	}
	if n := m.refused.get(mux.ReasonMaxConns); n != 1 {
		t.Fatalf("%d max_conns refusals counted, want 1", n)
	}
	// Admit logs on the caller's goroutine: the line is there already.
	if !strings.Contains(m.logs.String(), "too many connections") {
		t.Fatalf("no max_conns line:\n%s", m.logs.String())
	}
	waitCounts(t, m.srv, 4, 2)

	// Served at both limits: neither ServeConn nor routing counts an
	// admitted stream a second time (that would refuse it).
	t.Run("served without counting twice", func(t *testing.T) {
		cl, sv := from(t, "10.0.0.1")
		admitted1.Close() // a1 was never served; serve a fresh admitted one
		waitCounts(t, m.srv, 2, 1)
		admitted, err := m.srv.Admit(sv, nil)
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- m.srv.ServeConn(admitted, 0) }()
		tc := tls.Client(cl, m.tlsConfig("team-a.nexmux.test"))
		body, rt, _ := get(t, tc, "team-a.nexmux.test")
		if want := "10.0.0.1:40000 team-a.nexmux.test true"; body != want || rt != "team-a.nexmux.test" {
			t.Fatalf("got %q from route %q, want %q", body, rt, want)
		}
		if err := <-done; err != nil {
			t.Fatalf("ServeConn: %v", err)
		}
		if n := m.refused.get(mux.ReasonPerClient); n != 1 {
			t.Fatalf("%d per-client refusals, want only the one above", n)
		}
		tc.Close()
		waitCounts(t, m.srv, 2, 1) // admitted2 is still open
	})

	// Closed without being served, and served after Shutdown: the places
	// come back either way.
	admitted2.Close()
	admitted2.Close() // a second Close gives nothing back twice
	waitCounts(t, m.srv, 0, 0)
	_, d := from(t, "10.0.0.4")
	admitted, err := m.srv.Admit(d, nil)
	if err != nil {
		t.Fatal(err)
	}
	waitCounts(t, m.srv, 2, 1)
	m.shutdown()
	if err := m.srv.ServeConn(admitted, 0); !errors.Is(err, http.ErrServerClosed) {
		t.Fatalf("ServeConn after Shutdown: %v", err)
	}
	waitCounts(t, m.srv, 0, 0)
	_, e := from(t, "10.0.0.5")
	if _, err := m.srv.Admit(e, nil); !errors.Is(err, http.ErrServerClosed) {
		t.Fatalf("Admit after Shutdown: %v", err)
	}
	waitCounts(t, m.srv, 0, 0)
}

// A connection accepted directly still takes its client's slot at routing
// and gives both places back when it ends.
func TestDirectConnCountsReturnToZero(t *testing.T) {
	m := startMuxWith(t, muxConfig{maxConns: 4, maxConnsPerClient: 2})
	for range 3 {
		c, err := net.Dial("tcp", m.addr)
		if err != nil {
			t.Fatal(err)
		}
		tc := tls.Client(c, m.tlsConfig("team-a.nexmux.test"))
		if body, _, _ := get(t, tc, "team-a.nexmux.test"); !strings.HasPrefix(body, c.LocalAddr().String()) {
			t.Fatalf("got %q", body)
		}
		tc.Close()
	}
	waitCounts(t, m.srv, 0, 0)
}

// stubConn is a connection that only has addresses: Admit counts it, and
// closing it gives its places back without a socket.
type stubConn struct {
	net.Conn
	remote net.Addr
}

func (c stubConn) RemoteAddr() net.Addr { return c.remote }
func (c stubConn) Close() error         { return nil }

// A client refused by --max-conns-per-client takes no place under
// --max-conns, not even for a moment: another client that fits is never
// refused because someone over their own limit kept knocking.
func TestPerClientRefusalHoldsNoGlobalPlace(t *testing.T) {
	m := startMuxWith(t, muxConfig{maxConns: 4, maxConnsPerClient: 1}) // two streams' places
	x := stubConn{remote: &net.TCPAddr{IP: net.IPv4(10, 0, 0, 1), Port: 40000}}
	held, err := m.srv.Admit(x, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	stop := testnet.Hammer(4, func() bool {
		if _, err := m.srv.Admit(x, nil); !errors.Is(err, mux.ErrOverLimit) {
			t.Errorf("a second connection of 10.0.0.1: %v, want ErrOverLimit", err)
			return false
		}
		return true
	})
	y := stubConn{remote: &net.TCPAddr{IP: net.IPv4(10, 0, 0, 2), Port: 40000}}
	refused := 0
	for range 20000 {
		c, err := m.srv.Admit(y, nil)
		if err != nil {
			refused++
			continue
		}
		c.Close()
	}
	stop()
	if refused > 0 {
		t.Fatalf("10.0.0.2 refused %d times of 20000 with a place free: over-limit tries of 10.0.0.1 held it", refused)
	}
}

// The same holds for connections accepted on the listener: the client is
// known at accept (no PROXY header names another), so its own limit is
// checked before the shared count is raised.
func TestAcceptedPerClientRefusalHoldsNoGlobalPlace(t *testing.T) {
	m := startMuxWith(t, muxConfig{maxConns: 2, maxConnsPerClient: 1, handshakeTimeout: time.Minute})
	dialFrom := func(ip string) (net.Conn, error) {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
		return d.Dial("tcp", m.addr)
	}
	held, err := dialFrom("127.0.0.1") // silent: holds its places while routing waits
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	waitCounts(t, m.srv, 1, 1)
	stop := testnet.Hammer(4, func() bool {
		if c, err := dialFrom("127.0.0.1"); err == nil {
			c.Close()
		}
		return true
	})
	refused := 0
	for range 150 {
		c, err := dialFrom("127.0.0.2")
		if err != nil {
			t.Fatal(err)
		}
		tc := tls.Client(c, m.tlsConfig("team-a.nexmux.test"))
		_ = tc.SetDeadline(time.Now().Add(10 * time.Second))
		if err := tc.Handshake(); err != nil {
			refused++
		}
		tc.Close()
		waitCounts(t, m.srv, 1, 1)
	}
	stop()
	if refused > 0 {
		t.Fatalf("127.0.0.2 refused %d times of 150 with a place free: over-limit connections of 127.0.0.1 held it", refused)
	}
}

// A place taken ahead (a SOCKS5 session's, TakePlace) is handed to the
// stream Admit counts, which then holds two places in all, not three; a
// refused Admit leaves it held, and each place comes back exactly once,
// however often Release is called.
func TestAdmitTakesOverAPlace(t *testing.T) {
	m := startMuxWith(t, muxConfig{maxConns: 3})
	p1, p2 := m.srv.TakePlace(), m.srv.TakePlace()
	if p1 == nil || p2 == nil {
		t.Fatal("a place refused under --max-conns 3")
	}
	_, a := from(t, "10.0.0.1")
	admitted, err := m.srv.Admit(a, p1)
	if err != nil {
		t.Fatalf("a stream with its place held and one free: %v", err)
	}
	waitCounts(t, m.srv, 3, 0)
	p1.Release() // handed over: nothing to give back
	waitCounts(t, m.srv, 3, 0)
	if m.srv.TakePlace() != nil {
		t.Fatal("a place taken with --max-conns 3 full")
	}
	if n := m.refused.get(mux.ReasonMaxConns); n != 1 {
		t.Fatalf("%d max_conns refusals counted, want 1", n)
	}
	_, b := from(t, "10.0.0.2")
	if _, err := m.srv.Admit(b, p2); !errors.Is(err, mux.ErrOverLimit) {
		t.Fatalf("a second stream with no place free beside its own: %v, want ErrOverLimit", err)
	}
	waitCounts(t, m.srv, 3, 0) // p2 still held
	admitted.Close()
	admitted.Close()
	waitCounts(t, m.srv, 1, 0)
	p2.Release()
	p2.Release()
	waitCounts(t, m.srv, 0, 0)
	var none *mux.Place
	none.Release()
}
