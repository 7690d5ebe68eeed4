package mux

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/pires/go-proxyproto"

	"github.com/nexmux/nexmux/l7"
	"github.com/nexmux/nexmux/route"
	"github.com/nexmux/nexmux/sni"
)

// source says how a connection reached the server.
type source struct {
	// listenPort is the port of the listener that accepted it (0: none).
	listenPort int
	// boundPort, when set, is the connection's port route: the listener
	// is a legacy port (ServePort), or ServeConn was given one.
	boundPort int
	// inProcess marks streams nexmux made itself (ServeConn): no load
	// balancer stands in front of them and nothing redirected them.
	inProcess bool
	// asked is the port an in-process stream's client asked for
	// (ServeConnTo).
	asked int
	// state is the state at accept (nil: load it when routing begins),
	// and policy the peer's PROXY protocol policy in it (nil: none
	// configured, or in process).
	state  *State
	policy *peerPolicy
}

// A target serves a connection once routing has chosen its route, as in
// inetaf/tcpproxy's Route/Target split. serve owns the connection: it hands
// it on or closes it, and untracks it either way.
type target interface {
	serve(d decision)
}

// decision is the routing step's answer for one connection.
type decision struct {
	to     target
	tls    bool         // the client speaks TLS (else plain HTTP on a port route)
	conn   net.Conn     // the connection, past any PROXY header
	raw    net.Conn     // the accepted connection, as tracked
	prefix []byte       // every byte read while routing: replayed first
	info   *l7.ConnInfo // route, client, server name
	state  *State       // the snapshot the connection was accepted (and routed) under
	peer   net.Addr     // the load balancer, when a PROXY header named the client
	// extra is the --max-conns places held beside the connection's own
	// (a passthrough stream's), given back by its target.
	extra int64
	// absolute: the hello's server name ended in a dot (sni.ClientHello).
	absolute bool
	// dialled is what the connection said of the port its client dialled.
	dialled dialled
}

// handle routes one tracked connection and gives it to its target.
func (s *Server) handle(raw net.Conn, src source) {
	d, ok := s.decide(raw, src)
	if !ok {
		s.routing.Add(-1)
		s.track.RemoveConn(raw)
		raw.Close()
		return
	}
	s.routed(d.info.Route)
	if _, ok := d.to.(terminate); !ok {
		s.routing.Add(-1) // terminate counts down once http.Server has it
	}
	d.to.serve(d)
}

