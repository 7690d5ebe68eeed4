package mux_test

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// gatedConn holds the client's second write (its TLS Finished) until
// release is closed, signalling reached when it gets there: the
// connection is routed and its handshake under way.
type gatedConn struct {
	net.Conn
	writes  int
	reached chan struct{}
	release chan struct{}
}

func (c *gatedConn) Write(p []byte) (int, error) {
	c.writes++
	if c.writes == 2 {
		close(c.reached)
		<-c.release
	}
	return c.Conn.Write(p)
}

// A reload that removes a route while one of its connections is still in
// its TLS handshake (not yet live, so revoke could not see it) ends that
// connection too: it is never served on the removed route.
func TestReloadRevokesConnectionInItsHandshake(t *testing.T) {
	m := startMux(t, nil, "", 0)
	raw, err := net.Dial("tcp", m.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	_ = raw.SetDeadline(time.Now().Add(10 * time.Second))
	gc := &gatedConn{Conn: raw, reached: make(chan struct{}), release: make(chan struct{})}
	tc := tls.Client(gc, &tls.Config{ServerName: "team-a.nexmux.test", RootCAs: m.ca.Pool(), NextProtos: []string{"http/1.1"}})
	done := make(chan error, 1)
	go func() { done <- tc.Handshake() }()
	select {
	case <-gc.reached:
	case err := <-done:
		t.Fatalf("handshake ended before the client's Finished: %v", err)
	}

	m.srv.Update(revokingState(t, m.srv))
	close(gc.release)

	if err := <-done; err == nil {
		fmt.Fprintf(tc, "GET / HTTP/1.1\r\nHost: team-a.nexmux.test\r\n\r\n")
		buf := make([]byte, 512)
		n, _ := tc.Read(buf)
		if strings.HasPrefix(string(buf[:n]), "HTTP/1.1 200") {
			t.Fatalf("served on the removed route:\n%s", buf[:n])
		}
	}
	if !strings.Contains(m.logs.String(), "connection revoked by reload") {
		t.Errorf("no revocation line:\n%s", m.logs.String())
	}
	waitIdle(t, m.srv, 0, 0)
}

// A reload that gives a name its own route moves that name's live
// connections too: one opened for x.nexmux.test while *.nexmux.test served
// it would otherwise keep sending x's pushes to the wildcard's repository
// while new connections go to x's own, splitting one push between the two.
func TestReloadRevokesConnectionWhoseNameMoved(t *testing.T) {
	m := startMux(t, nil, "", 0)
	st := *m.srv.State()
	tab, err := routeTable("team-a.nexmux.test=team-a", "*.nexmux.test=wild")
	if err != nil {
		t.Fatal(err)
	}
	st.Table = tab
	m.srv.Update(&st)

	cfg := m.tlsConfig("x.nexmux.test")
	cfg.NextProtos = []string{"http/1.1"}
	c, err := tls.Dial("tcp", m.addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: x.nexmux.test\r\n\r\n")
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if got := resp.Header.Get("X-Route"); got != "*.nexmux.test" {
		t.Fatalf("before the reload: route %q, want *.nexmux.test", got)
	}

	st2 := st
	if st2.Table, err = routeTable("team-a.nexmux.test=team-a", "*.nexmux.test=wild", "x.nexmux.test=team-x"); err != nil {
		t.Fatal(err)
	}
	m.srv.Update(&st2)

	// The idle connection ends; had it stayed, its next request would
	// still reach the wildcard's repository.
	fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: x.nexmux.test\r\n\r\n")
	if resp, err := http.ReadResponse(br, nil); err == nil {
		if got := resp.Header.Get("X-Route"); got == "*.nexmux.test" {
			t.Fatalf("after x.nexmux.test got its own route, its old connection still reaches %s", got)
		}
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("connection neither closed nor answered")
	}
}

// A reload logs every connection it revokes, one with a request in flight
// too (closed after that request, with in_flight=true), so the operator
// sees what it ended; and once: a later reload while the request still
// runs (the file watcher's, say) revokes nothing new and must not log it
// again.
func TestReloadLogsRevokedConnectionInFlight(t *testing.T) {
	m := startMux(t, nil, "", 0)
	c := m.dialH1TLS(t)
	fmt.Fprintf(c, "GET /until-gone HTTP/1.1\r\nHost: team-a.nexmux.test\r\n\r\n")
	select {
	case <-m.begun:
	case <-time.After(5 * time.Second):
		t.Fatal("the request never reached the handler")
	}
	for range 3 {
		m.srv.Update(revokingState(t, m.srv))
	}
	if logs := m.logs.String(); strings.Count(logs, "connection revoked by reload") != 1 || !strings.Contains(logs, "in_flight=true") {
		t.Errorf("want one revocation line, in_flight=true, over three reloads:\n%s", logs)
	}
}
