package mux

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"syscall"
	"time"

	"github.com/pires/go-proxyproto"

	"github.com/nexmux/nexmux/internal/lograte"
	"github.com/nexmux/nexmux/internal/logtext"
	"github.com/nexmux/nexmux/internal/perclient"
	"github.com/nexmux/nexmux/l7"
	"github.com/nexmux/nexmux/sni"
)

// Reasons a connection is refused before HTTP (or, malformed_request, by
// net/http before any handler: its answer closes the connection): the
// reason attribute of the log line and the label of
// nexmux_handshake_failures_total.
const (
	ReasonNoSNI       = "no_sni"
	ReasonUnknownSNI  = "unknown_sni"
	ReasonMalformed   = "malformed_hello"
	ReasonTimeout     = "timeout"
	ReasonNotTLS      = "not_tls"
	ReasonNoPortRoute = "no_port_route"
	ReasonUpstream    = "passthrough_dial"
	ReasonProxyHeader = "proxy_header"
	ReasonClosed      = "closed"
	ReasonMaxConns    = "max_conns"
	ReasonHandshake   = "tls_handshake"
	// ReasonMalformedRequest: an HTTP/1 request net/http answered itself
	// (h1conn.go); it has no access line and no nexmux_requests_total.
	ReasonMalformedRequest = "malformed_request"
)

// Reasons are every reason mux refuses a connection for (the metric's
// label values, created at 0).
var Reasons = []string{ReasonNoSNI, ReasonUnknownSNI, ReasonMalformed, ReasonTimeout, ReasonNotTLS,
	ReasonNoPortRoute, ReasonUpstream, ReasonProxyHeader, ReasonClosed, ReasonMaxConns, ReasonHandshake, ReasonPerClient, ReasonMalformedRequest}

// A connection refused with a TLS alert or the plain-HTTP 400 reads on
// before it is closed: a close with unread bytes is a reset, and a client
// still writing its hello (one refused by its length alone) or its request
// body fails on that write and never reads the answer. The reading ends
// when the client closes, or at these bounds.
const (
	alertLingerTime  = time.Second
	alertLingerBytes = 64 << 10
	// A body is read whole within the time bound where it can be:
	// net/http's Transport (docker's) reports a failed body write, not the
	// early answer. The bytes bound only what one refusal copies.
	plainHTTPLingerBytes = 64 << 20
)

// refuseWithAlert sends alert a on c, then lingers (lingerRefused) for at
// most alertLingerBytes.
func refuseWithAlert(c, raw net.Conn, a sni.Alert, deadline time.Time) {
	defer countRefusing(raw)()
	if sni.WriteAlert(c, a) != nil {
		return
	}
	lingerOn(c, raw, deadline, alertLingerBytes)
}

// countRefusing counts raw's connection among the refused ones whose
// client's --max-conns-per-client slot can be reclaimed once the client
// has closed (refusing.reclaim), until the returned func. From before the
// refusal is written: a client that reads it, closes and retries at once
// must find the slot reclaimable, not held by a connection not yet counted.
func countRefusing(raw net.Conn) (done func()) {
	// raw is wrapped (countedConn) whenever a connection limit is set.
	if cc, ok := underlying[*countedConn](raw); ok && cc.clientSlot {
		cc.refusing.start(cc)
		return func() { cc.refusing.end(cc) }
	}
	return func() {}
}

// lingerRefused half-closes raw (the socket under c) so a client reading
// until the close is not kept waiting, and throws away what the client
// still sends until it closes, for at most alertLingerTime (less when
// deadline, unless zero, comes first: no longer than a silent connection
// is kept) and maxBytes. Shutdown's closing of tracked connections ends it.
func lingerRefused(c, raw net.Conn, deadline time.Time, maxBytes int64) {
	defer countRefusing(raw)()
	lingerOn(c, raw, deadline, maxBytes)
}

// lingerOn is lingerRefused for a connection countRefusing counts already.
func lingerOn(c, raw net.Conn, deadline time.Time, maxBytes int64) {
	if hc, ok := underlying[interface{ CloseWrite() error }](raw); ok {
		_ = hc.CloseWrite()
	}
	_ = c.SetReadDeadline(lingerEnd(deadline))
	_, _ = io.CopyN(io.Discard, c, maxBytes)
}

// LingerRefused is lingerRefused for a connection refused outside mux (a
// SOCKS5 session), with a TLS alert's bound on the bytes thrown away; c is
// not closed.
func LingerRefused(c, raw net.Conn, deadline time.Time) {
	lingerRefused(c, raw, deadline, alertLingerBytes)
}

// lingerEnd is when a refused connection's linger ends: alertLingerTime
// from now, or deadline (unless zero) if that comes first.
func lingerEnd(deadline time.Time) time.Time {
	if d := time.Now().Add(alertLingerTime); deadline.IsZero() || d.Before(deadline) {
		return d
	}
	return deadline
}

