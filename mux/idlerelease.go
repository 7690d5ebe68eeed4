package mux

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Idle release. An HTTP/1 keep-alive connection waiting for its next
// request holds net/http's connection goroutine, whose stack the runtime
// cannot shrink below 8 KiB (the idle read is deep), and net/http's 4 KiB
// read and write buffers. After --idle-release-after without a byte, nexmux
// lets net/http end its side of the connection without closing the socket,
// waits for the next bytes on a shallow goroutine, and hands the
// connection back to http.Server as a new one when they come: the same
// socket, TLS session and route. nginx frees a keep-alive connection's
// buffers the same way.
//
// The window is net/http's wait for the next request's first bytes
// (conn.serve: StateIdle, then SetReadDeadline with the idle timeout, then
// Peek): the wrapper shortens that one deadline. When it fires, every
// reader below net/http has been drained (the read blocked on the socket),
// so no byte is held anywhere but in crypto/tls, which keeps a partial
// record across a timeout.

// DefaultIdleRelease is how long an HTTP/1 keep-alive connection waits for
// its next request before its goroutine and buffers are released. A
// second is long next to the gaps between one client's requests, and short
// next to how long keep-alive clients hold idle connections (Go's and
// load balancers' pools: tens of seconds to minutes).
const DefaultIdleRelease = time.Second

// netHTTPPeek is how many bytes net/http waits for before it starts the
// header timeout (conn.serve's Peek). A read under the shortened deadline
// that brings fewer restores the idle deadline, so a slow first byte of a
// request is not taken for idleness.
const netHTTPPeek = 4

// netHTTPReadBuf is the size of net/http's connection read buffer. Its
// wait for the next request reads into all of it only when it holds no byte
// of that request yet: the 1-byte background read during the last response
// (connReader.hasByte) or the tail of a pipelined read leave it shorter.
// Only such a read may end in a park: bytes net/http holds must not be lost
// with its side of the connection. Should net/http change the size, idle
// connections are kept, never broken (TestIdleReleaseParksAndResumes
// notices).
const netHTTPReadBuf = 4096

// Release states.
const (
	relActive  int32 = iota // net/http serves the connection
	relPending              // net/http was told EOF and is letting go
	relClosing              // relPending, and net/http's Close has come
	relParked               // a park goroutine waits for the next bytes
	relClosed               // the socket is closed
)

// idleRelease is the state an HTTP/1 wrapper (h1Conn) keeps for
// idle release. net/http calls Read, SetReadDeadline and Close from its
// connection goroutine; ConnState from the same goroutine; revocation and
// shutdown may Close from any goroutine.
type idleRelease struct {
	after time.Duration // 0: never (disabled, or no socket to wait on)
	tcp   *net.TCPConn  // the accepted socket, where it can be waited on
	peek  peeker        // waits on tcp; set up on first use
	// idle is set by ConnState(StateIdle): the next SetReadDeadline is
	// net/http's idle deadline.
	idle atomic.Bool
	// armed: net/http waits for the next request under the shortened
	// deadline.
	armed atomic.Bool
	// waking: resumed, fewer than netHTTPPeek bytes read since. net/http
	// took the connection as new and reads a request under its header
	// deadline; until those bytes come, the idle deadline stays, as it
	// would have without the release.
	waking atomic.Bool
	woken  int       // bytes read while waking
	header time.Time // net/http's header deadline, applied once awake
	// deadline is net/http's own idle deadline (serve goroutine only; the
	// park goroutine reads it after the hand-over).
	deadline time.Time
	state    atomic.Int32
}

// releasable is *h1Conn and *h1TLSConn: the connection net/http was
// given, which a resume hands back to it, and the h1Conn that carries it.
type releasable interface {
	net.Conn
	h1() *h1Conn
}

// h1TLSConn has it through h1Conn.
func (c *h1Conn) h1() *h1Conn { return c }

