//go:build unix

package mux

import (
	"net"

	"golang.org/x/sys/unix"
)

func awaitProxyLine(c net.Conn) {
	tc, ok := underlyingTCP(c)
	if !ok {
		return
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return
	}
	var b [v1MaxLine]byte
	// Read waits for the socket to become readable again whenever the
	// function returns false, so each new segment is looked at once.
	_ = rc.Read(func(fd uintptr) bool {
		for {
			n, errno := recvPeek(fd, b[:])
			switch {
			case errno == unix.EINTR:
				continue
			case errno == unix.EAGAIN:
				return false
			case errno != 0 || n <= 0:
				return true // a reset or EOF: the parser reports it
			}
			// A FIN behind a partial line makes no new data: without
			// this the wait would last until the deadline.
			return !v1Pending(b[:n]) || finReceived(int(fd))
		}
	})
}
