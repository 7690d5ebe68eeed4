//go:build unix && (!linux || 386 || s390x)

package mux

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// recvPeek is recvfrom(fd, b, MSG_PEEK|MSG_DONTWAIT); elsewhere through
// unix.Recvfrom (raw system calls are not the way on darwin).
func recvPeek(fd uintptr, b []byte) (int, syscall.Errno) {
	n, _, err := unix.Recvfrom(int(fd), b, unix.MSG_PEEK|unix.MSG_DONTWAIT)
	if err != nil {
		if errno, ok := err.(syscall.Errno); ok {
			return 0, errno
		}
		return 0, syscall.EIO
	}
	return n, 0
}
