package mux

import (
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// unackedOf returns a reader of the bytes written to c that its peer has
// not acknowledged yet, when c is a TCP socket, or a socket that passes on
// to the client and can tell (clientAcks).
func unackedOf(c net.Conn) func() (int, bool) {
	if r, ok := c.(clientAcks); ok {
		return r.UnackedByClient()
	}
	if _, ok := c.(*net.TCPConn); !ok {
		return nil
	}
	return OutQueue(c)
}

// OutQueue returns a reader of c's SIOCOUTQ: for TCP, the bytes its peer
// has not acknowledged (unsent ones included, and a FIN counts one); for a
// Unix stream socket, what its peer has not read yet. Nil when c has no
// descriptor, or off Linux.
func OutQueue(c net.Conn) func() (int, bool) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return func() (n int, ok bool) {
		err := rc.Control(func(fd uintptr) {
			var err error
			n, err = unix.IoctlGetInt(int(fd), unix.SIOCOUTQ)
			ok = err == nil
		})
		return n, ok && err == nil
	}
}
