// Package socks5 is nexmux's SOCKS5 ingress: a CONNECT to a name or port
// of the route table becomes a connection routed by mux, exactly as a
// direct one would be. It is a package of its own, beside mux rather than
// inside it, because it is one more way in, not part of routing: like
// caddy-l4's modules/l4socks, the protocol lives apart from the core, and
// it depends on mux (Server.Admit and ServeConn), never the other way round.
//
// armon/go-socks5 speaks the protocol; everything that makes a SOCKS server
// an open proxy is replaced here:
//   - its resolver does no DNS at all: a name is only ever looked up in the
//     route table, never resolved to an address;
//   - its rule set allows CONNECT only to what the route table serves (a
//     route name on the TLS port, or a legacy connector port with a port
//     route); BIND and UDP ASSOCIATE reach the library's own
//     "command not supported" reply;
//   - its dialer never opens a network connection: the CONNECT stream is
//     handed to mux over an in-process socket pair;
//   - deadlines bound the SOCKS handshake and idle streams, which the
//     library itself does not.
package socks5

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	gosocks5 "github.com/armon/go-socks5"
	"github.com/pires/go-proxyproto"

	"github.com/nexmux/nexmux/internal/conntrack"
	"github.com/nexmux/nexmux/internal/lograte"
	"github.com/nexmux/nexmux/internal/perclient"
	"github.com/nexmux/nexmux/mux"
)

// DefaultIdleTimeout closes a CONNECT stream that carried nothing either
// way for this long; a pull that waits on a slow Nexus stays well inside it.
const DefaultIdleTimeout = 5 * time.Minute

// ReasonDenied is the refusal reason of a CONNECT outside the route table,
// and of BIND and UDP ASSOCIATE (log attribute and metric label, beside
// mux's Reason* constants).
const ReasonDenied = "socks5_denied"

// ReasonAuth is the refusal reason of a failed SOCKS5 login: a wrong user
// or password, or a client throttled after too many.
const ReasonAuth = "socks5_auth"

// Options configures the ingress.
type Options struct {
	// Users, when set, requires username/password authentication; it is
	// asked at each login for the current users (user -> password), so a
	// reload can revoke one.
	Users func() map[string]string
	// SNIPorts are the CONNECT ports treated as the TLS fan-in port:
	// clients say "team.example.com:443" (or the --listen port).
	SNIPorts []int
	// HandshakeTimeout bounds the SOCKS negotiation (default
	// mux.DefaultHandshakeTimeout).
	HandshakeTimeout time.Duration
	// IdleTimeout closes a CONNECT stream with no traffic either way
	// (default DefaultIdleTimeout).
	IdleTimeout time.Duration
	Logger      *slog.Logger
	// Refused, when set, is told about each request refused (ReasonDenied:
	// a CONNECT outside the table, BIND, UDP ASSOCIATE), each failed login
	// (ReasonAuth) and each client refused at accept (ReasonPending).
	Refused func(reason string)
	// MaxPending and MaxPendingPerClient bound the sessions that carry no
	// stream yet (negotiating, or waiting for their CONNECT), in all and
	// per client address; beyond them a client is closed at accept (0: no
	// limit). Each such session also holds one of the router's --max-conns
	// places, which its stream takes over at CONNECT.
	MaxPending, MaxPendingPerClient int
	// PerClientIPv6Prefix counts IPv6 clients by this prefix length for
	// MaxPendingPerClient (0 or 128: each address).
	PerClientIPv6Prefix int
}

