//go:build unix && !linux

package socks5

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// socketpairCloexec: macOS has no SOCK_CLOEXEC, so close-on-exec is set
// under syscall.ForkLock, as package net does there: no child started
// meanwhile inherits the pair.
func socketpairCloexec() ([2]int, error) {
	syscall.ForkLock.RLock()
	defer syscall.ForkLock.RUnlock()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	if err != nil {
		return fds, err
	}
	unix.CloseOnExec(fds[0])
	unix.CloseOnExec(fds[1])
	return fds, nil
}
