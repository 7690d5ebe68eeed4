// Package mux is nexmux's fan-in point: it accepts connections, learns which
// route each belongs to (legacy port, TLS server name, or default) without
// consuming a byte, then either terminates TLS and hands the connection to
// the HTTP stage, or copies it raw to a passthrough backend.
package mux

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/pires/go-proxyproto"

	"github.com/nexmux/nexmux/l7"
	"github.com/nexmux/nexmux/route"
	"github.com/nexmux/nexmux/sni"
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
	// Socks5Credentials are checked by the SOCKS5 ingress when it was
	// started with authentication (revoking a user needs only a reload).
	Socks5Credentials map[string]string
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
	// MaxConns refuses connections beyond this many at once (0: no limit).
	MaxConns int
}

// Reasons a connection is refused before HTTP.
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
)

// Server routes connections from any number of listeners.
type Server struct {
	opts      Options
	log       *slog.Logger
	state     atomic.Pointer[State]
	tlsConfig *tls.Config
	http      *http.Server
	conns     *chanListener

	active atomic.Int64 // connections counted against MaxConns

	life    context.Context // ends when Shutdown gives up waiting
	endLife context.CancelFunc

	overLimit       atomic.Int64 // refusals since the last max-conns line
	overLimitLogged atomic.Int64 // unix nanoseconds of that line

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	raw       map[net.Conn]struct{} // connections not (yet) owned by http.Server
	closing   bool
	wg        sync.WaitGroup
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
	if opts.MaxHeaderBytes <= 0 {
		opts.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	s := &Server{
		opts:      opts,
		log:       opts.Logger,
		conns:     newChanListener(),
		listeners: map[net.Listener]struct{}{},
		raw:       map[net.Conn]struct{}{},
	}
	s.state.Store(st)
	s.life, s.endLife = context.WithCancel(context.Background())
	s.tlsConfig = &tls.Config{
		MinVersion:     tls.VersionTLS12,
		NextProtos:     []string{"h2", "http/1.1"},
		GetCertificate: s.certificate,
	}
	s.http = &http.Server{
		Handler: opts.Handler,
		// No ReadTimeout or WriteTimeout: either would cut a large layer
		// push or pull at exactly that many seconds.
		ReadHeaderTimeout: opts.HeaderTimeout,
		IdleTimeout:       opts.IdleTimeout,
		MaxHeaderBytes:    opts.MaxHeaderBytes,
		// "OPTIONS *" goes to the handler, which refuses every target that
		// is not origin-form, instead of net/http's built-in 200.
		DisableGeneralOptionsHandler: true,
		ConnContext:                  connContext,
		ErrorLog:                     slog.NewLogLogger(opts.Logger.Handler(), slog.LevelDebug),
	}
	return s, nil
}

// Update swaps the routes and certificates for new connections. Connections
// already routed keep the state they were routed with.
func (s *Server) Update(st *State) { s.state.Store(st) }

// State returns the current state.
func (s *Server) State() *State { return s.state.Load() }

// Serve accepts connections on ln, the fan-in listener: connections are
// routed by SNI, or by port when iptables redirected them from a legacy
// connector port (see OriginalDst). It returns when ln fails or on Shutdown.
func (s *Server) Serve(ln net.Listener) error { return s.serve(ln, 0) }

// ServePort accepts connections on ln, a listener bound to a legacy
// connector port: every connection belongs to that port's route.
func (s *Server) ServePort(ln net.Listener, port int) error { return s.serve(ln, port) }

// ServeHTTPConns runs the HTTP stage; it must run once, beside Serve.
func (s *Server) ServeHTTPConns() error {
	err := s.http.Serve(s.conns)
	if errors.Is(err, http.ErrServerClosed) || errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

func (s *Server) serve(ln net.Listener, port int) error {
	if !s.track(ln) {
		ln.Close()
		return http.ErrServerClosed
	}
	defer s.untrack(ln)
	listenPort := 0
	if a, ok := ln.Addr().(*net.TCPAddr); ok {
		listenPort = a.Port
	}
	var delay time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if s.isClosing() {
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
		if s.opts.MaxConns > 0 {
			if s.active.Add(1) > int64(s.opts.MaxConns) {
				s.active.Add(-1)
				c.Close()
				s.refusedOverLimit()
				continue
			}
			c = &countedConn{Conn: c, active: &s.active}
		}
		if !s.trackConn(c) {
			c.Close()
			continue
		}
		go func() {
			defer s.wg.Done()
			s.handle(c, listenPort, port)
		}()
	}
}

// refusedOverLimit counts a connection refused by --max-conns and logs at
// most one line a second: during a flood, a line per connection written from
// the accept loop would slow accepting exactly when it matters.
func (s *Server) refusedOverLimit() {
	if s.opts.Refused != nil {
		s.opts.Refused(ReasonMaxConns)
	}
	n := s.overLimit.Add(1)
	now := time.Now().UnixNano()
	last := s.overLimitLogged.Load()
	if now-last >= int64(time.Second) && s.overLimitLogged.CompareAndSwap(last, now) {
		s.overLimit.Add(-n)
		s.log.Info("connection refused: too many connections", "reason", ReasonMaxConns, "max_conns", s.opts.MaxConns, "refused", n)
	}
}

func isTemporary(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

// handle routes one connection. listenPort is the port the listener is bound
// to; boundPort is set when the listener itself is a legacy port.
func (s *Server) handle(raw net.Conn, listenPort, boundPort int) {
	handedOff := false
	defer func() {
		if !handedOff {
			s.untrackConn(raw)
			raw.Close()
		}
	}()
	st := s.state.Load()
	c := raw
	// listenPort < 0 marks streams nexmux made itself (SOCKS5 CONNECT):
	// no load balancer stands in front of those.
	if st.ProxyProtocol != nil && listenPort >= 0 {
		// One reader for the whole connection: the PROXY parser's buffered
		// read-ahead (which may hold ClientHello bytes) is drained by every
		// later read, so no byte is lost or reordered.
		c = proxyproto.NewConn(raw,
			proxyproto.WithPolicy(st.ProxyProtocol(raw.RemoteAddr())),
			proxyproto.SetReadHeaderTimeout(s.opts.HandshakeTimeout))
	}
	info := &l7.ConnInfo{Table: st.Table, Client: addrPort(raw.RemoteAddr())}
	// The logger is only built when a line is written: most connections
	// are routed silently, and slog's With costs a dozen allocations.
	log := &connLog{s: s, info: info}
	_ = c.SetReadDeadline(time.Now().Add(s.opts.HandshakeTimeout))

	rr := newRoutingReader(c)
	var first [1]byte
	if _, err := io.ReadFull(rr, first[:]); err != nil {
		if reason := reasonFor(err); reason == ReasonClosed {
			// Load-balancer health checks connect and close (after a
			// PROXY header, or without one): not worth an info line.
			log.logger().Debug("connection closed before sending anything", "reason", reason)
			if s.opts.Refused != nil {
				s.opts.Refused(reason)
			}
		} else {
			log.refuse(reason, "nothing usable before the deadline", "err", err)
		}
		return
	}
	if pc, ok := c.(*proxyproto.Conn); ok && pc.ProxyHeader() != nil {
		info.Client = addrPort(pc.RemoteAddr())
		log.peer = raw.RemoteAddr()
	}

	rt, ok := s.portRoute(log, st, c, info, listenPort, boundPort)
	if !ok {
		return
	}

	if first[0] != recordTypeHandshake {
		if rt == nil || rt.Passthrough != "" {
			log.refuse(ReasonNotTLS, "neither TLS nor plain HTTP on a port route", "first_byte", fmt.Sprintf("%#02x", first[0]))
			return
		}
		// Legacy connectors could be plain HTTP behind a TLS-ending
		// load balancer: serve HTTP on the same route.
		_ = c.SetReadDeadline(time.Time{})
		info.Route = rt
		s.routed(rt)
		handedOff = s.handOff(&routedConn{Conn: sni.NewConn(c, rr.buf), raw: raw, info: info, state: st}) // every byte read so far
		return
	}

	rr.rewind() // the parser reads the hello from its first byte
	hello, err := sni.ReadClientHello(rr)
	if err != nil {
		reason := reasonFor(err)
		log.refuse(reason, "could not read the TLS ClientHello", "err", err)
		if reason == ReasonMalformed {
			writeAlert(c, alertDecodeError)
		}
		return
	}
	info.ServerName = hello.ServerName
	if rt == nil {
		if hello.ServerName == "" {
			rt = st.Table.Default()
			if rt == nil {
				log.refuse(ReasonNoSNI, "client sent no server name and there is no --default-route")
				writeAlert(c, alertUnrecognizedName)
				return
			}
		} else if rt = st.Table.LookupHost(hello.ServerName); rt == nil {
			log.refuse(ReasonUnknownSNI, "no route for server name")
			writeAlert(c, alertUnrecognizedName)
			return
		}
	}
	info.Route = rt
	s.routed(rt)
	_ = c.SetReadDeadline(time.Time{})
	// Every byte read so far goes in front of the connection: the hello
	// and whatever the client sent behind it (TLS 1.3 early data, say).
	// An error that came with the last of them is not carried over: EOF
	// and resets recur on the socket, and the routing deadline is gone.
	prefix := rr.buf
	if rt.Passthrough != "" {
		handedOff = true
		s.passthrough(log, st, c, raw, prefix, info)
		return
	}
	info.TLS = true
	rc := &routedConn{Conn: sni.NewConn(c, prefix), raw: raw, info: info, state: st}
	info.Writes = rc
	info.Reads = rc
	handedOff = s.handOff(tls.Server(rc, s.tlsConfig))
}

// recordTypeHandshake is the first byte of every TLS connection.
const recordTypeHandshake = 0x16

// portRoute finds the route a connection has by port, if any: the port of
// the listener itself (--bind-ports), the port iptables redirected it from
// (SO_ORIGINAL_DST), or the destination port a trusted PROXY header names.
// A port route wins over SNI: legacy clients name the repository by port and
// send Nexus's old host name, which may well be some other route. ok is
// false when the connection was refused.
func (s *Server) portRoute(log *connLog, st *State, c net.Conn, info *l7.ConnInfo, listenPort, boundPort int) (*route.Route, bool) {
	port := boundPort
	// Without port routes there is nothing to look up: spare every
	// connection the getsockopt(SO_ORIGINAL_DST).
	if port == 0 && st.Table.HasPorts() {
		// A redirect from a port without a --port route (443 -> 8443 so
		// nexmux needs no privilege) is the fan-in port itself: SNI decides.
		if orig, err := OriginalDst(c); err == nil && int(orig.Port()) != listenPort && st.Table.LookupPort(int(orig.Port())) != nil {
			port = int(orig.Port())
		} else if pc, ok := c.(*proxyproto.Conn); ok && pc.ProxyHeader() != nil {
			if _, dst, ok := pc.ProxyHeader().Ports(); ok && st.Table.LookupPort(dst) != nil {
				port = dst
			}
		}
	}
	if port == 0 {
		return nil, true
	}
	rt := st.Table.LookupPort(port)
	if rt == nil {
		log.refuse(ReasonNoPortRoute, "connection for a port with no --port route", "port", port)
		return nil, false
	}
	info.ByPort = true
	return rt, true
}

func (s *Server) routed(rt *route.Route) {
	if s.opts.Routed != nil {
		s.opts.Routed(rt)
	}
}

// handOff gives a routed connection to the HTTP stage, which owns it from
// then on (http.Server tracks and closes its connections).
func (s *Server) handOff(c net.Conn) bool {
	if !s.conns.put(c) {
		return false
	}
	s.untrackConn(rawOf(c))
	return true
}

func rawOf(c net.Conn) net.Conn {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	if rc, ok := c.(*routedConn); ok {
		return rc.raw
	}
	return c
}

// connLog describes a connection for the one line written when it is
// refused.
type connLog struct {
	s    *Server
	info *l7.ConnInfo
	peer net.Addr // the load balancer, when a PROXY header named the client
}

func (l *connLog) logger() *slog.Logger {
	args := []any{"client", l.info.Client.String()}
	if l.peer != nil {
		args = append(args, "peer", l.peer.String())
	}
	if l.info.ServerName != "" {
		args = append(args, "sni", l.info.ServerName)
	}
	return l.s.log.With(args...)
}

func (l *connLog) refuse(reason, msg string, args ...any) {
	l.s.refuse(l.logger(), reason, msg, args...)
}

func (s *Server) refuse(log *slog.Logger, reason, msg string, args ...any) {
	log.Info("connection refused: "+msg, append([]any{"reason", reason}, args...)...)
	if s.opts.Refused != nil {
		s.opts.Refused(reason)
	}
}

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

// TLS alert descriptions (RFC 8446 6.2).
const (
	alertDecodeError      = 50
	alertUnrecognizedName = 112
)

// writeAlert sends a fatal alert record so the client prints a clear reason
// ("tls: unrecognized name") instead of a bare connection reset.
func writeAlert(c net.Conn, desc byte) {
	_ = c.SetWriteDeadline(time.Now().Add(time.Second))
	_, _ = c.Write([]byte{21, 3, 3, 0, 2, 2, desc})
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

// routedConn carries the routing decision to the HTTP stage and to the TLS
// certificate choice. Below TLS it is also the l7.WriteBatcher that turns
// the TLS records of one large response write into few socket writes.
type routedConn struct {
	net.Conn
	raw   net.Conn
	info  *l7.ConnInfo
	state *State

	wmu   sync.Mutex // crypto/tls writes under its own lock; Close may not
	batch *batchBuf  // non-nil between BeginBatch and EndBatch
	wn    int

	// Read-ahead (l7.ReadAheader). crypto/tls reads under its own lock,
	// so Reads never overlap; rmu orders them with Begin/EndReadAhead,
	// which run on the goroutine copying the body (or closing it).
	rmu     sync.Mutex
	ahead   bool          // between BeginReadAhead and EndReadAhead
	pooled  *readAheadBuf // held while ahead, or a read fills it
	rb      []byte        // bytes read ahead: rb[rr:rw] not yet handed out
	rr, rw  int
	reading bool  // a Read is filling pooled
	rerr    error // from a read whose bytes are still in rb
}

var (
	_ l7.WriteBatcher = (*routedConn)(nil)
	_ l7.ReadAheader  = (*routedConn)(nil)
)

// readAheadSize bounds one read(2) while an upload is read ahead.
const readAheadSize = 512 << 10

type readAheadBuf [readAheadSize]byte

var readAheadBufs = sync.Pool{New: func() any { return new(readAheadBuf) }}

func (c *routedConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	c.rmu.Lock()
	if c.rr < c.rw {
		n := copy(p, c.rb[c.rr:c.rw])
		c.rr += n
		c.releaseLocked()
		c.rmu.Unlock()
		return n, nil
	}
	if err := c.rerr; err != nil {
		c.rerr = nil
		c.rmu.Unlock()
		return 0, err
	}
	if !c.ahead {
		c.rmu.Unlock()
		return c.Conn.Read(p)
	}
	if c.pooled == nil {
		c.pooled = readAheadBufs.Get().(*readAheadBuf)
	}
	buf := c.pooled[:]
	c.reading = true
	c.rmu.Unlock()

	n, err := c.Conn.Read(buf)

	c.rmu.Lock()
	defer c.rmu.Unlock()
	c.reading = false
	m := copy(p, buf[:n])
	c.rb, c.rr, c.rw = buf, m, n
	if m < n {
		c.rerr, err = err, nil // hand out the bytes first
	}
	c.releaseLocked()
	return m, err
}

// releaseLocked gives the pooled buffer back once no upload is reading
// ahead: unread bytes, if any, move to a buffer of their size.
func (c *routedConn) releaseLocked() {
	if c.pooled == nil {
		if c.rr == c.rw {
			c.rb, c.rr, c.rw = nil, 0, 0
		}
		return
	}
	if c.ahead || c.reading {
		return
	}
	if c.rr < c.rw {
		c.rb = append([]byte(nil), c.rb[c.rr:c.rw]...)
		c.rr, c.rw = 0, len(c.rb)
	} else {
		c.rb, c.rr, c.rw = nil, 0, 0
	}
	readAheadBufs.Put(c.pooled)
	c.pooled = nil
}

// BeginReadAhead implements l7.ReadAheader.
func (c *routedConn) BeginReadAhead() {
	c.rmu.Lock()
	c.ahead = true
	c.rmu.Unlock()
}

// EndReadAhead implements l7.ReadAheader; it may be called more than once.
func (c *routedConn) EndReadAhead() {
	c.rmu.Lock()
	c.ahead = false
	c.releaseLocked()
	c.rmu.Unlock()
}

// batchSize is how much a batch gathers before one write(2): sixteen full
// TLS records (16 KiB of plaintext, at most 256 bytes of expansion, a
// 5-byte header each), so one 512 KiB read from Nexus (l7 copyBufferSize)
// leaves in two writes. Against four records per write it cut nexmux's
// CPU per GiB pulled by about a tenth on the benchmark machine (fewer
// syscalls, fewer wake-ups of the client); a batch buffer is held only
// while a large response write is in progress.
const batchSize = 16 * (16<<10 + 256 + 5)

type batchBuf [batchSize]byte

// batchBufs are held only while a large write is in progress: an idle
// connection keeps none.
var batchBufs = sync.Pool{New: func() any { return new(batchBuf) }}

func (c *routedConn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.batch == nil {
		return c.Conn.Write(p)
	}
	if c.wn+len(p) > batchSize {
		if err := c.flushLocked(); err != nil {
			return 0, err
		}
		if len(p) > batchSize {
			return c.Conn.Write(p)
		}
	}
	c.wn += copy(c.batch[c.wn:], p)
	return len(p), nil
}

func (c *routedConn) flushLocked() error {
	if c.wn == 0 {
		return nil
	}
	n, err := c.Conn.Write(c.batch[:c.wn])
	if err == nil && n < c.wn {
		err = io.ErrShortWrite
	}
	c.wn = 0
	return err
}

// BeginBatch implements l7.WriteBatcher.
func (c *routedConn) BeginBatch() {
	c.wmu.Lock()
	if c.batch == nil {
		c.batch = batchBufs.Get().(*batchBuf)
		c.wn = 0
	}
	c.wmu.Unlock()
}

// EndBatch implements l7.WriteBatcher: it writes what the batch holds.
func (c *routedConn) EndBatch() error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.batch == nil {
		return nil
	}
	err := c.flushLocked()
	batchBufs.Put(c.batch)
	c.batch = nil
	return err
}

func connContext(ctx context.Context, c net.Conn) context.Context {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	if rc, ok := c.(*routedConn); ok {
		return l7.NewContext(ctx, rc.info)
	}
	return ctx
}

func addrPort(a net.Addr) netip.AddrPort {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.AddrPort()
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap
}

func (s *Server) track(ln net.Listener) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return false
	}
	s.listeners[ln] = struct{}{}
	return true
}

func (s *Server) untrack(ln net.Listener) {
	s.mu.Lock()
	delete(s.listeners, ln)
	s.mu.Unlock()
}

// trackConn registers a connection and its goroutine (wg.Add under the same
// lock that Shutdown sets closing with, so Add never races Wait). Every
// successful call is paired with one wg.Done by the goroutine serving c.
func (s *Server) trackConn(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return false
	}
	s.raw[c] = struct{}{}
	s.wg.Add(1)
	return true
}

