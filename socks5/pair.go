package socks5

import (
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
)

// errPairUnsupported: where pairSupported is false, Serve refuses to
// start with it rather than refuse every CONNECT.
var errPairUnsupported = fmt.Errorf("socks5: the SOCKS5 ingress needs unix socket pairs, not available on %s", runtime.GOOS)

// pairEnd presents a socket-pair end with TCP addresses: the SOCKS
// client's real address on the router's side, the SOCKS listener's on the
// library's side.
type pairEnd struct {
	net.Conn
	local, remote net.Addr
	onEOF         func() // at an EOF read
	onClose       func() // before the end is closed
	// unacked, on the router's end: what the SOCKS client has not
	// acknowledged of what the router wrote (streamEnd.unacked).
	unacked func() (int, bool)
	// On the router's end: onAbort passes a reset the router passes on
	// (a passthrough backend's) to the SOCKS client, and clientReset, set
	// once the SOCKS client's socket was reset, makes the EOF behind it a
	// reset again, as a direct client's would be.
	onAbort     func()
	clientReset *atomic.Bool
	// On the router's end: client is the SOCKS client's socket (for mux's
	// stall watch, ClientSocket), and onCut resets it at once (Cut).
	client net.Conn
	onCut  func()
}

// ClientSocket is the SOCKS client's socket, under any PROXY header: mux's
// passthrough stall watch reads its TCP counters, which the pair has none
// of, to see whether the client takes what is sent to it.
func (c *pairEnd) ClientSocket() net.Conn { return c.client }

// Cut resets the SOCKS client at once: the router cut the stream because a
// side took nothing sent to it, and what the pair still holds for a client
// that reads nothing would never be passed on (Abort waits for that).
func (c *pairEnd) Cut() {
	if c.onCut != nil {
		c.onCut()
	}
}

// Abort is called by the router before it closes the end to pass a reset
// on (mux's abort).
func (c *pairEnd) Abort() {
	if c.onAbort != nil {
		c.onAbort()
	}
}

// UnackedByClient lets the router's lingering close (mux) see what the
// SOCKS client has received, as it sees a direct client's.
func (c *pairEnd) UnackedByClient() func() (int, bool) { return c.unacked }

// Close runs onClose first, so that the other end reads EOF only after
// it: a full close is told apart from a half-close.
func (c *pairEnd) Close() error {
	if c.onClose != nil {
		c.onClose()
	}
	if c.Conn == nil { // admitted, but its socket pair could not be made
		return nil
	}
	return c.Conn.Close()
}

// CloseWrite passes the SOCKS client's half-close on to the routed side
// (go-socks5 calls it when the client is done sending); without it the
// router would wait for more bytes until a timeout.
func (c *pairEnd) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Conn.Close()
}

func (c *pairEnd) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if err == io.EOF && c.clientReset != nil && c.clientReset.Load() {
		return n, &net.OpError{Op: "read", Net: "unix", Source: c.local, Addr: c.remote, Err: os.NewSyscallError("read", syscall.ECONNRESET)}
	}
	if err == io.EOF && c.onEOF != nil {
		c.onEOF()
	}
	return n, err
}

func (c *pairEnd) LocalAddr() net.Addr  { return c.local }
func (c *pairEnd) RemoteAddr() net.Addr { return c.remote }

// streamEnd passes the end of a routed stream on to the SOCKS client. The
// router's half-close (a passthrough backend's) half-closes the client,
// which may still send; its full close ends the client, but only once
// every byte before it was read from the pair and passed on.
type streamEnd struct {
	client      *idleConn
	mu          sync.Mutex
	eof, closed bool
	// reset: the router passed a reset on; the client is then reset too.
	reset bool
}

// aborted: the router passes a reset on, before it closes its end.
func (e *streamEnd) aborted() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.reset = true
}

// cut: the router cut the stream; the client is reset now, whatever the
// pair still holds for it.
func (e *streamEnd) cut() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.reset = true
	e.endClient()
}

// endClient closes the client, with a reset where the router passed one.
func (e *streamEnd) endClient() {
	if e.reset {
		e.client.abort()
	}
	e.client.end()
}

// eofRead: the library read EOF from the pair.
func (e *streamEnd) eofRead() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.eof = true
	if e.closed {
		e.endClient()
	} else {
		e.client.closeWrite()
	}
}

// routerClosed: the router closed its end of the pair.
func (e *streamEnd) routerClosed() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.closed = true
	if e.eof {
		e.endClient()
	}
}
