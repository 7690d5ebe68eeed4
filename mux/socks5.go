package mux

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	socks5 "github.com/armon/go-socks5"
	"golang.org/x/sys/unix"
)

// SOCKS5 ingress. armon/go-socks5 speaks the protocol; everything that makes
// a SOCKS server an open proxy is replaced here:
//   - its resolver does no DNS at all: a name is only ever looked up in the
//     route table, never resolved to an address;
//   - its rule set allows CONNECT only to what the route table serves (a
//     route name on the TLS port, or a legacy connector port with a port
//     route); BIND and UDP ASSOCIATE reach the library's own
//     "command not supported" reply;
//   - its dialer never opens a network connection: the CONNECT stream is
//     handed to the same routing a direct connection gets, over an
//     in-process socket pair;
//   - deadlines bound the SOCKS handshake and idle streams, which the
//     library itself does not.

// SOCKS5Options configures the ingress.
type SOCKS5Options struct {
	// Auth requires username/password authentication, checked against
	// State.Socks5Credentials (so a reload can revoke a user).
	Auth bool
	// SNIPorts are the CONNECT ports treated as the TLS fan-in port:
	// clients say "team.example.com:443" (or the --listen port).
	SNIPorts []int
	// HandshakeTimeout bounds the SOCKS negotiation (default 10 s).
	HandshakeTimeout time.Duration
	// IdleTimeout closes a CONNECT stream with no traffic either way
	// (default 5 min).
	IdleTimeout time.Duration
}

type socksConnKey struct{}
type socksDecision struct {
	port int // port route, or 0 for SNI routing
}

// ServeSOCKS5 accepts SOCKS5 clients on ln until Shutdown.
func (s *Server) ServeSOCKS5(ln net.Listener, o SOCKS5Options) error {
	if o.HandshakeTimeout <= 0 {
		o.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = 5 * time.Minute
	}
	local, _ := ln.Addr().(*net.TCPAddr)
	if local == nil {
		local = &net.TCPAddr{}
	}
	sniPorts := map[int]bool{}
	for _, p := range o.SNIPorts {
		sniPorts[p] = true
	}
	var conns sync.Map // client address -> *idleConn, to find the conn from a request
	conf := &socks5.Config{
		Resolver: noDNS{},
		Rules:    &socksRules{s: s, sniPorts: sniPorts, conns: &conns},
		Dial: func(ctx context.Context, _, addr string) (net.Conn, error) {
			return s.socksDial(ctx, addr, local)
		},
		Logger: log.New(io.Discard, "", 0),
	}
	if o.Auth {
		conf.Credentials = stateCredentials{s}
	}
	srv, err := socks5.New(conf)
	if err != nil {
		return err
	}
	if !s.track(ln) {
		ln.Close()
		return nil
	}
	defer s.untrack(ln)
	for {
		c, err := ln.Accept()
		if err != nil {
			if s.isClosing() {
				return nil
			}
			if isTemporary(err) {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			return err
		}
		ic := &idleConn{Conn: c, idle: o.IdleTimeout}
		_ = c.SetDeadline(time.Now().Add(o.HandshakeTimeout))
		if !s.trackConn(ic) {
			c.Close()
			continue
		}
		key := c.RemoteAddr().String()
		conns.Store(key, ic)
		go func() {
			defer s.wg.Done()
			defer s.untrackConn(ic)
			defer conns.Delete(key)
			defer ic.Close()
			if err := srv.ServeConn(ic); err != nil && !errors.Is(err, io.EOF) {
				s.log.Info("socks5: "+err.Error(), "client", key)
			}
		}()
	}
}

type stateCredentials struct{ s *Server }

func (c stateCredentials) Valid(user, password string) bool {
	want, ok := c.s.state.Load().Socks5Credentials[user]
	return ok && subtle.ConstantTimeCompare([]byte(want), []byte(password)) == 1
}

// noDNS never resolves: names stay names and are matched against the route
// table by the rule set. 0.0.0.0 is a placeholder nothing ever dials.
type noDNS struct{}

func (noDNS) Resolve(ctx context.Context, _ string) (context.Context, net.IP, error) {
	return ctx, net.IPv4zero, nil
}

type socksRules struct {
	s        *Server
	sniPorts map[int]bool
	conns    *sync.Map
}

func (r *socksRules) Allow(ctx context.Context, req *socks5.Request) (context.Context, bool) {
	if req.Command != socks5.ConnectCommand {
		// Allowed through to the library, which answers "command not
		// supported" for BIND and UDP ASSOCIATE.
		return ctx, req.Command == socks5.BindCommand || req.Command == socks5.AssociateCommand
	}
	if ic, ok := r.conns.Load(req.RemoteAddr.Address()); ok {
		ctx = context.WithValue(ctx, socksConnKey{}, ic)
	}
	st := r.s.state.Load()
	d := req.DestAddr
	switch {
	case st.Table.LookupPort(d.Port) != nil:
		// A legacy connector port: the port names the repository,
		// whatever host the client used (nothing is dialled by name).
		return context.WithValue(ctx, socksDecision{}, socksDecision{port: d.Port}), true
	case r.sniPorts[d.Port] && d.FQDN != "" && st.Table.LookupHost(d.FQDN) != nil:
		return context.WithValue(ctx, socksDecision{}, socksDecision{}), true
	case r.sniPorts[d.Port] && d.FQDN == "" && st.Table.Default() != nil:
		// An IP literal lands where a direct IP-literal client would.
		return context.WithValue(ctx, socksDecision{}, socksDecision{}), true
	}
	r.s.refuse(r.s.log.With("client", req.RemoteAddr.Address(), "connect", d.Address()), ReasonSOCKSDenied, "socks5 CONNECT outside the route table")
	return ctx, false
}

// ReasonSOCKSDenied is logged for a CONNECT outside the route table.
const ReasonSOCKSDenied = "socks5_denied"

// socksDial hands the CONNECT stream to the router through a socket pair:
// a real kernel socket on both ends, so TLS and large transfers behave as
// on TCP, and no network connection is ever opened.
func (s *Server) socksDial(ctx context.Context, _ string, local *net.TCPAddr) (net.Conn, error) {
	d, ok := ctx.Value(socksDecision{}).(socksDecision)
	if !ok {
		return nil, errors.New("socks5: no routing decision")
	}
	ic, _ := ctx.Value(socksConnKey{}).(*idleConn)
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	ours, err := fileConn(fds[0])
	if err != nil {
		unix.Close(fds[1])
		return nil, err
	}
	theirs, err := fileConn(fds[1])
	if err != nil {
		ours.Close()
		return nil, err
	}
	var client net.Addr = &net.TCPAddr{}
	if ic != nil {
		client = ic.RemoteAddr()
		ic.established()
	}
	inner := &socksSide{Conn: theirs, local: local, remote: client}
	if !s.trackConn(inner) {
		ours.Close()
		theirs.Close()
		return nil, errors.New("socks5: shutting down")
	}
	go func() {
		defer s.wg.Done()
		// listenPort -1: no SO_ORIGINAL_DST on a socket pair; a port
		// decision is passed as the bound port.
		s.handle(inner, -1, d.port)
	}()
	// go-socks5 reports LocalAddr as the bound address and requires a
	// *net.TCPAddr there. When the routed side is done (EOF), the client
	// connection is closed too: the library would otherwise wait for the
	// client to speak again, keeping a dead stream (and a drain) open.
	side := &socksSide{Conn: ours, local: local, remote: local}
	if ic != nil {
		side.onEOF = func() { ic.Close() }
	}
	return side, nil
}

func fileConn(fd int) (net.Conn, error) {
	f := os.NewFile(uintptr(fd), "socks5-pair")
	defer f.Close()
	return net.FileConn(f)
}

// socksSide presents a socket-pair end with TCP addresses: the SOCKS
// client's real address on the router's side (for logs, X-Forwarded-For and
// metrics), the SOCKS listener's on the library's side.
type socksSide struct {
	net.Conn
	local, remote net.Addr
	onEOF         func()
}

// CloseWrite passes the SOCKS client's half-close on to the routed side
// (go-socks5 calls it when the client is done sending); without it the
// router would wait for more bytes until a timeout.
func (c *socksSide) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Conn.Close()
}

