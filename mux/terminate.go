package mux

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/nexmux/nexmux/l7"
	"github.com/nexmux/nexmux/route"
)

// terminate is the target of routes served here: it ends TLS (unless the
// client spoke plain HTTP on a port route) and gives the connection to the
// HTTP stage through the server's chanListener.
type terminate struct{ s *Server }

var _ target = terminate{}

func (t terminate) serve(d decision) {
	defer t.s.routing.Add(-1) // handed to http.Server, or closed
	d.info.TLS = d.tls
	// The bytes routing read (the ClientHello, or a plain request's first
	// bytes) are handed out again first, as bytes read ahead.
	rc := &routedConn{Conn: d.conn, info: d.info, state: d.state}
	if len(d.prefix) > 0 {
		rc.rb, rc.rw = d.prefix, len(d.prefix)
	}
	var c net.Conn = rc
	// HTTP/1's --send-timeout, over TLS or not (HTTP/2 ignores it).
	d.info.Sends = (*sendDeadline)(rc)
	if d.tls {
		d.info.Writes = rc
		d.info.Reads = rc
		tc := tls.Server(rc, t.s.tlsConfig)
		if !t.handshake(tc, rc, d) {
			t.s.track.RemoveConn(d.raw)
			d.raw.Close()
			return
		}
		c = tc
	}
	lc := &liveConn{info: d.info, peer: d.peer, dialled: d.dialled}
	lc.idle.Store(true)
	tc, isTLS := c.(*tls.Conn)
	h2 := isTLS && tc.ConnectionState().NegotiatedProtocol == "h2"
	if !h2 {
		log := connLog{s: t.s, info: d.info, peer: d.peer}
		var h *h1Conn
		if isTLS {
			tlsh := newH1TLSConn(tc, log)
			h, c = &tlsh.h1Conn, tlsh
		} else {
			h = &h1Conn{Conn: c, log: log}
			c = h
		}
		setupRelease(&h.rel, d.raw, t.s.opts.IdleRelease)
		h.live = lc
	}
	lc.close = func() { c.Close() }
	if h2 {
		rc.lingerer = t.s
		rc.h2 = lc
		lc.close = func() { t.s.closeH2(lc, tc) }
		t.s.startH2Idle(lc)
		// net/http's HTTP/2 server has no header timeout: a connection
		// that never completes a request would stay until --idle-timeout.
		// Its first request's headers get --header-timeout, as HTTP/1's do.
		// The timer is stopped when the connection closes (connState): it
		// holds the connection.
		lc.headerTimer = time.AfterFunc(t.s.opts.HeaderTimeout, func() {
			if !d.info.Requested() {
				// Closed from this timer: the close_notify keeps its
				// deadline whatever net/http's writer sets (closeH2).
				rc.closing.Store(true)
				_ = c.Close()
			}
		})
	}
	t.s.live.addHTTP(c, lc)
	if t.s.revokedMeanwhile(d, lc) {
		t.s.connState(c, http.StateClosed)
		t.s.track.RemoveConn(d.raw)
		d.raw.Close()
		return
	}
	// From here on http.Server tracks and closes the connection.
	t.s.beginFresh(lc)
	handedOff := t.s.conns.put(c)
	t.s.track.RemoveConn(d.raw)
	if !handedOff {
		t.s.endFresh(lc)
		t.s.connState(c, http.StateClosed)
		d.raw.Close()
		return
	}
}

// handshake runs the TLS handshake here rather than in net/http, so that a
// failure (a client that rejects the certificate, an old protocol version,
// no common cipher or ALPN) is logged and counted like every other refusal
// instead of only at debug level. --header-timeout bounds it, as net/http
// would.
func (t terminate) handshake(tc *tls.Conn, rc *routedConn, d decision) bool {
	dl := time.Now().Add(t.s.opts.HeaderTimeout)
	_ = tc.SetDeadline(dl)
	rc.watch = &alertWatch{}
	err := tc.HandshakeContext(t.s.life)
	err, rc.watch = explainAbsolute(rc.watch.explain(err), d.absolute), nil
	if err == nil {
		_ = tc.SetDeadline(time.Time{})
		return true
	}
	log := &connLog{s: t.s, info: d.info, peer: d.peer}
	switch reason := reasonFor(err); reason {
	case ReasonClosed:
		// Probes that check the certificate and hang up.
		log.logger().Debug("connection closed during the TLS handshake", "reason", reason, "err", err)
		t.s.countRefused(reason)
	case ReasonTimeout:
		log.refuse(reason, "TLS handshake not finished before --header-timeout", "err", err)
	default:
		log.refuse(ReasonHandshake, "TLS handshake failed", "err", err)
	}
	return false
}

// certificate picks the certificate from the state the connection was
// accepted and routed under, so a reload before the handshake cannot mix
// tables, for the name it was routed by (sni's, "" for an IP address),
// so the peek and the certificate agree on what a name is.
func (s *Server) certificate(h *tls.ClientHelloInfo) (*tls.Certificate, error) {
	st := s.state.Load()
	name := h.ServerName
	if rc, ok := h.Conn.(*routedConn); ok {
		st, name = rc.state, rc.info.ServerName
	}
	if cert := st.Certs.For(h, certName(name)); cert != nil {
		return cert, nil
	}
	return nil, errors.New("no certificate configured")
}

// certName is the name a certificate is chosen by for a server name:
// canonical, or "" (the fallback) for an IP address, as routing has it,
// and for one with a colon, which is no host name and whose "port"
// CanonicalHost would cut off.
func certName(serverName string) string {
	if strings.IndexByte(serverName, ':') >= 0 || ipLike(serverName) {
		return ""
	}
	return route.CanonicalHost(serverName)
}

// connContext gives every request the routing decision of its connection.
func connContext(ctx context.Context, c net.Conn) context.Context {
	if hc, ok := c.(releasable); ok {
		ctx = context.WithValue(ctx, h1ConnKey{}, hc.h1())
	}
	// *tls.Conn, h1Conn and h1TLSConn all wrap the routed connection.
	for {
		u, ok := c.(interface{ NetConn() net.Conn })
		if !ok {
			break
		}
		c = u.NetConn()
	}
	if rc, ok := c.(*routedConn); ok {
		if rc.h2 != nil {
			ctx = context.WithValue(ctx, h2ConnKey{}, rc.h2)
		}
		return l7.NewContext(ctx, rc.info)
	}
	return ctx
}
