package mux

import "net"

// underlyingTCP digs through the wrappers routing puts below TLS (PROXY
// protocol: Raw; the max-conns count: Unwrap) to the kernel socket, for
// SO_ORIGINAL_DST and for splice.
func underlyingTCP(c net.Conn) (*net.TCPConn, bool) { return underlying[*net.TCPConn](c) }

// underlying is the first connection of c's wrapper chain, c included,
// that is a T: a TCP socket, or whatever can half-close.
func underlying[T any](c net.Conn) (T, bool) {
	for i := 0; i < 8; i++ {
		if t, ok := c.(T); ok {
			return t, true
		}
		switch v := c.(type) {
		case interface{ Raw() net.Conn }:
			c = v.Raw()
		case interface{ Unwrap() net.Conn }:
			c = v.Unwrap()
		default:
			var none T
			return none, false
		}
	}
	var none T
	return none, false
}