func (c *socksSide) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if err == io.EOF && c.onEOF != nil {
		c.onEOF()
	}
	return n, err
}

func (c *socksSide) LocalAddr() net.Addr  { return c.local }
func (c *socksSide) RemoteAddr() net.Addr { return c.remote }

// idleConn enforces the handshake deadline until the CONNECT is
// established, then an idle timeout that any traffic in either direction
// extends (a long pull sends nothing upstream for minutes).
type idleConn struct {
	net.Conn
	idle time.Duration
	mu   sync.Mutex
	open bool
}

func (c *idleConn) established() {
	c.mu.Lock()
	c.open = true
	c.mu.Unlock()
	c.touch()
}

func (c *idleConn) touch() {
	c.mu.Lock()
	open := c.open
	c.mu.Unlock()
	if open {
		_ = c.Conn.SetDeadline(time.Now().Add(c.idle))
	}
}

func (c *idleConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.touch()
	}
	return n, err
}

func (c *idleConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	if n > 0 {
		c.touch()
	}
	return n, err
}

// LoadCredentials reads "user:password" lines (blank lines and # comments
// ignored).
func LoadCredentials(path string) (map[string]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("socks5-auth-file: %v", err)
	}
	creds := map[string]string{}
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		u, p, ok := strings.Cut(line, ":")
		if !ok || u == "" || p == "" {
			return nil, fmt.Errorf("socks5-auth-file %s line %d: want user:password", path, i+1)
		}
		if len(u) > 255 || len(p) > 255 {
			return nil, fmt.Errorf("socks5-auth-file %s line %d: SOCKS5 allows at most 255 bytes per user and password", path, i+1)
		}
		creds[u] = p
	}
	if len(creds) == 0 {
		return nil, fmt.Errorf("socks5-auth-file %s: no user:password line", path)
	}
	return creds, nil
}