// connLog describes a connection for the one line written when it is
// refused.
type connLog struct {
	s    *Server
	info *l7.ConnInfo
	peer net.Addr // the load balancer, when a PROXY header named the client
}

func (l *connLog) logger() *slog.Logger {
	args := []any{"client", l.info.ClientString()}
	if l.peer != nil {
		args = append(args, "peer", l.peer.String())
	}
	if n := l.info.ServerName; n != "" {
		args = append(args, "sni", l7.ShortName(n))
	}
	return l.s.log.With(args...)
}

// refuse logs the connection's refusal and counts it.
func (l *connLog) refuse(reason, msg string, args ...any) {
	if ok, dropped := l.s.refusals.note(reason); ok {
		// Some errors quote what the client sent (crypto/tls's ALPN
		// mismatch names every protocol offered, up to a 16 KiB
		// ClientHello's worth, escaped).
		for i, a := range args {
			if err, isErr := a.(error); isErr && i%2 == 1 {
				args[i] = logtext.Bound(err.Error())
			}
		}
		args = lograte.Unlogged(append([]any{"reason", reason}, args...), dropped)
		l.logger().Info("connection refused: "+msg, args...)
	}
	l.s.countRefused(reason)
}

// refusalLog holds a line budget per refusal reason (lograte.RefusalLines
// a second each); read-only once made.
type refusalLog map[string]*lograte.Burst

func newRefusalLog() refusalLog {
	r := make(refusalLog, len(Reasons))
	for _, why := range Reasons {
		r[why] = &lograte.Burst{Max: lograte.RefusalLines}
	}
	return r
}

func (r refusalLog) note(reason string) (bool, int64) {
	if b := r[reason]; b != nil {
		return b.Note()
	}
	return true, 0
}

func (s *Server) countRefused(reason string) {
	if s.opts.Refused != nil {
		s.opts.Refused(reason)
	}
}

// refusedOverLimit counts a connection refused by --max-conns and logs at
// most one line a second: during a flood, a line per connection written from
// the accept loop would slow accepting exactly when it matters.
func (s *Server) refusedOverLimit() {
	s.countRefused(ReasonMaxConns)
	if ok, n := s.overLimit.Note(); ok {
		s.log.Info("connection refused: too many connections", "reason", ReasonMaxConns, "max_conns", s.opts.MaxConns, "refused", n)
	}
}

// refusedPerClient counts a connection refused by --max-conns-per-client
// in pool and logs at most one line a second, naming the client of the
// refusal it logs and how many there were: one address opening sockets in
// a loop must not become a line per socket. Where pool counts IPv6
// clients by prefix, the line names the prefix: the address itself may
// have no other connection open.
func (l *connLog) refusedPerClient(pool *perclient.Counter) {
	s := l.s
	s.countRefused(ReasonPerClient)
	if ok, n := s.perClient.Note(); ok {
		args := []any{"reason", ReasonPerClient, "max_conns_per_client", s.opts.MaxConnsPerClient, "refused", n}
		if p, ok := perclient.Prefix(l.info.Client.Addr(), pool.IPv6Prefix); ok {
			args = append(args, "prefix", p)
		}
		l.logger().Info("connection refused: "+msgPerClient, args...)
	}
}

// HeaderRefusal classifies a connection from a peer that must send a PROXY
// header and sent no valid one: nothing at all (a balancer's health check;
// AWS NLB's and HAProxy's send none unless told to) is ReasonClosed, or
// ReasonTimeout once deadline has passed, as from anyone else, and so is
// a read that failed as reasonFor says (a check closed with a reset);
// anything else is ReasonProxyHeader.
func HeaderRefusal(raw net.Conn, err error, deadline time.Time) string {
	if r := reasonFor(err); r == ReasonClosed || r == ReasonTimeout {
		return r
	}
	if errors.Is(err, proxyproto.ErrNoProxyProtocol) && receivedNothing(raw) {
		if !time.Now().Before(deadline) {
			return ReasonTimeout
		}
		return ReasonClosed
	}
	return ReasonProxyHeader
}

// HeaderRefusalText is the log message for a refusal HeaderRefusal gave
// reason: go-proxyproto reports a header the deadline cut short as a
// missing signature, so the deadline says which it was.
func HeaderRefusalText(reason string, deadline time.Time) string {
	switch {
	case reason != ReasonProxyHeader:
		return "nothing usable before the deadline"
	case !time.Now().Before(deadline):
		return "PROXY header not complete before the handshake timeout"
	}
	return "no valid PROXY header"
}

// reasonFor classifies an error from the routing phase.
func reasonFor(err error) string {
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		return ReasonTimeout
	case errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE), errors.Is(err, net.ErrClosed):
		// Health checks and scanners that connect and close (or reset).
		return ReasonClosed
	case errors.Is(err, sni.ErrNotTLS):
		return ReasonNotTLS
	case isProxyErr(err):
		return ReasonProxyHeader
	default:
		return ReasonMalformed
	}
}