func (s *Server) untrackConn(c net.Conn) {
	s.mu.Lock()
	delete(s.raw, c)
	s.mu.Unlock()
}

func (s *Server) isClosing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closing
}

// Shutdown stops accepting, lets in-flight requests and passthrough streams
// finish until ctx ends, then closes what is left.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closing = true
	for ln := range s.listeners {
		ln.Close()
	}
	s.mu.Unlock()
	err := s.http.Shutdown(ctx)
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
	s.endLife()
	s.mu.Lock()
	for c := range s.raw {
		c.Close()
	}
	s.mu.Unlock()
	if err != nil {
		_ = s.http.Close()
	}
	<-done
	return err
}

// chanListener feeds routed connections to http.Server.
type chanListener struct {
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
}

func newChanListener() *chanListener {
	return &chanListener{ch: make(chan net.Conn), done: make(chan struct{})}
}

func (l *chanListener) put(c net.Conn) bool {
	select {
	case l.ch <- c:
		return true
	case <-l.done:
		return false
	}
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *chanListener) Addr() net.Addr { return &net.TCPAddr{} }

// countedConn gives its place back when closed, whoever closes it (routing,
// http.Server, passthrough).
type countedConn struct {
	net.Conn
	active *atomic.Int64
	once   sync.Once
}

func (c *countedConn) Close() error {
	c.once.Do(func() { c.active.Add(-1) })
	return c.Conn.Close()
}

// Unwrap reaches the socket for SO_ORIGINAL_DST and splice.
func (c *countedConn) Unwrap() net.Conn { return c.Conn }
