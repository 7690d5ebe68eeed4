//go:build linux && !386 && !s390x

package mux

import (
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// recvPeek is recvfrom(fd, b, MSG_PEEK|MSG_DONTWAIT) without the sender's
// address: unix.Recvfrom asks for it into a buffer of its own, which
// escapes, so it allocates on every call, and the read ahead peeks on
// every request (bgread.go). Not on linux/386 and s390x, where x/sys
// reaches recvfrom through socketcall, the one way kernels before 4.3 have.
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
