//go:build unix

package mux_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/sys/unix"
)

// sockets records the server's side of each connection the TLS listener
// accepts.
type sockets struct {
	net.Listener
	accepted chan *net.TCPConn
}

func newSockets() *sockets { return &sockets{accepted: make(chan *net.TCPConn, 16)} }

func (l *sockets) wrap(ln net.Listener) net.Listener {
	l.Listener = ln
	return l
}

func (l *sockets) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		l.accepted <- tc
	}
	return c, err
}

func (l *sockets) next(t *testing.T) *net.TCPConn {
	t.Helper()
	select {
	case c := <-l.accepted:
		return c
	case <-time.After(10 * time.Second):
		t.Fatal("no connection accepted")
		return nil
	}
}

// fillSocket writes into c, the server's socket, behind TLS's back until
// it has taken no byte for a while: its client stopped reading, its
// receive window is shut and the send buffer is full, so a close_notify
// written now waits for the client (crypto/tls: up to 5 s). The client
// never reads what was written. Setting the buffer's size stops the kernel
// growing it.
func fillSocket(t *testing.T, c *net.TCPConn) {
	t.Helper()
	if err := c.SetWriteBuffer(64 << 10); err != nil {
		t.Fatal(err)
	}
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64<<10)
	deadline := time.Now().Add(10 * time.Second)
	// A socket that refused a write may take a small one a moment later
	// (the last segment has room, memory the socket reserves comes back):
	// it is full once it took nothing, down to single bytes, for 300 ms.
	for last := time.Now(); time.Since(last) < 300*time.Millisecond; time.Sleep(2 * time.Millisecond) {
		for size := len(buf); size > 0; size /= 4 {
			err := rc.Write(func(fd uintptr) bool {
				for {
					n, err := unix.Write(int(fd), buf[:size])
					if err != nil || n <= 0 {
						return true
					}
					last = time.Now()
				}
			})
			if err != nil {
				t.Fatal(err)
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("the socket kept taking bytes: is the client reading?")
		}
	}
}

// stalledClients opens n HTTP/1 TLS connections and sends path on each
// (path "" : one GET /v2/, whose response the client reads); then their
// clients stop reading and each server socket is filled.
func stalledClients(t *testing.T, m *muxServer, ls *sockets, n int, path string) {
	t.Helper()
	var socks []*net.TCPConn
	for range n {
		c := m.dialH1TLS(t)
		socks = append(socks, ls.next(t))
		if path == "" {
			servedOnce(t, c)
			continue
		}
		fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: team-a.nexmux.test\r\n\r\n", path)
		select {
		case <-m.begun:
		case <-time.After(10 * time.Second):
			t.Fatal("the request never reached the handler")
		}
	}
	for _, s := range socks {
		fillSocket(t, s)
	}
}

// stalledN is how many stalled clients each test has: closed one after the
// other, each waiting crypto/tls's 5 s for its close_notify, they take 20 s;
// closed without waiting on their clients, milliseconds. The tests allow
// 5 s, which no loaded machine needs.
const stalledN = 4

const stalledBound = 5 * time.Second

// A reload that revokes idle HTTP/1 connections whose clients stopped
// reading (window shut, send buffer full) ends them at once: the reload
// does not wait 5 s on each client's close_notify in turn, holding the
// connections behind it open that long.
func TestReloadClosesStalledClientsAtOnce(t *testing.T) {
	ls := newSockets()
	m := startMuxWith(t, muxConfig{idleRelease: -1, listener: ls.wrap})
	stalledClients(t, m, ls, stalledN, "")
	waitIdle(t, m.srv, 0, stalledN)

	st := revokingState(t, m.srv)
	start := time.Now()
	m.srv.Update(st)
	if took := time.Since(start); took > stalledBound {
		t.Fatalf("the reload revoking %d stalled clients took %v", stalledN, took)
	}
	waitIdle(t, m.srv, 0, 0)
}

// shutdownWithin runs Shutdown under a context of ctxTime and fails unless
// it returns within stalledBound. One that is still waiting on a client
// is left to end once the test's clients close.
func shutdownWithin(t *testing.T, m *muxServer, ctxTime time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), ctxTime)
	done := make(chan struct{})
	go func() {
		defer cancel()
		_ = m.srv.Shutdown(ctx)
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(stalledBound):
		t.Fatalf("Shutdown with %d stalled clients not done after %v", stalledN, stalledBound)
	}
}

// Shutdown closes idle connections (net/http's, and parked ones) whose
// clients stopped reading at once, not 5 s each one after the other.
func TestShutdownClosesStalledIdleClientsAtOnce(t *testing.T) {
	for _, tc := range []struct {
		name    string
		release time.Duration
		parked  int
	}{
		{"held by net/http", -1, 0},
		{"parked", 50 * time.Millisecond, stalledN},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ls := newSockets()
			m := startMuxWith(t, muxConfig{idleRelease: tc.release, listener: ls.wrap})
			stalledClients(t, m, ls, stalledN, "")
			waitIdle(t, m.srv, tc.parked, stalledN)
			shutdownWithin(t, m, 30*time.Second)
		})
	}
}

