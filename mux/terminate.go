package mux

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"

	"github.com/nexmux/nexmux/l7"
	"github.com/nexmux/nexmux/route"
	"github.com/nexmux/nexmux/sni"
)

// terminate is the target of routes served here: it ends TLS (unless the
// client spoke plain HTTP on a port route) and gives the connection to the
// HTTP stage through the server's chanListener.
type terminate struct{ s *Server }

var _ target = terminate{}

func (t terminate) serve(d decision) {
	d.info.TLS = d.tls
	rc := &routedConn{Conn: sni.NewReplayConn(d.conn, d.prefix), info: d.info, state: d.state}
	var c net.Conn = rc
	if d.tls {
		d.info.Writes = rc
		d.info.Reads = rc
		c = tls.Server(rc, t.s.tlsConfig)
	}
	t.s.live.addHTTP(c, &liveConn{info: d.info, peer: d.peer, idle: true, close: func() { c.Close() }})
	// From here on http.Server tracks and closes the connection.
	handedOff := t.s.conns.put(c)
	t.s.track.RemoveConn(d.raw)
	if !handedOff {
		t.s.connState(c, http.StateClosed)
		d.raw.Close()
	}
}

// certificate picks the certificate from the state the connection was
// routed with, so a reload between routing and handshake cannot mix tables.
func (s *Server) certificate(h *tls.ClientHelloInfo) (*tls.Certificate, error) {
	st := s.state.Load()
	if rc, ok := h.Conn.(*routedConn); ok {
		st = rc.state
	}
	if cert := st.Certs.Get(route.CanonicalHost(h.ServerName)); cert != nil {
		return cert, nil
	}
	return nil, errors.New("no certificate configured")
}

// connContext gives every request the routing decision of its connection.
func connContext(ctx context.Context, c net.Conn) context.Context {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	if rc, ok := c.(*routedConn); ok {
		return l7.NewContext(ctx, rc.info)
	}
	return ctx
}
