package mux

import (
	"crypto/tls"
	"os"
)

// Closing without waiting on the client. tls.Conn.Close writes a
// close_notify first, under a 5 s write deadline: on a client that stopped
// reading (window shut, send buffer full) that write waits the whole 5 s,
// and whoever closes many connections in turn (a reload revoking them,
// Shutdown, net/http's closing of idle connections, which holds its
// server's lock meanwhile) waits 5 s per such client while the others stay
// open. Worse, net/http clears the write deadline after each response:
// one that ends as another goroutine closes its connection leaves the
// close_notify waiting for good.
//
// So a connection closed while it owes its client nothing (an idle HTTP/1
// connection: every response it carried is complete and framed), or once
// a drain gave up, sends its close_notify only if the socket takes it at
// once, and is closed either way: the kernel still delivers what it holds,
// then the FIN. A client that reads has room for the few bytes; one that
// does not loses nothing it would have read. A connection closed after a
// response (Connection: close) is closed as before, by its own goroutine.

// hurry makes every write from now on take only what the socket takes at
// once; its caller closes the connection next.
func (c *routedConn) hurry() { c.hurried.Store(true) }

// writeHurried is a write after hurry: all of p at once, or it fails.
func (c *routedConn) writeHurried(p []byte) (int, error) {
	// A write under way waits on the client; this one would wait behind it.
	if !c.wmu.TryLock() {
		return 0, os.ErrDeadlineExceeded
	}
	defer c.wmu.Unlock()
	if c.batch != nil && c.wn > 0 {
		// Records gathered for one socket write would follow p.
		return 0, os.ErrDeadlineExceeded
	}
	n := c.try.writeNow(c.Conn, p)
	if n < len(p) {
		return n, os.ErrDeadlineExceeded
	}
	return n, nil
}

// closeSocket closes an HTTP/1 connection for good: without waiting on its
// client when it is idle, or once Shutdown gave up waiting (see above).
func (c *h1Conn) closeSocket() error {
	if tc, ok := c.Conn.(*tls.Conn); ok && c.owesNothing() {
		if rc, ok := tc.NetConn().(*routedConn); ok {
			rc.hurry()
		}
	}
	return c.Conn.Close()
}

func (c *h1Conn) owesNothing() bool {
	return c.live != nil && c.live.idle.Load() || c.log.s != nil && c.log.s.life.Err() != nil
}
