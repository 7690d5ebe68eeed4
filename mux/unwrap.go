package mux

import "net"

// underlyingTCP digs through the wrappers routing puts below TLS (PROXY
// protocol: Raw; the max-conns count: Unwrap) to the kernel socket, for
// SO_ORIGINAL_DST and for splice.
func underlyingTCP(c net.Conn) (*net.TCPConn, bool) {
	for i := 0; i < 8; i++ {
		switch v := c.(type) {
		case *net.TCPConn:
			return v, true
		case interface{ Raw() net.Conn }:
			c = v.Raw()
		case interface{ Unwrap() net.Conn }:
			c = v.Unwrap()
		default:
			return nil, false
		}
	}
	return nil, false
}