// Server accepts SOCKS5 clients and hands their CONNECT streams to a
// mux.Server.
type Server struct {
	router   *mux.Server
	opts     Options
	log      *slog.Logger
	sniPorts map[int]bool
	throttle loginThrottle // failed logins per client address
	// throttled keeps a client retrying while throttled from writing a
	// line per try.
	throttled lograte.Limiter
	// denied and authFailed bound refused sessions' lines: clients choose
	// how often they are refused, and the names logged. broken bounds the
	// lines of sessions that broke the protocol (a wrong version, an
	// unknown address type, a stall), and badHeader those of trusted
	// peers without a valid PROXY header: a client chooses how often
	// those happen too.
	denied, authFailed, broken, badHeader lograte.Burst

	// track holds the listeners and SOCKS clients; its goroutines are the
	// sessions and the streams they hand to router.
	track   conntrack.Tracker
	mu      sync.Mutex
	logins  map[*idleConn]login // clients' users (revoke.go)
	pending pending
}

// New returns an ingress that routes through router.
func New(router *mux.Server, o Options) *Server {
	if o.HandshakeTimeout <= 0 {
		o.HandshakeTimeout = mux.DefaultHandshakeTimeout
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = DefaultIdleTimeout
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	s := &Server{
		router:   router,
		opts:     o,
		log:      o.Logger,
		sniPorts: map[int]bool{},
	}
	s.denied.Max, s.authFailed.Max = lograte.RefusalLines, lograte.RefusalLines
	s.broken.Max, s.badHeader.Max = lograte.RefusalLines, lograte.RefusalLines
	s.pending.max, s.pending.by.Max, s.pending.balancers.Max = o.MaxPending, o.MaxPendingPerClient, o.MaxPendingPerClient
	s.pending.by.IPv6Prefix = o.PerClientIPv6Prefix
	s.throttle.ipv6Prefix = o.PerClientIPv6Prefix
	for _, p := range o.SNIPorts {
		s.sniPorts[p] = true
	}
	return s
}

// Serve accepts SOCKS5 clients on ln until Shutdown (then it returns nil).
func (s *Server) Serve(ln net.Listener) error {
	if !pairSupported {
		ln.Close()
		return errPairUnsupported
	}
	local, _ := ln.Addr().(*net.TCPAddr)
	if local == nil {
		local = &net.TCPAddr{}
	}
	if !s.track.AddListener(ln) {
		ln.Close()
		return nil
	}
	defer s.track.RemoveListener(ln)
	for {
		c, err := ln.Accept()
		if err != nil {
			if s.track.Closing() {
				return nil
			}
			if isTemporary(err) {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			return err
		}
		deadline := time.Now().Add(s.opts.HandshakeTimeout)
		_ = c.SetDeadline(deadline)
		// Unless a trusted balancer's PROXY header is to name the client,
		// the peer is the client, counted before a byte is read; a header
		// is read off the accept loop, with the shared place taken.
		pc, viaBalancer := s.fromBalancer(c)
		var conn net.Conn = c
		var slot *pendingSlot
		if viaBalancer {
			conn = pc
			if !s.pending.takeShared() {
				c.Close()
				s.refusedPending(addrOf(c.RemoteAddr()), nil)
				continue
			}
		} else {
			a := addrOf(c.RemoteAddr())
			ok, full := s.pending.take(a)
			if !ok {
				if f := refusedTake.Load(); f != nil {
					(*f)()
				}
				// At either limit, only a's own lingering sessions are
				// looked at: a client retrying after its refusal holds a
				// shared place with its own, and a scan of every client's
				// would cost each accept at the shared limit that many
				// syscalls. Taken again whatever reclaim found: the session
				// holding the place may have given it back itself meanwhile.
				s.pending.reclaim(a, false)
				ok, full = s.pending.take(a)
			}
			if !ok {
				c.Close()
				s.refusedPending(a, full)
				continue
			}
			slot = &pendingSlot{p: &s.pending, a: a}
		}
		// The session's socket is a descriptor: a --max-conns place from
		// accept, handed to its stream at CONNECT (mux refuses, logs and
		// counts it as max_conns when none is free).
		place := s.router.TakePlace()
		if place == nil {
			if slot != nil {
				slot.release()
			} else {
				s.pending.giveShared()
			}
			c.Close()
			continue
		}
		if slot != nil {
			slot.place = place
		}
		ic := &idleConn{Conn: conn, idle: s.opts.IdleTimeout}
		if !s.track.AddConn(ic) {
			if slot != nil {
				slot.release()
			} else {
				s.pending.giveShared()
				place.Release()
			}
			c.Close()
			continue
		}
		go func() {
			defer s.track.Done()
			defer s.untrackConn(ic)
			defer ic.Close()
			if slot == nil {
				if slot = s.headerClient(ic, c, pc, deadline, place); slot == nil {
					return
				}
			}
			ic.slot.Store(slot) // given back by ic.Close, deferred above
			ss := &session{s: s, client: ic, raw: c, local: local, pending: slot}
			s.serveSession(ss)
			s.lingerRefused(ss, deadline)
		}()
	}
}

// refusedTake is a seam for tests: when set, it runs in the accept loop
// between a client's take refused at a limit and the reclaim after it.
var refusedTake atomic.Pointer[func()]

// headerClient reads a trusted balancer's PROXY header and counts the
// session as the client it names, in place of the shared place taken at
// accept, with its --max-conns place; nil when refused (logged, counted,
// the shared place and place given back).
func (s *Server) headerClient(ic *idleConn, raw net.Conn, pc *proxyproto.Conn, deadline time.Time, place *mux.Place) *pendingSlot {
	// A zero-length read surfaces the header's error, once a v1 line
	// sent in pieces is whole.
	mux.AwaitProxyLine(raw)
	if _, err := pc.Read(nil); err != nil {
		s.pending.giveShared()
		place.Release()
		s.refusedHeader(raw, err, deadline)
		return nil
	}
	if a := pc.RemoteAddr(); !addrOf(a).IsValid() {
		// A header naming no IP client (AF_UNIX) leaves the balancer as
		// the client, as on the TLS listener.
		ic.remote = raw.RemoteAddr()
	} else if _, ok := a.(*net.TCPAddr); !ok {
		// An IP client of another family (UDP) is the client, as on the
		// TLS listener, given as the TCP address the stream has.
		ap, _ := netip.ParseAddrPort(a.String())
		ic.remote = net.TCPAddrFromAddrPort(ap)
	}
	a := addrOf(ic.RemoteAddr())
	if mux.BalancersOwn(pc.ProxyHeader()) {
		// A v2 LOCAL session (a health check, or HAProxy's client from an
		// address that is not IP; a v1 UNKNOWN one relays a client), as
		// on the TLS listener: no place of the balancer's address, which
		// the clients its headers name no IP for share, but one of the
		// balancer's own, so such sessions cannot hold every pending
		// place.
		if !s.pending.takeBalancer(a) && !s.pending.reclaimThen(a, true, s.pending.takeBalancer) {
			s.pending.giveShared()
			place.Release()
			s.refusedPending(a, &s.pending.balancers)
			return nil
		}
		return &pendingSlot{p: &s.pending, a: a, balancer: true, place: place}
	}
	if !s.pending.takeClient(a) && !s.pending.reclaimThen(a, false, s.pending.takeClient) {
		s.pending.giveShared()
		place.Release()
		s.refusedPending(a, &s.pending.by)
		return nil
	}
	return &pendingSlot{p: &s.pending, a: a, place: place}
}

// fromBalancer wraps c to read its PROXY header when the router's
// --proxy-protocol-from trusts its peer (the same ranges as the TLS
// listener's), so that SOCKS clients behind a balancer are told apart for
// limits, throttling and logs.
func (s *Server) fromBalancer(c net.Conn) (*proxyproto.Conn, bool) {
	pp := s.router.State().ProxyProtocol
	if pp == nil {
		return nil, false
	}
	policy := pp(c.RemoteAddr())
	if policy != proxyproto.REQUIRE && policy != proxyproto.USE {
		return nil, false
	}
	pc := proxyproto.NewConn(c, proxyproto.WithPolicy(policy), proxyproto.ValidateHeader(mux.ValidateProxyHeader), proxyproto.SetReadHeaderTimeout(s.opts.HandshakeTimeout))
	// Through the wrapper, which restores it after the header: one set on
	// c alone would be dropped there, leaving the handshake without one.
	_ = pc.SetDeadline(time.Now().Add(s.opts.HandshakeTimeout))
	return pc, true
}

// refusedHeader logs and counts a trusted peer's connection without a
// valid PROXY header, classified as on the TLS listener: one that sent
// nothing at all (a balancer's health check) is closed or timeout, and a
// close is logged at debug only.
func (s *Server) refusedHeader(raw net.Conn, err error, deadline time.Time) {
	reason := mux.HeaderRefusal(raw, err, deadline)
	if s.opts.Refused != nil {
		s.opts.Refused(reason)
	}
	if reason == mux.ReasonClosed {
		s.log.Debug("socks5: connection closed before sending anything", "peer", raw.RemoteAddr().String(), "reason", reason)
		return
	}
	ok, dropped := s.badHeader.Note()
	if !ok {
		return
	}
	args := []any{"peer", raw.RemoteAddr().String(), "reason", reason}
	msg := "socks5: connection refused: " + mux.HeaderRefusalText(reason, deadline)
	if reason != mux.ReasonTimeout {
		args = append(args, "err", err)
	}
	s.log.Info(msg, lograte.Unlogged(args, dropped)...)
}

// refusedPending counts a client closed at accept and logs it, at most one
// line a second. by is the count that refused it (nil: the shared one);
// where it counts IPv6 clients by prefix the line names the prefix, as the
// address itself may hold no session.
func (s *Server) refusedPending(a netip.Addr, by *perclient.Counter) {
	if s.opts.Refused != nil {
		s.opts.Refused(ReasonPending)
	}
	if log, n := s.pending.refusals.Note(); log {
		args := []any{"reason", ReasonPending, "client", a.String(), "max_pending", s.pending.max, "max_pending_per_client", s.pending.by.Max, "refused", n}
		if by != nil {
			if p, ok := perclient.Prefix(a, by.IPv6Prefix); ok {
				args = append(args, "prefix", p)
			}
		}
		s.log.Info("socks5: client refused: too many sessions without a stream yet", args...)
	}
}

// discard silences go-socks5's own log: failures are logged once, by
// serveSession, with the client's address.
var discard = log.New(io.Discard, "", 0)

// serveSession runs the protocol for one client. The library gets a
// config of its own per client, so its rule set and dialer know which
// client they act for without a lookup by address.
func (s *Server) serveSession(ss *session) {
	conf := &gosocks5.Config{
		Resolver: noDNS{},
		Rules:    ss,
		Dial:     ss.dial,
		Logger:   discard,
	}
	if s.opts.Users != nil {
		conf.Credentials = sessionUsers{ss: ss, addr: addrOf(ss.client.RemoteAddr())}
	}
	srv, err := gosocks5.New(conf)
	if err == nil {
		// The session closes the client itself (lingerRefused).
		err = srv.ServeConn(keepOpen{ss.client, ss})
	}
	// A refusal has its one line already (the rule set's, or the
	// router's, at most once a second over a limit), and a client nexmux
	// closed itself (its stream ended, its user revoked) ends the library
	// with a read error that is no news.
	if err != nil && !ss.logged {
		// A command SOCKS5 does not define: the library answers "command
		// not supported" without asking the rule set, so this is its
		// refusal, as for BIND and UDP ASSOCIATE.
		if _, cmd, ok := strings.Cut(err.Error(), "Unsupported command: "); ok {
			ss.refused("connection refused: socks5 command not supported", "command", cmd)
			return
		}
		// Logins are required and the client offered none: a failed
		// login too.
		if strings.HasSuffix(err.Error(), gosocks5.NoSupportedAuth.Error()) {
			ss.refusedAs(ReasonAuth, "socks5: login refused: the client offers no username/password login")
			return
		}
	}
	if err != nil && !errors.Is(err, io.EOF) && !ss.logged && !ss.client.ended.Load() {
		if clientReset(err) {
			// How many clients end a tunnel: no news.
			s.log.Debug("socks5: "+err.Error(), "client", ss.client.RemoteAddr().String())
			return
		}
		if ok, dropped := s.broken.Note(); ok {
			s.log.Info("socks5: "+err.Error(), lograte.Unlogged([]any{"client", ss.client.RemoteAddr().String()}, dropped)...)
		}
	}
}

// keepOpen keeps go-socks5 from closing the client when it returns, and
// counts a session as refused before the library writes its refusal.
type keepOpen struct {
	*idleConn
	ss *session
}

func (keepOpen) Close() error { return nil }

func (k keepOpen) Write(p []byte) (int, error) {
	if !k.ss.settled.Load() && refusalReply(p) {
		k.ss.refusing()
	}
	return k.idleConn.Write(p)
}

// refusalReply reports whether go-socks5 writing p to a session without a
// stream refuses it: all it writes then, but the method it chose and a
// login's success, is a refusal (a method, login or request failure).
func refusalReply(p []byte) bool {
	if len(p) == 2 {
		switch [2]byte(p) {
		case [2]byte{5, gosocks5.NoAuth}, [2]byte{5, gosocks5.UserPassAuth}, [2]byte{1, 0}:
			return false
		}
	}
	return true
}

// refusing counts the session among the lingering refused ones, once, its
// --max-conns place given back first: from before its refusal is written,
// as mux counts its own, so that a client that reads the refusal, closes
// and retries at once finds its places free or reclaimable.
func (ss *session) refusing() {
	if !ss.settled.CompareAndSwap(false, true) {
		return
	}
	if slot := ss.client.slot.Load(); slot != nil {
		slot.place.Release()
		ss.s.pending.lingerStart(slot, ss.raw)
	}
}

// lingerRefused half-closes a session that ended without a stream (a
// refusal: bad greeting, failed login, refused or unsupported request) and
// reads on, bounded as mux bounds its own refusals, before the deferred
// close: closed with bytes the client pipelined still unread, the socket
// would send a reset, which can overtake the reply and make the client's
// kernel drop it. It counts as refused (refusing) from before its reply,
// or from here when it wrote none: its --max-conns place is given back,
// and its pending slot is held until the close, or until its client is
// found to have closed its side (pending.reclaim), so lingering sessions
// count against MaxPending and MaxPendingPerClient. Shutdown's closing of
// the client ends the wait.
func (s *Server) lingerRefused(ss *session, deadline time.Time) {
	ic := ss.client
	if ic.isOpen() {
		return
	}
	if !ic.ended.Load() {
		if f := refusalWritten.Load(); f != nil {
			(*f)()
		}
		ss.refusing()
		mux.LingerRefused(ic, ss.raw, deadline)
	}
	if slot := ic.slot.Load(); slot != nil {
		// Given back before the session leaves the lingering ones: a
		// client retrying meanwhile finds its place free, or reclaimable.
		slot.release()
		s.pending.lingerEnd(slot)
	}
}

// refusalWritten is a seam for tests: when set, it runs on a session that
// ended without a stream (its refusal written, if any) before it lingers.
var refusalWritten atomic.Pointer[func()]

// clientReset reports a session ended by a reset or a closed pipe. The
// library formats its errors with %v, so the text is all there is.
func clientReset(err error) bool {
	if errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) {
		return true
	}
	msg := err.Error()
	return strings.HasSuffix(msg, syscall.ECONNRESET.Error()) || strings.HasSuffix(msg, syscall.EPIPE.Error())
}

// session is one SOCKS client: the library's rule set and dialer for it.
type session struct {
	s      *Server
	client *idleConn
	raw    net.Conn     // the client's socket, under any PROXY header
	local  *net.TCPAddr // the SOCKS listener's address
	// settled: the session has its stream, or counts as refused
	// (refusing); until then its writes are checked for a refusal.
	settled atomic.Bool
	// logged: the session's refusal has its line (refused, or the router
	// refused its stream over a limit).
	logged bool
	// pending is the session's place among those without a stream.
	pending *pendingSlot
	// user is who the client logged in as (nil without --socks5-auth-file).
	user *login
}

// decision is what the rule set allowed, for the dialer.
type decision struct {
	port int // port route, or 0 for SNI routing
	// asked is the CONNECT's port: a reload that gives it a port route
	// moves a stream routed by name (mux.ServeConnTo).
	asked int
}

type decisionKey struct{}

// Allow implements gosocks5.RuleSet: CONNECT only into the route table.
func (ss *session) Allow(ctx context.Context, req *gosocks5.Request) (context.Context, bool) {
	if !ss.s.noteLogin(ss) {
		ss.refused("connection refused: socks5 user revoked by reload since its login")
		return ctx, false
	}
	if req.Command != gosocks5.ConnectCommand {
		// Allowed through to the library, which answers "command not
		// supported" for BIND and UDP ASSOCIATE and ends the session
		// without an error: this is the refusal's line.
		ss.refused("connection refused: socks5 command not supported", "command", commandNames[req.Command])
		return ctx, req.Command == gosocks5.BindCommand || req.Command == gosocks5.AssociateCommand
	}
	d, ok := ss.s.lookup(req.DestAddr)
	if !ok {
		ss.refused("connection refused: socks5 CONNECT outside the route table", "connect", requested(req.DestAddr))
		return ctx, false
	}
	return context.WithValue(ctx, decisionKey{}, d), true
}

var commandNames = map[uint8]string{gosocks5.BindCommand: "bind", gosocks5.AssociateCommand: "udp_associate"}

// refused logs a request the rule set refuses, with ReasonDenied, and
// counts it.
func (ss *session) refused(msg string, args ...any) {
	ss.refusedAs(ReasonDenied, msg, args...)
}

// refusedAs logs a refusal of the session with its reason and counts it.
func (ss *session) refusedAs(reason, msg string, args ...any) {
	ss.logged = true
	b := &ss.s.denied
	if reason == ReasonAuth {
		b = &ss.s.authFailed
	}
	if ok, dropped := b.Note(); ok {
		args = lograte.Unlogged(append(args, "reason", reason), dropped)
		ss.s.log.Info(msg, append([]any{"client", ss.client.RemoteAddr().String()}, args...)...)
	}
	if ss.s.opts.Refused != nil {
		ss.s.opts.Refused(reason)
	}
}

// requested is the destination as the client asked for it: the name of a
// name request (noDNS set its IP to a placeholder), or the IP literal.
func requested(dest *gosocks5.AddrSpec) string {
	host := destName(dest)
	if host == "" && len(dest.IP) != 0 {
		host = dest.IP.String()
	}
	return net.JoinHostPort(host, strconv.Itoa(dest.Port))
}

// destName is the name of a name request, an IPv6 literal unbracketed: a
// client that writes it as a URL does ("[::1]") means the address, and
// JoinHostPort would bracket it again.
func destName(dest *gosocks5.AddrSpec) string {
	h := dest.FQDN
	if len(h) > 2 && h[0] == '[' && h[len(h)-1] == ']' {
		if a, err := netip.ParseAddr(h[1 : len(h)-1]); err == nil && a.Is6() {
			return h[1 : len(h)-1]
		}
	}
	return h
}

// lookup maps a CONNECT destination onto the route table the way a direct
// connection would be routed. Nothing is resolved or dialled by name.
func (s *Server) lookup(dest *gosocks5.AddrSpec) (decision, bool) {
	t := s.router.State().Table
	// An IP literal sent as a name (ATYP 3: clients that leave every
	// name to the proxy) is the address it spells, as in ATYP 1 and 4.
	host := destName(dest)
	// One trailing dot goes, as the router drops it from a server name:
	// "127.0.0.1." is then the address, as it is there. A zone names an
	// interface of the client's host, which no SOCKS address carries: with
	// one, the name is no IP literal (and, with its "%", no host name).
	a, err := netip.ParseAddr(strings.TrimSuffix(host, "."))
	isIP := err == nil && a.Zone() == "" || host == "" && len(dest.IP) != 0
	switch {
	case t.LookupPort(dest.Port) != nil:
		// A legacy connector port: the port names the repository,
		// whatever host the client used.
		return decision{port: dest.Port, asked: dest.Port}, true
	case s.sniPorts[dest.Port] && !isIP && host != "" && t.LookupServerName(host) != nil:
		// A name, not a Host header: a ":port" behind it is no host name
		// (LookupHost would drop it).
		return decision{asked: dest.Port}, true
	case s.sniPorts[dest.Port] && isIP && t.Default() != nil:
		// An IP literal lands where a direct IP-literal client would; an
		// empty name (no IP either) is no destination.
		return decision{asked: dest.Port}, true
	}
	return decision{}, false
}

// dial hands the CONNECT stream to the router through a socket pair: a
// real kernel socket on both ends, so TLS and large transfers behave as on
// TCP, and no network connection is ever opened. The stream is counted
// against the router's connection limits before go-socks5 sends its reply,
// so a client over a limit is refused in SOCKS and never told "succeeded".
func (ss *session) dial(ctx context.Context, _, addr string) (net.Conn, error) {
	d, ok := ctx.Value(decisionKey{}).(decision)
	if f := dialed.Load(); f != nil {
		(*f)(ss.client.RemoteAddr(), addr, d.port, ok)
	}
	if !ok {
		return nil, errors.New("socks5: no routing decision")
	}
	// The router sees the SOCKS client's address, for limits, logs,
	// X-Forwarded-For and metrics. Its socket pair is made once admitted:
	// a CONNECT over the limit never holds descriptors it has no place for.
	routed := &pairEnd{local: ss.dst(), remote: ss.client.RemoteAddr()}
	admit := ss.s.router.Admit
	if ss.pending.balancer {
		// A LOCAL session's stream is the balancer's own, as on the
		// TLS listener: not a client slot of the balancer's address.
		admit = ss.s.router.AdmitBalancersOwn
	}
	// The session's place is handed to the stream: two places in all.
	inner, err := admit(routed, ss.pending.place)
	if err != nil {
		if errors.Is(err, mux.ErrOverLimit) {
			ss.logged = true
			// go-socks5 replies "connection refused" (REP 5) to a dial
			// error that says "refused": what a client reads as "not now",
			// unlike "not allowed by ruleset" or "host unreachable".
			return nil, fmt.Errorf("socks5: connection refused: %w", err)
		}
		return nil, err
	}
	ours, theirs, err := socketPair()
	if err != nil {
		inner.Close() // its places; routed has no socket yet
		return nil, err
	}
	routed.Conn = theirs
	ss.client.established()
	ss.settled.Store(true)
	ss.pending.release() // the router counts the stream from here, its place included
	// When the router has closed its end, the client connection is
	// closed too: the library would otherwise wait for the client to
	// speak again, keeping a dead stream (and a drain) open. A half-close
	// is passed on as one, as on a direct connection.
	end := &streamEnd{client: ss.client}
	routed.onClose = end.routerClosed
	routed.unacked = end.unacked(theirs)
	// A reset goes through the pair as a direct connection passes it:
	// either way.
	routed.onAbort = end.aborted
	routed.client, routed.onCut = ss.client.Conn, end.cut
	routed.clientReset = new(atomic.Bool)
	ss.client.onReset = func() { routed.clientReset.Store(true) }
	if !ss.s.route(inner, d) {
		ours.Close()
		inner.Close()
		return nil, errors.New("socks5: shutting down")
	}
	// go-socks5 reports LocalAddr as the bound address and requires a
	// *net.TCPAddr there.
	return &pairEnd{Conn: ours, local: ss.local, remote: ss.local, onEOF: end.eofRead}, nil
}

// dialed is a seam for tests: when set, it is told of each dial go-socks5
// asks of a session, before anything is admitted: the client, the address
// go-socks5 dials, the routing decision's port and whether there was one.
var dialed atomic.Pointer[func(client net.Addr, addr string, port int, decided bool)]

// dst is the address the client reached nexmux at, as a direct connection
// has it: its socket's own, or the destination its balancer's PROXY header
// names; the listener's address (a wildcard, often) only when neither is
// TCP. The router's stream has it: a PROXY header to a passthrough
// backend names it as the destination.
func (ss *session) dst() *net.TCPAddr {
	c := ss.client.Conn
	if a, ok := c.LocalAddr().(*net.TCPAddr); ok {
		return a
	}
	if pc, ok := c.(*proxyproto.Conn); ok {
		if a, ok := pc.Raw().LocalAddr().(*net.TCPAddr); ok {
			return a
		}
	}
	return ss.local
}

// route gives c to the router on a goroutine of its own, counted by wg so
// that Shutdown waits for it.
func (s *Server) route(c net.Conn, d decision) bool {
	if !s.track.Go() {
		return false
	}
	go func() {
		defer s.track.Done()
		_ = s.router.ServeConnTo(c, d.port, d.asked) // it owns and closes c
	}()
	return true
}

// users checks SOCKS logins against the current users.
type users func() map[string]string

func (u users) Valid(user, password string) bool {
	want, ok := u()[user]
	return ok && subtle.ConstantTimeCompare([]byte(want), []byte(password)) == 1
}

// noDNS never resolves: names stay names and are matched against the route
// table by the rule set. 0.0.0.0 is a placeholder nothing ever dials.
type noDNS struct{}

func (noDNS) Resolve(ctx context.Context, _ string) (context.Context, net.IP, error) {
	return ctx, net.IPv4zero, nil
}

var (
	_ gosocks5.RuleSet         = (*session)(nil)
	_ gosocks5.CredentialStore = users(nil)
	_ gosocks5.NameResolver    = noDNS{}
)

func isTemporary(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

// untrackConn forgets a client and its login.
func (s *Server) untrackConn(c *idleConn) {
	s.track.RemoveConn(c)
	s.mu.Lock()
	delete(s.logins, c)
	s.mu.Unlock()
}

// Shutdown stops accepting and lets SOCKS streams finish until ctx ends,
// then closes the clients left. Run it beside the router's Shutdown: the
// streams end when the router closes their routed side.
func (s *Server) Shutdown(ctx context.Context) error {
	s.track.Close()
	// A session still negotiating or waiting for its CONNECT carries
	// nothing, and the router takes no stream once draining: closed now,
	// it does not hold the drain until its handshake deadline.
	s.track.EachConn(func(c net.Conn) {
		if ic, ok := c.(*idleConn); ok && !ic.isOpen() {
			ic.end()
		}
	})
	done := s.track.Idle()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
	}
	// The router's drain ends at the same time and closes the streams'
	// routed side, after answering what it cut (a 503): closing the
	// clients here at once would lose that. They are ended (no log line)
	// only if the router's close has not come through within cutGrace.
	t := time.NewTimer(cutGrace)
	select {
	case <-done:
	case <-t.C:
	}
	t.Stop()
	s.track.EachConn(func(c net.Conn) {
		if ic, ok := c.(*idleConn); ok {
			ic.end()
		} else {
			c.Close()
		}
	})
	<-done
	return ctx.Err()
}

// cutGrace bounds the wait, once the drain's time is up, for the router to
// close the streams it cut; within the daemon's own grace for the cut
// requests (daemon.CutGrace), so the exit is not held longer.
const cutGrace = time.Second