// When the drain gives up (its context ends), the connections still
// serving a request are closed at once, stalled clients' too. A handler
// that returns meanwhile (/until-gone gives up after 10 s) must not leave a
// close_notify waiting for good: net/http clears the write deadline after
// each response, crypto/tls's 5 s one included.
func TestShutdownTimeoutClosesStalledClientsAtOnce(t *testing.T) {
	ls := newSockets()
	m := startMuxWith(t, muxConfig{idleRelease: -1, listener: ls.wrap})
	stalledClients(t, m, ls, stalledN, "/until-gone")
	shutdownWithin(t, m, 500*time.Millisecond)
	for range stalledN {
		select {
		case <-m.gone:
		case <-time.After(10 * time.Second):
			t.Fatal("a request did not see its connection end")
		}
	}
}

// rawTail keeps the last bytes a TLS client read from its socket.
type rawTail struct {
	net.Conn
	tail []byte
}

func (c *rawTail) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.tail = append(c.tail, p[:n]...)
	if len(c.tail) > 64 {
		c.tail = c.tail[len(c.tail)-64:]
	}
	return n, err
}

// A revoked idle connection whose client reads still gets its
// close_notify: only a client with no room for it goes without.
func TestReloadSendsCloseNotifyToReadingClient(t *testing.T) {
	m := startMuxWith(t, muxConfig{idleRelease: -1})
	raw, err := net.Dial("tcp", m.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	rt := &rawTail{Conn: raw}
	cfg := m.tlsConfig("team-a.nexmux.test")
	// TLS 1.2 shows a record's type: an alert is 21, and AES-GCM's
	// close_notify record is 5+8+2+16 bytes.
	cfg.MaxVersion = tls.VersionTLS12
	cfg.CipherSuites = []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}
	cfg.NextProtos = []string{"http/1.1"}
	c := tls.Client(rt, cfg)
	servedOnce(t, c)
	waitIdle(t, m.srv, 0, 1)

	m.srv.Update(revokingState(t, m.srv))
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := c.Read(make([]byte, 16)); err != io.EOF {
		t.Fatalf("after the revocation the client read %d bytes, %v; want EOF", n, err)
	}
	if tl := rt.tail; len(tl) < 31 || tl[len(tl)-31] != 21 || tl[len(tl)-28] != 0 || tl[len(tl)-27] != 26 {
		t.Fatalf("the connection's last record is no close_notify: % x", tl)
	}
}

// A revoked idle HTTP/2 connection whose client stopped reading is closed
// within crypto/tls's 5 s for its close_notify, even when the client sends
// a frame meanwhile: net/http's HTTP/2 writer, under --send-timeout, sets
// a write deadline for its answer (which fails: the connection is closing)
// and then clears it, which took the close_notify's deadline with it, and
// the connection stayed open, holding its places, until the client read.
func TestRevokedStalledHTTP2ConnectionCloses(t *testing.T) {
	ls := newSockets()
	m := startMuxWith(t, muxConfig{maxConns: 10, sendTimeout: time.Minute, listener: ls.wrap})
	fr := stalledH2Client(t, m, ls)

	m.srv.Update(revokingState(t, m.srv))
	// The close (after h2FlushDelay) is waiting on its close_notify when
	// the client's PING comes.
	time.Sleep(300 * time.Millisecond)
	pingThenClosed(t, m, fr, "the revoked connection")
}

// The same for an HTTP/2 connection that never sent a request, closed by
// its --header-timeout timer: a PING while its close_notify waits on the
// stalled client must not clear that write's deadline.
func TestHeaderTimedOutStalledHTTP2ConnectionCloses(t *testing.T) {
	ls := newSockets()
	m := startMuxWith(t, muxConfig{maxConns: 10, sendTimeout: time.Minute, headerTimeout: 500 * time.Millisecond, listener: ls.wrap})
	fr := stalledH2Client(t, m, ls)
	// The header timer's close is waiting on its close_notify when the
	// client's PING comes.
	time.Sleep(800 * time.Millisecond)
	pingThenClosed(t, m, fr, "the timed-out connection")
}

// stalledH2Client opens an HTTP/2 connection to m for team-a, reads until
// the server has acknowledged its SETTINGS (it has nothing more to write),
// then stops reading and fills the server's socket (ls's next): the
// server's next write waits on the client.
func stalledH2Client(t *testing.T, m *muxServer, ls *sockets) *http2.Framer {
	t.Helper()
	cfg := m.tlsConfig("team-a.nexmux.test")
	cfg.NextProtos = []string{"h2"}
	c, err := tls.Dial("tcp", m.addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	sock := ls.next(t)
	if p := c.ConnectionState().NegotiatedProtocol; p != "h2" {
		t.Fatalf("negotiated %q, want h2", p)
	}
	if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(c, c)
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatal(err)
		}
		if sf, ok := f.(*http2.SettingsFrame); ok {
			if sf.IsAck() {
				break
			}
			if err := fr.WriteSettingsAck(); err != nil {
				t.Fatal(err)
			}
		}
	}
	fillSocket(t, sock)
	return fr
}

// pingThenClosed sends a PING on fr and waits, up to 10 s, for m to hold no
// connection (what names it in the failure).
func pingThenClosed(t *testing.T, m *muxServer, fr *http2.Framer, what string) {
	t.Helper()
	if err := fr.WritePing(false, [8]byte{1}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if active, _ := m.srv.OpenCounts(); active == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s is still open 10 s later", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
