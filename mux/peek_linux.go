package mux

import (
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// recvPeek is recvfrom(fd, b, MSG_PEEK|MSG_DONTWAIT) without the sender's
// address: unix.Recvfrom asks for it into a buffer of its own, which
// escapes, so it allocates on every call, and the read ahead peeks on
// every request (bgread.go).
func recvPeek(fd uintptr, b []byte) (int, syscall.Errno) {
	if len(b) == 0 {
		return 0, 0
	}
	n, _, errno := unix.Syscall6(unix.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)),
		unix.MSG_PEEK|unix.MSG_DONTWAIT, 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(n), 0
}
