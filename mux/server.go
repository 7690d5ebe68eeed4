// Package mux is nexmux's fan-in point: it accepts connections, learns which
// route each belongs to (legacy port, TLS server name, or default) without
// losing a byte, then gives it to a target: terminate (TLS, then the HTTP
// stage) or passthrough (copied raw to a backend).
package mux

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/pires/go-proxyproto"

	"github.com/nexmux/nexmux/internal/conntrack"
	"github.com/nexmux/nexmux/internal/lograte"
	"github.com/nexmux/nexmux/internal/perclient"
	"github.com/nexmux/nexmux/l7"
	"github.com/nexmux/nexmux/route"
)

// Defaults for Options' timeouts; each says why it has its value.
const (
	// DefaultHandshakeTimeout bounds the whole routing phase (PROXY
	// header, first byte, complete ClientHello). Real clients send the
	// hello in one round trip; ten seconds leaves room for a slow mobile or
	// satellite link and still frees a slowloris socket quickly.
	DefaultHandshakeTimeout = 10 * time.Second
	// DefaultHeaderTimeout bounds the TLS handshake and reading each
	// request's headers. It is not a body timeout: a 10 GB layer upload
	// may take as long as it takes.
	DefaultHeaderTimeout = 30 * time.Second
	// DefaultIdleTimeout closes idle keep-alive client connections.
	DefaultIdleTimeout = 120 * time.Second
	// DefaultMaxHeaderBytes is generous next to Jetty's 8 KiB because
	// Bearer tokens and long scopes travel in headers.
	DefaultMaxHeaderBytes = 64 << 10
	// MaxConcurrentStreams is the HTTP/2 stream limit per connection.
	MaxConcurrentStreams = 100
	// MaxReadFrameSize is the largest HTTP/2 frame a client may send:
	// 64 KiB, between the protocol's default 16 KiB, which makes an
	// upload cost far more CPU per byte, and net/http's 1 MiB: the frame
	// read buffer grows to the largest frame received and stays for the
	// connection's life (numbers: docs/bench/h2-upload.md).
	MaxReadFrameSize = 64 << 10
	// DialTimeout bounds connecting to a passthrough backend.
	DialTimeout = 10 * time.Second
)

// State is the part of the configuration that reload swaps: one immutable
// value, replaced whole.
type State struct {
	Table *route.Table
	Certs *Certs
	// ProxyProtocol, when set, says per peer whether a PROXY header is
	// required (trusted load balancers) or refused (everyone else); see
	// ProxyPolicy. Part of the state so that removing a compromised
	// balancer's range takes effect on reload.
	ProxyProtocol func(peer net.Addr) proxyproto.Policy
	// PassthroughProxyHeader is 0 (none), 1 or 2: the PROXY protocol
	// version sent to passthrough backends.
	PassthroughProxyHeader byte
}

