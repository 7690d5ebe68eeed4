// Package mux is nexmux's fan-in point: it accepts connections, learns which
// route each belongs to (legacy port, TLS server name, or default) without
// consuming a byte, then either terminates TLS and hands the connection to
// the HTTP stage, or copies it raw to a passthrough backend.
package mux

import (
	"bytes"
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
	"time"

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
	ReasonShutdown    = "shutdown"
)

// Server routes connections from any number of listeners.
type Server struct {
	opts      Options
	log       *slog.Logger
	state     atomic.Pointer[State]
	tlsConfig *tls.Config
	http      *http.Server
	conns     *chanListener

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
		ConnContext:       connContext,
		ErrorLog:          slog.NewLogLogger(opts.Logger.Handler(), slog.LevelDebug),
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
		if !s.trackConn(c) {
			c.Close()
			continue
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.handle(c, listenPort, port)
		}()
	}
}

func isTemporary(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

// handle routes one connection. listenPort is the port the listener is bound
// to; boundPort is set when the listener itself is a legacy port.
func (s *Server) handle(c net.Conn, listenPort, boundPort int) {
	handedOff := false
	defer func() {
		if !handedOff {
			s.untrackConn(c)
			c.Close()
		}
	}()
	st := s.state.Load()
	info := &l7.ConnInfo{Table: st.Table, Client: addrPort(c.RemoteAddr())}
	log := s.log.With("client", info.Client.String())

	deadline := time.Now().Add(s.opts.HandshakeTimeout)
	_ = c.SetReadDeadline(deadline)

	var rt *route.Route
	switch {
	case boundPort != 0:
		rt = st.Table.LookupPort(boundPort)
		if rt == nil {
			s.refuse(log, ReasonNoPortRoute, "no route for port", "port", boundPort)
			return
		}
		info.ByPort = true
	default:
		// A connection that iptables redirected from a legacy connector
		// port still knows where it was going. A port route wins over SNI
		// there: legacy clients name the repository by port and send
		// Nexus's old host name, which may well be some other route.
		if orig, err := OriginalDst(c); err == nil && orig.Port() != 0 && int(orig.Port()) != listenPort {
			rt = st.Table.LookupPort(int(orig.Port()))
			if rt == nil {
				s.refuse(log, ReasonNoPortRoute, "redirected connection for a port with no --port route", "port", orig.Port())
				return
			}
			info.ByPort = true
		}
	}

	var first [1]byte
	if _, err := io.ReadFull(c, first[:]); err != nil {
		s.refuse(log, reasonFor(err), "no data before the deadline", "err", err)
		return
	}
	if first[0] != 0x16 { // not a TLS handshake record
		if rt == nil || rt.Passthrough != "" {
			s.refuse(log, ReasonNotTLS, "not a TLS connection", "first_byte", fmt.Sprintf("%#02x", first[0]))
			return
		}
		// Legacy connectors could be plain HTTP behind a TLS-ending
		// load balancer: serve HTTP on the same route.
		_ = c.SetReadDeadline(time.Time{})
		info.Route = rt
		handedOff = s.handOff(&routedConn{Conn: sni.NewConn(c, first[:]), raw: c, info: info, state: st})
		return
	}

	hello, err := sni.ReadClientHello(io.MultiReader(bytes.NewReader(first[:]), c))
	if err != nil {
		reason := reasonFor(err)
		s.refuse(log, reason, "could not read the TLS ClientHello", "err", err)
		if reason == ReasonMalformed {
			writeAlert(c, alertDecodeError)
		}
		return
	}
	info.ServerName = hello.ServerName
	log = log.With("sni", hello.ServerName)
	if rt == nil {
		if hello.ServerName == "" {
			rt = st.Table.Default()
			if rt == nil {
				s.refuse(log, ReasonNoSNI, "client sent no server name and there is no --default-route")
				writeAlert(c, alertUnrecognizedName)
				return
			}
		} else if rt = st.Table.LookupHost(hello.ServerName); rt == nil {
			s.refuse(log, ReasonUnknownSNI, "no route for server name")
			writeAlert(c, alertUnrecognizedName)
			return
		}
	}
	info.Route = rt
	_ = c.SetReadDeadline(time.Time{})
	if rt.Passthrough != "" {
		handedOff = true
		s.passthrough(log, c, hello.Raw, rt)
		return
	}
	info.TLS = true
	rc := &routedConn{Conn: sni.NewConn(c, hello.Raw), raw: c, info: info, state: st}
	tc := tls.Server(rc, s.tlsConfig)
	handedOff = s.handOff(tc)
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
	case errors.Is(err, sni.ErrNotTLS):
		return ReasonNotTLS
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return ReasonMalformed
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
// certificate choice.
type routedConn struct {
	net.Conn
	raw   net.Conn
	info  *l7.ConnInfo
	state *State
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

func (s *Server) trackConn(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return false
	}
	s.raw[c] = struct{}{}
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
	ch     chan net.Conn
	done   chan struct{}
	once   sync.Once
	closed atomic.Bool
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
	l.once.Do(func() { l.closed.Store(true); close(l.done) })
	return nil
}

func (l *chanListener) Addr() net.Addr { return &net.TCPAddr{} }
