//go:build unix

package mux

import (
	"net"

	"golang.org/x/sys/unix"
)

const canPeek = true

// waitReadable waits until the socket has a byte to read (readable) or the
// client's FIN, a socket error or its read deadline; it reads nothing.
func waitReadable(tc *net.TCPConn) (readable bool, err error) {
	rc, err := tc.SyscallConn()
	if err != nil {
		return false, err
	}
	var b [1]byte
	err = rc.Read(func(fd uintptr) bool {
		n, _, err := unix.Recvfrom(int(fd), b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
		if err == unix.EAGAIN || err == unix.EINTR {
			return false
		}
		readable = err == nil && n > 0
		return true
	})
	return readable, err
}