// readStream is h1Conn.Read below framing.
func (c *h1Conn) readStream(b []byte) (int, error) {
	if !c.bg.seen {
		c.bg.learn(b)
	}
	if c.rel.armed.Load() || c.rel.waking.Load() {
		return c.rel.read(c.Conn, b)
	}
	if c.bg.isReadAhead(b) && c.rel.tcp != nil {
		// Wait on the socket first (bgread.go).
		if _, err := c.rel.waitReadable(); err != nil {
			return 0, err
		}
	}
	return c.Conn.Read(b)
}

func (c *h1Conn) SetReadDeadline(t time.Time) error { return c.rel.setReadDeadline(c.Conn, t) }

func (c *h1Conn) SetDeadline(t time.Time) error {
	c.rel.armed.Store(false)
	c.rel.waking.Store(false)
	return c.Conn.SetDeadline(t)
}

func (c *h1Conn) Close() error { return c.rel.close(c.closeSocket) }

// setupRelease gives an HTTP/1 connection its accepted socket raw
// (unwrapped from countedConn) to wait on, and enables idle release unless
// after is 0. In-process streams (SOCKS5) have no socket to wait on and
// keep their goroutine.
func setupRelease(r *idleRelease, raw net.Conn, after time.Duration) {
	if !canPeek {
		return
	}
	if cc, ok := raw.(*countedConn); ok {
		raw = cc.Conn
	}
	if tc, ok := raw.(*net.TCPConn); ok {
		r.tcp = tc
		r.after = max(after, 0)
	}
}

// waitReadable waits until the socket has a byte to read (readable), or
// the client's FIN, a socket error or its read deadline; it reads nothing.
// net/http's goroutines call it one at a time: its read ahead during a
// response, then the park goroutine once net/http has let go.
func (r *idleRelease) waitReadable() (bool, error) {
	if !r.peek.ready() {
		if err := r.peek.setup(r.tcp); err != nil {
			return false, err
		}
	}
	return r.peek.wait()
}

func (r *idleRelease) setReadDeadline(c net.Conn, t time.Time) error {
	if r.waking.Load() {
		// net/http's header deadline for the first request after a
		// resume: the idle one holds until its first bytes.
		r.header = t
		return nil
	}
	if r.idle.Load() {
		// net/http's idle deadline (conn.serve sets it right after
		// StateIdle).
		r.idle.Store(false)
		if r.after > 0 {
			r.deadline = t
			r.armed.Store(true)
			if at := time.Now().Add(r.after); t.IsZero() || at.Before(t) {
				t = at
			}
		}
		return c.SetReadDeadline(t)
	}
	r.armed.Store(false)
	return c.SetReadDeadline(t)
}

// read is net/http's read while it waits for the next request, under the
// shortened deadline: bytes disarm it; its expiry before net/http's own
// deadline tells net/http EOF, so that it ends its side and the connection
// is parked (Server.park).
func (r *idleRelease) read(c net.Conn, b []byte) (int, error) {
	if r.waking.Load() {
		n, err := c.Read(b)
		if r.woken += n; r.woken >= netHTTPPeek {
			r.waking.Store(false)
			_ = c.SetReadDeadline(r.header)
		}
		return n, err
	}
	if len(b) != netHTTPReadBuf {
		// net/http holds bytes of the next request: wait as it asked.
		r.armed.Store(false)
		_ = c.SetReadDeadline(r.deadline)
		return c.Read(b)
	}
	n, err := c.Read(b)
	if n > 0 {
		r.armed.Store(false)
		if n < netHTTPPeek {
			_ = c.SetReadDeadline(r.deadline)
		}
		return n, err
	}
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		return n, err
	}
	if !r.deadline.IsZero() && !time.Now().Before(r.deadline) {
		return n, err // net/http's idle timeout: it closes the connection
	}
	r.armed.Store(false)
	if !r.state.CompareAndSwap(relActive, relPending) {
		return n, err
	}
	return 0, io.EOF
}

