package mux_test

import (
	"crypto/tls"
	"fmt"
	"net"
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

	st := *m.srv.State()
	tab, err := routeTable("team-b.nexmux.test=team-b")
	if err != nil {
		t.Fatal(err)
	}
	st.Table = tab
	m.srv.Update(&st)
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
