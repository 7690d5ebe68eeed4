package mux

import (
	"net"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/nexmux/nexmux/internal/perclient"
)

// chanListener is the terminate target's listener: it feeds routed
// connections to http.Server.
type chanListener struct {
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
}

var _ net.Listener = (*chanListener)(nil)

func newChanListener() *chanListener {
	return &chanListener{ch: make(chan net.Conn), done: make(chan struct{})}
}

// put hands c to http.Server; false once the listener is closed.
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

// countedConn gives its places back when closed, whoever closes it
// (routing, http.Server, passthrough): its --max-conns place (when active
// is set) and its client's --max-conns-per-client slot (onClose).
type countedConn struct {
	net.Conn
	active *atomic.Int64
	places int64 // taken of active
	// admittedBy is the server whose Admit counted the connection:
	// its ServeConn does not count it again.
	admittedBy *Server
	// clientSlot: the client's --max-conns-per-client slot is held, of
	// slotKey (the client, or its IPv6 prefix) in slotPool; refusing is
	// the server's set of refused connections reading on before their
	// close (reclaim).
	clientSlot bool
	slotPool   *perclient.Counter
	slotKey    netip.Addr
	refusing   *refusing
	mu         sync.Mutex
	closed     bool
	release    func()
}

// onClose sets what Close releases; false when c is already closed.
func (c *countedConn) onClose(f func()) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return false
	}
	c.release = f
	return true
}

// dropRelease gives back now what Close would have (a refused connection
// that is never handed on).
func (c *countedConn) dropRelease() {
	c.mu.Lock()
	f := c.release
	c.release = nil
	c.mu.Unlock()
	if f != nil {
		f()
	}
}

func (c *countedConn) Close() error {
	c.mu.Lock()
	first, f := !c.closed, c.release
	c.closed, c.release = true, nil
	c.mu.Unlock()
	if first && c.active != nil {
		c.active.Add(-c.places)
	}
	if f != nil {
		f()
	}
	return c.Conn.Close()
}

// Unwrap reaches the socket for SO_ORIGINAL_DST and splice.
func (c *countedConn) Unwrap() net.Conn { return c.Conn }
