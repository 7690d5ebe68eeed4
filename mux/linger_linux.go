package mux

import (
	"net"

	"golang.org/x/sys/unix"
)

// unackedOf returns a reader of the bytes written to c that its peer has
// not acknowledged yet (SIOCOUTQ: unsent ones included, and a FIN counts
// one), when c is a TCP socket, or a socket that passes on to the client
// and can tell (clientAcks).
func unackedOf(c net.Conn) func() (int, bool) {
	if r, ok := c.(clientAcks); ok {
		return r.UnackedByClient()
	}
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return nil
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return nil
	}
	return func() (n int, ok bool) {
		_ = rc.Control(func(fd uintptr) {
			var err error
			n, err = unix.IoctlGetInt(int(fd), unix.SIOCOUTQ)
			ok = err == nil
		})
		return n, ok
	}
}
