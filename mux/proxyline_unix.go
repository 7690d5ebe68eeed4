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
			n, _, err := unix.Recvfrom(int(fd), b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
			switch {
			case err == unix.EINTR:
				continue
			case err == unix.EAGAIN:
				return false
			case err != nil || n <= 0:
				return true // a reset or EOF: the parser reports it
			}
			// A FIN behind a partial line makes no new data: without
			// this the wait would last until the deadline.
			return !v1Pending(b[:n]) || finReceived(int(fd))
		}
	})
}