// decide is the routing ladder: PROXY header, first byte, port route, then
// the ClientHello's server name or the default route. It reads without
// losing a byte (decision.prefix) under one deadline, the handshake
// timeout. ok is false when the connection was refused: logged, counted,
// and told why with a TLS alert where the client speaks TLS.
func (s *Server) decide(raw net.Conn, src source) (d decision, ok bool) {
	// The state the connection was accepted under, whose PROXY policy
	// already counted it: a reload since then is caught by
	// revokedMeanwhile, as for one during routing.
	st := src.state
	if st == nil {
		st = s.state.Load()
	}
	c := raw
	headerNamesClient := src.policy.namesClient()
	if src.policy != nil && !src.inProcess {
		// One reader for the whole connection: the PROXY parser's buffered
		// read-ahead (which may hold ClientHello bytes) is drained by every
		// later read, so no byte is lost or reordered.
		c = proxyproto.NewConn(raw,
			proxyproto.WithPolicy(src.policy.p),
			proxyproto.ValidateHeader(ValidateProxyHeader),
			proxyproto.SetReadHeaderTimeout(s.opts.HandshakeTimeout))
	}
	info := &l7.ConnInfo{Table: st.Table, Client: addrPort(raw.RemoteAddr())}
	// The logger is only built when a line is written: most connections
	// are routed silently, and slog's With costs a dozen allocations.
	log := &connLog{s: s, info: info}
	// Unless a PROXY header is to name the client, the peer is the client:
	// its slot is taken before a byte is read, so silent connections from
	// one address cannot hold every --max-conns place for the routing
	// deadline.
	if !headerNamesClient && !s.clientSlotTaken(raw, info.Client.Addr()) {
		log.refusedPerClient(&s.clients)
		return d, false
	}
	deadline := time.Now().Add(s.opts.HandshakeTimeout)
	_ = c.SetReadDeadline(deadline)
	// A v2 LOCAL header is the balancer's own connection (a health
	// check), or (HAProxy) a client relayed from an address that is not
	// IP: it holds no slot of the balancer's address, which the clients
	// its headers name no IP for share, so checks neither refuse them nor
	// are refused for them, but one of the balancer's own pool, so LOCAL
	// connections cannot take every --max-conns place.
	local := false
	if pc, ok := c.(*proxyproto.Conn); ok && headerNamesClient {
		// A balancer sends the header at once: the client it names counts
		// from then, not from its complete hello, or one client's silent
		// connections could hold every --max-conns place until the
		// deadline. A failed header is refused below, by the first read.
		AwaitProxyLine(raw)
		if h := pc.ProxyHeader(); h != nil {
			local = BalancersOwn(h) // v2 LOCAL, not v1 UNKNOWN
			if a := addrPort(pc.RemoteAddr()); a.IsValid() {
				info.Client = a
			}
			log.peer = raw.RemoteAddr()
			if local && !s.balancerSlotTaken(raw, addrPort(raw.RemoteAddr()).Addr()) {
				log.refusedPerClient(&s.balancers)
				return d, false
			}
			if !local && !s.clientSlotTaken(raw, info.Client.Addr()) {
				log.refusedPerClient(&s.clients)
				return d, false
			}
		}
	}

	rr := newRoutingReader(c)
	var first [1]byte
	if _, err := io.ReadFull(rr, first[:]); err != nil {
		reason := reasonFor(err)
		if reason == ReasonProxyHeader {
			reason = HeaderRefusal(raw, err, deadline)
		}
		if reason == ReasonClosed {
			// Load-balancer health checks connect and close (after a
			// PROXY header, or without one): not worth an info line.
			log.logger().Debug("connection closed before sending anything", "reason", reason)
			s.countRefused(reason)
		} else {
			log.refuse(reason, HeaderRefusalText(reason, deadline), "err", err)
		}
		return d, false
	}
	if pc, ok := c.(*proxyproto.Conn); ok && pc.ProxyHeader() != nil {
		// A header naming no IP client (AF_UNIX) leaves the balancer as
		// the client, as LOCAL and UNKNOWN do: limits, logs and
		// X-Forwarded-For need an address.
		if a := addrPort(pc.RemoteAddr()); a.IsValid() {
			info.Client = a
		}
		log.peer = raw.RemoteAddr()
	}

	d = decision{conn: c, raw: raw, info: info, state: st, peer: log.peer}
	rt, ok := s.portRoute(log, st, c, &d, src)
	if !ok {
		return d, false
	}
	if first[0] != sni.RecordTypeHandshake {
		// A first segment may end inside "PATCH " or an SSLv2 header:
		// read on (same deadline) until the bytes say what this is.
		rr.fill(func(b []byte) bool { return undecided(b, rt == nil) })
		if sni.IsSSLv2Hello(rr.buf) {
			// An old client (or a scanner) offering SSLv2-compatible
			// framing: tell it the version is refused, as crypto/tls does.
			log.refuse(ReasonNotTLS, "SSLv2-format ClientHello", "first_byte", fmt.Sprintf("%#02x", first[0]))
			refuseWithAlert(c, raw, sni.AlertProtocolVersion, deadline)
			return d, false
		}
		if rt == nil && looksLikeHTTP(rr.buf) {
			// A registry client configured with http:// (or curl without
			// https) reads why, in the error format docker prints; an
			// h2c one, which cannot read that, in HTTP/2's terms.
			if isH2CPreface(rr) {
				log.refuse(ReasonNotTLS, "HTTP/2 without TLS (h2c) on the TLS listener")
				refuseH2C(c, raw, rr, deadline, h2cTLSOnlyGoAway)
				return d, false
			}
			log.refuse(ReasonNotTLS, "plain HTTP on the TLS listener", "first_byte", fmt.Sprintf("%#02x", first[0]))
			refusePlainHTTP(c, raw, deadline)
			return d, false
		}
		if isProxyHeader(rr) {
			if log.peer != nil {
				// Two balancers in a row, both adding a header: the
				// trusted one's was read, the flag is not the mistake.
				log.refuse(ReasonProxyHeader, "a second PROXY protocol header after the balancer's: only the balancer nexmux accepts from may send one")
				return d, false
			}
			// A balancer sending PROXY headers to a nexmux not told to
			// expect them: the usual mistake of setting one up.
			log.refuse(ReasonProxyHeader, "a PROXY protocol header nexmux was not told to expect: --proxy-protocol-from names the balancers that send one")
			return d, false
		}
		if rt == nil || rt.Passthrough != "" {
			msg := "neither TLS nor plain HTTP"
			if rt != nil {
				msg = "not TLS on a passthrough port route"
			}
			log.refuse(ReasonNotTLS, msg, "first_byte", fmt.Sprintf("%#02x", first[0]))
			return d, false
		}
		if isH2CPreface(rr) {
			if s.opts.PortTLSOnly {
				log.refuse(ReasonNotTLS, "HTTP/2 without TLS (h2c) on a port route with --port-tls-only")
				refuseH2C(c, raw, rr, deadline, h2cTLSOnlyGoAway)
			} else {
				log.refuse(ReasonNotTLS, "HTTP/2 without TLS (h2c) on a plain-HTTP port route")
				refuseH2C(c, raw, rr, deadline, h2cGoAway)
			}
			return d, false
		}
		if s.opts.PortTLSOnly {
			log.refuse(ReasonNotTLS, "plain HTTP on a port route with --port-tls-only", "first_byte", fmt.Sprintf("%#02x", first[0]))
			refusePlainHTTP(c, raw, deadline)
			return d, false
		}
		// Legacy connectors could be plain HTTP behind a TLS-ending
		// load balancer: serve HTTP on the same route.
		d.to = terminate{s}
	} else {
		rr.rewind() // the parser reads the hello from its first byte
		hello, err := sni.ReadClientHello(rr)
		if err != nil {
			reason := reasonFor(err)
			log.refuse(reason, "could not read the TLS ClientHello", "err", err)
			if reason == ReasonMalformed {
				refuseWithAlert(c, raw, sni.AlertDecodeError, deadline)
			}
			return d, false
		}
		info.ServerName = hello.ServerName
		if ipLike(info.ServerName) {
			// A server name may not be an IP address (RFC 6066): one that
			// is names no route, as no name does (nginx's default server
			// takes it likewise), and the HTTP stage sees no name either.
			info.ServerName = ""
		}
		if rt == nil {
			if rt = byName(log, st, info.ServerName); rt == nil {
				refuseWithAlert(c, raw, sni.AlertUnrecognizedName, deadline)
				return d, false
			}
		}
		d.tls, d.absolute = true, hello.Absolute
		d.to = terminate{s}
		if rt.Passthrough != "" {
			d.to = passthrough{s}
		}
	}
	// Behind a trusted balancer the client is known from its PROXY header
	// (a LOCAL connection holds its balancer's slot already).
	if !local && !s.clientSlotTaken(raw, info.Client.Addr()) {
		log.refusedPerClient(&s.clients)
		return d, false
	}
	// Before the route is counted: a stream refused here is a max_conns
	// refusal, as one refused at accept, not also a routed connection.
	if _, ok := d.to.(passthrough); ok && s.opts.MaxConns > 0 {
		if !s.takeStreamPlaces() {
			// The client waits for a ServerHello: say it failed on this side.
			refuseWithAlert(c, raw, sni.AlertInternalError, deadline)
			return d, false
		}
		d.extra = streamExtraPlaces
	}
	info.Route = rt
	info.Opened = time.Now()
	// Every byte read so far goes in front of the connection: the hello
	// and whatever the client sent behind it (TLS 1.3 early data, say).
	// An error that came with the last of them is not carried over: EOF
	// and resets recur on the socket, and the routing deadline is gone.
	d.prefix = rr.buf
	_ = c.SetReadDeadline(time.Time{})
	return d, true
}