// Options configures a Server. Zero durations take the defaults above.
type Options struct {
	HandshakeTimeout time.Duration
	HeaderTimeout    time.Duration
	IdleTimeout      time.Duration
	MaxHeaderBytes   int
	// Handler is the HTTP stage (an *l7.Proxy); every request's context
	// carries the connection's *l7.ConnInfo.
	Handler http.Handler
	Logger  *slog.Logger
	// Refused, when set, is told about each connection refused before
	// HTTP (for metrics); reason is one of the Reason* constants.
	Refused func(reason string)
	// Routed, when set, is told about each connection given a route.
	Routed func(rt *route.Route)
	// Streamed, when set, is told the bytes a passthrough stream carried
	// each way (in: from the client, hello included), once it ends.
	Streamed func(rt *route.Route, in, out int64)
	// MaxConns refuses connections beyond this many at once (0: no limit).
	// SOCKS5 sessions (TakePlace) and their streams (Admit, ServeConn)
	// count too.
	MaxConns int
	// MaxConnsPerClient refuses a client address's connections beyond
	// this many at once (0: no limit); the address is the one after PROXY
	// protocol.
	MaxConnsPerClient int
	// PerClientIPv6Prefix counts IPv6 clients by this prefix length for
	// MaxConnsPerClient (0 or 128: each address).
	PerClientIPv6Prefix int
	// PassthroughIdleTimeout closes a passthrough stream idle both ways
	// this long, or one a side of which took none of what waits for it
	// this long (default DefaultPassthroughIdleTimeout).
	PassthroughIdleTimeout time.Duration
	// PortTLSOnly refuses plain HTTP on port routes (--port-tls-only).
	PortTLSOnly bool
	// SendTimeout closes an HTTP/2 connection none of whose pending bytes
	// the client took for this long (0: never): a client that stops
	// reading its socket blocks the connection's one writer, where no
	// stream's write deadline reaches.
	SendTimeout time.Duration
	// IdleRelease frees an idle HTTP/1 connection's goroutine and buffers
	// after this long without a byte (idlerelease.go); 0 takes
	// DefaultIdleRelease, a negative value never does.
	IdleRelease time.Duration
	// H2MaxReadFrameSize replaces MaxReadFrameSize (0: MaxReadFrameSize);
	// for benchmarks that compare frame sizes, not a setting.
	H2MaxReadFrameSize int
}

// Server routes connections from any number of listeners.
type Server struct {
	opts      Options
	log       *slog.Logger
	state     atomic.Pointer[State]
	tlsConfig *tls.Config
	http      *http.Server
	conns     *chanListener // the terminate target's connections, for http

	active  atomic.Int64      // connections counted against MaxConns
	clients perclient.Counter // connections per client, against MaxConnsPerClient
	live    live              // routed connections, for revocation on reload
	// balancers counts PROXY v2 LOCAL connections per balancer address,
	// against MaxConnsPerClient too, apart from the clients it names.
	balancers perclient.Counter
	// lingering: closed HTTP/2 connections whose client is still reading.
	lingering lingering
	// refusing: refused connections reading on before their close.
	refusing refusing
	// routing counts accepted connections not yet given to their target
	// (or refused): Shutdown lets them reach http.Server before it stops
	// taking connections.
	routing atomic.Int64
	// fresh counts connections handed to http.Server (or handed back,
	// woken from idle release) whose request is not read yet: Shutdown
	// lets them send it (see there).
	fresh atomic.Int64

	life    context.Context // ends when Shutdown gives up waiting
	endLife context.CancelFunc

	overLimit lograte.Limiter // max-conns refusals' log lines
	perClient lograte.Limiter // max-conns-per-client refusals' log lines
	refusals  refusalLog      // other refusals' log lines
	// unparsable bounds the lines of requests net/http could not parse
	// (h1conn.go): a client chooses how often it sends one.
	unparsable lograte.Burst

	// track holds the listeners, and the connections not (yet) owned by
	// http.Server with their goroutines.
	track conntrack.Tracker
	// parked holds the idle HTTP/1 connections net/http let go of.
	parked parked
	// workers route connections on goroutines kept from earlier ones.
	workers workers
}

