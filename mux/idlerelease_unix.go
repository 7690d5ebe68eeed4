//go:build unix

package mux

import (
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

const canPeek = true

// peeker waits until a socket has a byte to read, without reading it. A
// connection sets one up on first use and keeps it, so a wait allocates
// nothing.
type peeker struct {
	rc       syscall.RawConn // nil until set up
	try      func(fd uintptr) bool
	b        [1]byte
	readable bool
}

func (p *peeker) setup(tc *net.TCPConn) error {
	rc, err := tc.SyscallConn()
	if err != nil {
		return err
	}
	p.rc, p.try = rc, p.peek
	return nil
}

func (p *peeker) ready() bool { return p.rc != nil }

func (p *peeker) peek(fd uintptr) bool {
	n, errno := recvPeek(fd, p.b[:])
	if errno == unix.EAGAIN || errno == unix.EINTR {
		return false
	}
	p.readable = errno == 0 && n > 0
	return true
}

// wait waits until the socket has a byte to read (readable) or the
// client's FIN, a socket error or its read deadline; it reads nothing.
func (p *peeker) wait() (readable bool, err error) {
	p.readable = false
	err = p.rc.Read(p.try)
	return p.readable, err
}