// portRoute finds the route a connection has by port, if any: the port of
// the listener itself (--bind-ports), the port iptables redirected it from
// (SO_ORIGINAL_DST), or the destination port a trusted PROXY header names.
// A port route wins over SNI: legacy clients name the repository by port and
// send Nexus's old host name, which may well be some other route. ok is
// false when the connection was refused. d.dialled keeps what it read, for
// the reloads to come (dialled.port).
func (s *Server) portRoute(log *connLog, st *State, c net.Conn, d *decision, src source) (*route.Route, bool) {
	dl := dialled{bound: uint16(src.boundPort)}
	switch {
	case src.boundPort != 0:
	case src.inProcess:
		dl.named = uint16(src.asked)
	default:
		if pc, ok := c.(*proxyproto.Conn); ok && pc.ProxyHeader() != nil && !pc.ProxyHeader().Command.IsLocal() {
			// LOCAL (v2, or v1 UNKNOWN) names no destination: the spec
			// has its address block, if any, discarded.
			if _, dst, ok := pc.ProxyHeader().Ports(); ok {
				dl.named = uint16(dst)
			}
		}
		dl.listen = uint16(src.listenPort)
		if st.Table.HasPorts() {
			dl.redirected = redirectedFrom(c, src.listenPort)
		} else {
			// Without port routes there is nothing to look up: spare
			// every connection the getsockopt(SO_ORIGINAL_DST). A
			// reload that brings port routes reads it then.
			dl.unread = c
		}
	}
	d.dialled = dl
	port := dl.port(st.Table)
	if port == 0 {
		return nil, true
	}
	rt := st.Table.LookupPort(port)
	if rt == nil {
		log.refuse(ReasonNoPortRoute, "connection for a port with no --port route", "port", port)
		return nil, false
	}
	d.info.ByPort = true
	return rt, true
}

