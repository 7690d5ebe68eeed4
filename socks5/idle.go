package socks5

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/pires/go-proxyproto"
)

// idleConn enforces the handshake deadline until the CONNECT is
// established, then an idle timeout that any traffic in either direction
// extends (a long pull sends nothing upstream for minutes).
type idleConn struct {
	net.Conn
	idle time.Duration
	mu   sync.Mutex
	open bool
	// ended: nexmux closed the client itself (end).
	ended atomic.Bool
	// remote, when set, is the client's address in place of Conn's: the
	// balancer, for a PROXY header that names no IP client.
	remote net.Addr
	// slot's places are given back as the client is closed: go-socks5
	// closes it itself after a refused CONNECT, and a client that retries
	// the moment it sees the end must find them free. Atomic: a shutdown
	// may close the client while its session starts.
	slot atomic.Pointer[pendingSlot]
	// onReset is told when the client's socket is found reset (a read or
	// write fails so); set once the stream is routed, before the library
	// copies on other goroutines.
	onReset func()
}

func (c *idleConn) Close() error {
	c.slot.Load().release()
	return c.Conn.Close()
}

func (c *idleConn) RemoteAddr() net.Addr {
	if c.remote != nil {
		return c.remote
	}
	return c.Conn.RemoteAddr()
}

// end closes the client from nexmux's side: its routed stream ended, or
// its user was revoked.
func (c *idleConn) end() {
	c.ended.Store(true)
	c.Conn.Close()
}

// closeWrite half-closes the client: its routed stream sent EOF, but may
// still take what the client sends (end closes it once that is over).
func (c *idleConn) closeWrite() {
	conn := c.Conn
	if pc, ok := conn.(*proxyproto.Conn); ok {
		conn = pc.Raw() // a balancer's client: the socket under the header
	}
	if cw, ok := conn.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
		return
	}
	c.end()
}

func (c *idleConn) established() {
	c.mu.Lock()
	c.open = true
	c.mu.Unlock()
	c.touch()
}

// isOpen reports whether the session's CONNECT was established.
func (c *idleConn) isOpen() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.open
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
	c.noteReset(err)
	return n, err
}

func (c *idleConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	if n > 0 {
		c.touch()
	}
	c.noteReset(err)
	return n, err
}

func (c *idleConn) noteReset(err error) {
	if err != nil && c.onReset != nil && (errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)) {
		c.onReset()
	}
}

// abort makes the client's close that follows a reset: the router passed
// on one from the stream's other side.
func (c *idleConn) abort() {
	conn := c.Conn
	if pc, ok := conn.(*proxyproto.Conn); ok {
		conn = pc.Raw()
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
}