// close closes the socket with closeSocket, except for the one Close
// net/http makes while letting go of a connection that is being parked.
func (r *idleRelease) close(closeSocket func() error) error {
	for {
		switch st := r.state.Load(); st {
		case relPending:
			if r.state.CompareAndSwap(relPending, relClosing) {
				return nil
			}
		case relClosed:
			return closeSocket()
		default:
			// relActive, relParked, and relClosing: a second Close
			// (revocation, shutdown) while net/http lets go.
			if r.state.CompareAndSwap(st, relClosed) {
				return closeSocket()
			}
		}
	}
}

// parked is the set of parked connections, closed on shutdown.
type parked struct {
	mu     sync.Mutex
	closed bool
	conns  map[releasable]struct{}
	total  atomic.Int64 // parks so far
}

func (p *parked) add(c releasable) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	if p.conns == nil {
		p.conns = map[releasable]struct{}{}
	}
	p.conns[c] = struct{}{}
	p.total.Add(1)
	return true
}

// unpark takes c out of the set. woken (its client sent bytes) counts c
// fresh with fresh, under the set's lock, unless Shutdown closed the set
// meanwhile (then it closes c, and unpark reports false): Shutdown closes
// the set before it waits for fresh connections, so it either closes c or
// waits for c's request.
func (p *parked) unpark(c releasable, woken bool, fresh func()) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.conns, c)
	if !woken || p.closed {
		return false
	}
	fresh()
	return true
}

// closeAll closes every parked connection; none is parked afterwards.
func (p *parked) closeAll() {
	p.mu.Lock()
	p.closed = true
	conns := p.conns
	p.conns = nil
	p.mu.Unlock()
	for c := range conns {
		c.Close()
	}
}

// parking reports whether c is being parked: net/http's StateClosed for
// it is not the connection's end.
func parking(c releasable) bool {
	st := c.h1().rel.state.Load()
	return st == relPending || st == relClosing
}

// park takes over c from net/http (its StateClosed hook) and waits for the
// client's next bytes without net/http's goroutine and buffers.
func (s *Server) park(c releasable) {
	r := &c.h1().rel
	if !r.state.CompareAndSwap(relClosing, relParked) {
		// net/http did not Close (it always does), or a second Close
		// came: the socket is closed or must be.
		c.Close()
		s.forget(c)
		return
	}
	if !s.track.Go() {
		c.Close()
		s.forget(c)
		return
	}
	if !s.parked.add(c) {
		c.Close()
		s.forget(c)
		s.track.Done()
		return
	}
	if lc := c.h1().live; lc != nil && lc.info.Revoked.Load() {
		// A reload revoked it while net/http let go.
		c.Close()
	}
	go s.waitParked(c)
}

// waitParked waits until c's client sends again (then c goes back to
// http.Server), closes, or net/http's idle deadline passes.
func (s *Server) waitParked(c releasable) {
	defer s.track.Done()
	h := c.h1()
	r := &h.rel
	_ = h.Conn.SetReadDeadline(r.deadline)
	readable, err := r.waitReadable()
	// Handed back, the connection is new to net/http, which drops a
	// request it reads once shutting down: it is fresh until then.
	woken := s.parked.unpark(c, err == nil && readable, func() { s.beginFresh(h.live) })
	if woken && r.state.CompareAndSwap(relParked, relActive) {
		// The idle deadline stays until net/http has its first bytes.
		r.woken, r.header = 0, time.Time{}
		h.bg.reset()
		r.waking.Store(true)
		if s.conns.put(c) {
			return
		}
	}
	s.endFresh(h.live)
	c.Close()
	s.forget(c)
}

// Released reports the HTTP/1 connections released now (parked, waiting
// for their client's next request without net/http) and the releases since
// start.
func (s *Server) Released() (now int, total int64) {
	s.parked.mu.Lock()
	now = len(s.parked.conns)
	s.parked.mu.Unlock()
	return now, s.parked.total.Load()
}

// forget drops a connection that ended while parked from the live set
// (net/http's StateClosed did not, see connState).
func (s *Server) forget(c net.Conn) {
	s.live.mu.Lock()
	delete(s.live.http, c)
	s.live.mu.Unlock()
}