// dialled is what a connection says of the port its client dialled: all a
// reload needs to route it again as a new connection would be (revokedBy),
// so that a port given a route takes the connections open through it. A
// few bytes per connection, and no syscall unless the table at accept had
// no port routes and a reload brings some.
type dialled struct {
	// bound is the port route of a --bind-ports listener (or ServeConn's).
	bound uint16
	// redirected is the port iptables REDIRECTed the connection from (0:
	// none, or not read); named the destination port its PROXY header, or
	// its SOCKS5 CONNECT (ServeConnTo), names.
	redirected, named uint16
	// listen is the port of the listener that accepted it.
	listen uint16
	// unread, when set, is the connection whose SO_ORIGINAL_DST was not
	// read at accept (no port routes then).
	unread net.Conn
}

// port is the port whose route t gives the connection (0: none, route by
// name), as portRoute would choose it for a new connection: the listener's
// own port, then the redirected one, then the one named. A bound port
// is returned with or without a route: such a connection has no other.
func (dl *dialled) port(t *route.Table) int {
	if dl.bound != 0 {
		return int(dl.bound)
	}
	if !t.HasPorts() {
		return 0
	}
	redirected := dl.redirected
	if dl.unread != nil {
		redirected = redirectedFrom(dl.unread, int(dl.listen))
	}
	for _, p := range []uint16{redirected, dl.named} {
		if p != 0 && t.LookupPort(int(p)) != nil {
			return int(p)
		}
	}
	return 0
}

// redirectedFrom is the port iptables redirected c from to the listener on
// listenPort, or 0. A redirect from a port without a --port route (443 ->
// 8443 so nexmux needs no privilege) is the fan-in port itself: SNI
// decides.
func redirectedFrom(c net.Conn, listenPort int) uint16 {
	orig, err := OriginalDst(c)
	if err != nil || int(orig.Port()) == listenPort {
		return 0
	}
	return orig.Port()
}

// ipLike reports whether a server name is an IP address, an IPv6 one in
// brackets too (as a URL writes it: crypto/tls's client takes that for an
// address and sends no name). Host names end in a letter (their top-level
// label), so only a name ending in a digit, or holding a colon, is parsed:
// a parse error would cost an allocation per handshake.
func ipLike(name string) bool {
	if len(name) > 2 && name[0] == '[' && name[len(name)-1] == ']' {
		name = name[1 : len(name)-1]
	}
	if name == "" {
		return false
	}
	if last := name[len(name)-1]; (last < '0' || last > '9') && strings.IndexByte(name, ':') < 0 {
		return false
	}
	_, err := netip.ParseAddr(name)
	return err == nil
}

// byName finds the route for a server name, or for its absence the default
// route. nil means the connection was refused.
func byName(log *connLog, st *State, name string) *route.Route {
	if name == "" {
		rt := st.Table.Default()
		if rt == nil {
			log.refuse(ReasonNoSNI, "client sent no server name and there is no --default-route")
		}
		return rt
	}
	// A name that is no host name (bytes outside LDH, a port after it)
	// routes nowhere, as an unknown one: no wildcard takes it.
	rt := st.Table.LookupServerName(name)
	if rt == nil {
		log.refuse(ReasonUnknownSNI, "no route for server name")
	}
	return rt
}

func (s *Server) routed(rt *route.Route) {
	if s.opts.Routed != nil {
		s.opts.Routed(rt)
	}
}

func addrPort(a net.Addr) netip.AddrPort {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.AddrPort()
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap
}

// isProxyHeader reports whether the connection begins with a PROXY v1 or
// v2 signature, reading on (same deadline) while the bytes read so far
// are a part of one: a first segment may end inside it.
func isProxyHeader(rr *routingReader) bool {
	sigs := [][]byte{proxyproto.SIGV1, proxyproto.SIGV2}
	rr.fill(func(b []byte) bool {
		for _, sig := range sigs {
			if len(b) < len(sig) && bytes.HasPrefix(sig, b) {
				return true
			}
		}
		return false
	})
	return bytes.HasPrefix(rr.buf, proxyproto.SIGV1) || bytes.HasPrefix(rr.buf, proxyproto.SIGV2)
}