// New returns a Server serving st.
func New(opts Options, st *State) (*Server, error) {
	if opts.Handler == nil {
		return nil, errors.New("mux: no HTTP handler")
	}
	if st == nil || st.Table == nil {
		return nil, errors.New("mux: no route table")
	}
	if opts.HandshakeTimeout <= 0 {
		opts.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if opts.HeaderTimeout <= 0 {
		opts.HeaderTimeout = DefaultHeaderTimeout
	}
	if opts.IdleTimeout <= 0 {
		opts.IdleTimeout = DefaultIdleTimeout
	}
	if opts.IdleRelease == 0 {
		opts.IdleRelease = DefaultIdleRelease
	}
	if opts.PassthroughIdleTimeout <= 0 {
		opts.PassthroughIdleTimeout = DefaultPassthroughIdleTimeout
	}
	if opts.MaxHeaderBytes <= 0 {
		opts.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	s := &Server{
		opts:       opts,
		log:        opts.Logger,
		refusals:   newRefusalLog(),
		unparsable: lograte.Burst{Max: lograte.RefusalLines},
		conns:      newChanListener(),
		workers:    newWorkers(workerIdle),
	}
	s.clients.Max, s.clients.IPv6Prefix = opts.MaxConnsPerClient, opts.PerClientIPv6Prefix
	s.balancers.Max = opts.MaxConnsPerClient
	s.state.Store(st)
	s.life, s.endLife = context.WithCancel(context.Background())
	s.tlsConfig = &tls.Config{
		MinVersion:   tls.VersionTLS12,
		CipherSuites: tls12Suites,
		// http/1.0 too: a client offering only it (curl --http1.0)
		// would otherwise get a no_application_protocol alert.
		NextProtos:     []string{"h2", "http/1.1", "http/1.0"},
		GetCertificate: s.certificate,
		// A session resumes only for its server name and certificate.
		WrapSession:   s.wrapSession,
		UnwrapSession: s.unwrapSession,
	}
	s.http = &http.Server{
		Handler: markResponding(opts.Handler),
		// No ReadTimeout or WriteTimeout: either would cut a large layer
		// push or pull at exactly that many seconds.
		ReadHeaderTimeout: opts.HeaderTimeout,
		IdleTimeout:       opts.IdleTimeout,
		MaxHeaderBytes:    opts.MaxHeaderBytes,
		// "OPTIONS *" goes to the handler, which refuses every target that
		// is not origin-form, instead of net/http's built-in 200.
		DisableGeneralOptionsHandler: true,
		ConnContext:                  connContext,
		ConnState:                    s.connState,
		// Go's default is 250 streams per connection; 100 (what nginx
		// and most servers offer) is plenty for registry clients and
		// bounds what one connection can ask of Nexus at once.
		HTTP2: &http.HTTP2Config{MaxConcurrentStreams: MaxConcurrentStreams, WriteByteTimeout: opts.SendTimeout,
			MaxReadFrameSize: cmp.Or(opts.H2MaxReadFrameSize, MaxReadFrameSize)},
		ErrorLog: netHTTPErrorLog(opts.Logger.Handler()),
	}
	return s, nil
}

// Update swaps the routes and certificates for new connections.
// Connections already accepted keep the state they were accepted under
// (a connection still sending its ClientHello is routed, and gets its
// certificate, from it), unless st removes what they depend on (their
// route, their load balancer's range): then they end (revoke.go). A
// replaced certificate is not a revocation.
func (s *Server) Update(st *State) {
	s.state.Store(st)
	s.revoke(st)
}

// Open reports the places taken against --max-conns now (a passthrough
// stream takes three, a SOCKS5 stream two, a SOCKS5 session one) and the
// limit (0: none).
func (s *Server) Open() (open int64, limit int) { return s.active.Load(), s.opts.MaxConns }

// State returns the current state.
func (s *Server) State() *State { return s.state.Load() }

// Serve accepts connections on ln, the fan-in listener: connections are
// routed by SNI, or by port when iptables redirected them from a legacy
// connector port (see OriginalDst). It returns when ln fails or on Shutdown.
func (s *Server) Serve(ln net.Listener) error { return s.serve(ln, 0) }

// ServePort accepts connections on ln, a listener bound to a legacy
// connector port: every connection belongs to that port's route.
func (s *Server) ServePort(ln net.Listener, port int) error { return s.serve(ln, port) }

// ServeConn routes one connection that nexmux made itself instead of
// accepting it, such as a SOCKS5 CONNECT stream: no PROXY header is read,
// no original destination is looked up, and c.RemoteAddr() is the client's
// address. port, when non-zero, is the connection's port route (as for
// ServePort); 0 routes by server name. ServeConn owns c and returns once c
// is refused, handed to the HTTP stage, or (passthrough) done. After
// Shutdown it closes c and returns http.ErrServerClosed. A connection
// Admit returned is not counted again.
func (s *Server) ServeConn(c net.Conn, port int) error { return s.ServeConnTo(c, port, 0) }

// ServeConnTo is ServeConn for a stream whose client asked for a port
// (a SOCKS5 CONNECT's): routed by server name (port 0), it is revoked by a
// reload that gives asked a port route, as a new stream to asked is then
// routed by port.
func (s *Server) ServeConnTo(c net.Conn, port, asked int) error {
	if cc, ok := c.(*countedConn); !ok || cc.admittedBy != s {
		if c = s.count(c, false); c == nil {
			return nil
		}
	}
	s.routing.Add(1)
	if !s.track.AddConn(c) {
		s.routing.Add(-1)
		c.Close()
		return http.ErrServerClosed
	}
	defer s.track.Done()
	s.handle(c, source{boundPort: port, inProcess: true, asked: asked})
	return nil
}

// ErrOverLimit is Admit's answer for a connection beyond --max-conns or
// --max-conns-per-client.
var ErrOverLimit = errors.New("mux: too many connections")

// Admit counts c, a connection nexmux is about to make for a client (a
// SOCKS5 CONNECT's socket pair), against --max-conns (1+pairExtraPlaces
// places, held's among them while it holds one: TakePlace) and against
// --max-conns-per-client for c.RemoteAddr(), before anything is promised
// to the client. It returns the counted connection, whose Close gives all
// its places back, for ServeConn; or an error wrapping ErrOverLimit (the
// refusal is logged and counted with its reason, as for an accepted
// connection), or http.ErrServerClosed after Shutdown. On error c is the
// caller's to close, and held still holds its place.
func (s *Server) Admit(c net.Conn, held *Place) (net.Conn, error) {
	return s.admit(c, &s.clients, held)
}

// AdmitBalancersOwn is Admit for the stream of a session a balancer opened
// with a PROXY v2 LOCAL header (BalancersOwn), c.RemoteAddr() being the
// balancer: counted in the balancer's own pool, as a LOCAL connection on
// the TLS listener is, not as a client of the balancer's address, which
// the clients its headers name no IP for share.
func (s *Server) AdmitBalancersOwn(c net.Conn, held *Place) (net.Conn, error) {
	return s.admit(c, &s.balancers, held)
}

func (s *Server) admit(c net.Conn, pool *perclient.Counter, held *Place) (net.Conn, error) {
	if s.track.Closing() {
		return nil, http.ErrServerClosed
	}
	counted, reason := s.take(c, addrPort(c.RemoteAddr()), pool, 1+pairExtraPlaces, held)
	if reason != "" {
		return nil, fmt.Errorf("%w (%s)", ErrOverLimit, reason)
	}
	return counted, nil
}

// Place is one --max-conns place taken for a descriptor nexmux holds
// before it has a connection to count (a SOCKS5 session's socket until
// its CONNECT): given back by Release, or handed over to the connection
// Admit counts, exactly once either way.
type Place struct {
	active *atomic.Int64 // nil: no place taken (no --max-conns)
	done   atomic.Bool
}

// TakePlace takes one --max-conns place; nil when none is free (the
// refusal is then logged and counted as max_conns, as for an accepted
// connection). Without --max-conns it returns a Place that holds none.
func (s *Server) TakePlace() *Place {
	if s.opts.MaxConns <= 0 {
		return &Place{}
	}
	if !perclient.TakeBelow(&s.active, int64(s.opts.MaxConns)) {
		s.refusedOverLimit()
		return nil
	}
	return &Place{active: &s.active}
}

// Release gives the place back, unless it was given back or handed over
// already; p may be nil.
func (p *Place) Release() {
	if p.claim() {
		p.active.Add(-1)
	}
}

// claim makes the place the caller's to give back or hand over; false when
// it holds none (any more).
func (p *Place) claim() bool {
	return p != nil && p.active != nil && p.done.CompareAndSwap(false, true)
}

// ServeHTTPConns runs the HTTP stage; it must run once, beside Serve.
func (s *Server) ServeHTTPConns() error {
	err := s.http.Serve(s.conns)
	if errors.Is(err, http.ErrServerClosed) || errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

func (s *Server) serve(ln net.Listener, port int) error {
	if !s.track.AddListener(ln) {
		ln.Close()
		return http.ErrServerClosed
	}
	defer s.track.RemoveListener(ln)
	src := source{boundPort: port}
	if a, ok := ln.Addr().(*net.TCPAddr); ok {
		src.listenPort = a.Port
	}
	var delay time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if s.track.Closing() {
				return nil
			}
			// Accept errors such as EMFILE are temporary: back off
			// instead of spinning or giving up on the listener.
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || isTemporary(err) {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				s.log.Warn("accept failed; retrying", "err", err, "in", delay)
				time.Sleep(delay)
				continue
			}
			return err
		}
		delay = 0
		// The peer's PROXY policy is read once, here: the slot taken now
		// and the header routing reads agree even if a reload comes in
		// between.
		cs := src
		cs.state = s.state.Load()
		cs.policy = cs.state.peerPolicy(c)
		if c = s.count(c, cs.policy.namesClient()); c == nil {
			continue
		}
		s.routing.Add(1)
		if !s.track.AddConn(c) {
			s.routing.Add(-1)
			c.Close()
			continue
		}
		s.workers.run(func() {
			defer s.track.Done()
			s.handle(c, cs)
		})
	}
}

// count wraps c to give its places back on close; nil when c was refused
// (and closed) because a limit is reached. Its peer is the client unless
// headerNamesClient: then the client's --max-conns-per-client slot is
// taken later, by routing, once its PROXY header has named the client.
func (s *Server) count(c net.Conn, headerNamesClient bool) net.Conn {
	var client netip.AddrPort
	if !headerNamesClient {
		client = addrPort(c.RemoteAddr())
	}
	pool := &s.clients
	if headerNamesClient {
		pool = nil
	}
	counted, reason := s.take(c, client, pool, 1, nil)
	if reason != "" {
		c.Close()
		return nil
	}
	return counted
}

// peerPolicy is --proxy-protocol-from's policy for c's peer; nil when
// none is configured.
func (st *State) peerPolicy(c net.Conn) *peerPolicy {
	if st.ProxyProtocol == nil {
		return nil
	}
	return &peerPolicy{st.ProxyProtocol(c.RemoteAddr())}
}

// peerPolicy is the PROXY protocol policy for one connection's peer.
type peerPolicy struct{ p proxyproto.Policy }

// namesClient reports whether a PROXY header is to name the client.
func (p *peerPolicy) namesClient() bool {
	return p != nil && (p.p == proxyproto.REQUIRE || p.p == proxyproto.USE)
}

// pairExtraPlaces is what an admitted stream (a SOCKS5 CONNECT's) takes of
// --max-conns beyond its own place: the socket pair into the router is two
// more descriptors beside the SOCKS client's socket, where --max-conns'
// default allows two a place.
const pairExtraPlaces = 1

// take counts c against places of --max-conns (held's among them when it
// holds one of s) and, when pool is set, against --max-conns-per-client
// for client in pool (the clients', or the balancers' own). It returns c
// wrapped to give its places back on close (c itself when there are no
// limits), or the reason c was refused, which is then logged and counted;
// c is not closed, and held keeps its place.
func (s *Server) take(c net.Conn, client netip.AddrPort, pool *perclient.Counter, places int64, held *Place) (net.Conn, string) {
	if s.opts.MaxConns <= 0 && s.opts.MaxConnsPerClient <= 0 {
		return c, ""
	}
	cc := &countedConn{Conn: c}
	// The client's own limit first, and the shared count only ever raised
	// below its limit: a refused connection never holds a place, not even
	// for a moment, that another client's connection would have fitted in.
	if pool != nil {
		cc.admittedBy = s
		if s.opts.MaxConnsPerClient > 0 {
			if !s.takeSlot(pool, cc, client.Addr()) {
				log := &connLog{s: s, info: &l7.ConnInfo{Client: client}}
				log.refusedPerClient(pool)
				return nil, ReasonPerClient
			}
		}
	}
	if s.opts.MaxConns > 0 {
		if !s.takePlaces(places, held) {
			cc.dropRelease()
			s.refusedOverLimit()
			return nil, ReasonMaxConns
		}
		cc.active, cc.places = &s.active, places
	}
	return cc, ""
}

// takePlaces takes n places of --max-conns, one of them held's when it
// holds one of s: the rest first, so held keeps its place on a refusal.
func (s *Server) takePlaces(n int64, held *Place) bool {
	limit := int64(s.opts.MaxConns)
	if held == nil || held.active != &s.active || held.done.Load() {
		return perclient.TakeNBelow(&s.active, n, limit)
	}
	if !perclient.TakeNBelow(&s.active, n-1, limit) {
		return false
	}
	if held.claim() || perclient.TakeBelow(&s.active, limit) {
		return true
	}
	// held was given back meanwhile and no place is free for it.
	s.active.Add(-(n - 1))
	return false
}

func isTemporary(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

// freshGrace bounds Shutdown's wait for the first request of connections
// that finished their handshake as it began.
const freshGrace = time.Second

// StopKeepAlives asks clients to move on while the server still serves:
// each HTTP/1 response from now on closes its connection (those idle in
// net/http close at once; released ones after their next response), and
// an HTTP/2 connection gets GOAWAY when its next stream ends.
func (s *Server) StopKeepAlives() { s.http.SetKeepAlivesEnabled(false) }

// HTTPConns is the number of connections the HTTP stage holds now. Once
// Shutdown closed them, an HTTP/1 connection is let go only after its
// handler returned.
func (s *Server) HTTPConns() int {
	s.live.mu.Lock()
	defer s.live.mu.Unlock()
	return len(s.live.http)
}

// Shutdown stops accepting, lets in-flight requests and passthrough streams
// finish until ctx ends, then closes what is left.
func (s *Server) Shutdown(ctx context.Context) error {
	s.track.Close()
	s.workers.stop()
	s.parked.closeAll()
	// http.Server stops taking connections at once: one still in its
	// routing phase or TLS handshake would be closed after it, its request
	// never answered. Those accepted before Close are handed over first.
	for s.routing.Load() > 0 && ctx.Err() == nil {
		time.Sleep(5 * time.Millisecond)
	}
	// net/http drops, unanswered, a request it reads once it is shutting
	// down: a connection just handed over gets its first request read
	// first. Clients send it right behind their handshake; one that sends
	// nothing is not waited for longer than freshGrace.
	for end := time.Now().Add(freshGrace); s.fresh.Load() > 0 && ctx.Err() == nil && time.Now().Before(end); {
		time.Sleep(time.Millisecond)
	}
	err := s.http.Shutdown(ctx)
	done := s.track.Idle()
	select {
	case <-done:
	case <-ctx.Done():
	}
	// HTTP/2 clients still reading their last response (linger.go), while
	// they move.
	for s.lingeringMoving() && ctx.Err() == nil {
		time.Sleep(5 * time.Millisecond)
	}
	s.endLife()
	if n := s.stopLingering(); n > 0 {
		// Their clients may miss the end of a response: say so, and why.
		why := "stalled"
		if ctx.Err() != nil {
			why = "drain-timeout"
		}
		s.log.Warn("drain closed HTTP/2 connections whose clients were still reading", "conns", n, "why", why)
	}
	s.track.CloseConns()
	if err != nil {
		_ = s.http.Close()
	}
	<-done
	for s.lingeringConns() > 0 {
		time.Sleep(time.Millisecond)
	}
	return err
}
