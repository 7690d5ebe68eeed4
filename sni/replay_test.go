package sni

import (
	"net"
	"sync"
)

// ReplayConn (the tests' own; mux's routedConn does the same for the
// product) is a connection whose first bytes were already read (the
// ClientHello, and whatever came with it): it hands them out again before
// reading from the connection itself, so crypto/tls or a backend sees the
// stream from its first byte.
type ReplayConn struct {
	net.Conn

	// mu guards prefix: net.Conn promises that methods may be called from
	// several goroutines.
	mu     sync.Mutex
	prefix []byte
}

// NewReplayConn returns a ReplayConn that yields prefix and then reads from
// c. prefix is not copied and must not be modified afterwards.
func NewReplayConn(c net.Conn, prefix []byte) *ReplayConn {
	if len(prefix) == 0 {
		prefix = nil
	}
	return &ReplayConn{Conn: c, prefix: prefix}
}

// Read serves the remaining prefix first. It never mixes prefix bytes and
// connection bytes in one call, so draining the prefix cannot block on c.
func (c *ReplayConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	if len(c.prefix) > 0 {
		n := copy(p, c.prefix)
		c.prefix = c.prefix[n:]
		if len(c.prefix) == 0 {
			c.prefix = nil // let the hello buffer be collected
		}
		c.mu.Unlock()
		return n, nil
	}
	c.mu.Unlock()
	return c.Conn.Read(p)
}
