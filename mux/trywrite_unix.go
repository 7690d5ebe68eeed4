//go:build unix

package mux

import (
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// tryWriter writes what the socket takes at once, never waiting: a
// response the socket buffer holds needs no write deadline, and so no
// timer, under a send deadline. A connection sets it up on first use.
type tryWriter struct {
	rc  syscall.RawConn // nil until set up; set up failed: off
	off bool
	try func(fd uintptr) bool
	p   []byte
	n   int
}

func (w *tryWriter) setup(c net.Conn) {
	tc, ok := underlyingTCP(c)
	if !ok {
		w.off = true
		return
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		w.off = true
		return
	}
	w.rc, w.try = rc, w.write
}

func (w *tryWriter) write(fd uintptr) bool {
	n, err := unix.Write(int(fd), w.p)
	if err != nil {
		// Would block (EAGAIN), interrupted, or failed: the waiting write
		// that follows sees a failure again and reports it.
		n = 0
	}
	w.n = n
	return true
}

// writeNow writes what of p the socket takes without waiting: 0 when it
// takes nothing now, when the write fails, or when the socket's write
// deadline has passed.
func (w *tryWriter) writeNow(c net.Conn, p []byte) int {
	if w.rc == nil {
		if w.off {
			return 0
		}
		if w.setup(c); w.off {
			return 0
		}
	}
	w.p, w.n = p, 0
	err := w.rc.Write(w.try)
	w.p = nil
	if err != nil {
		return 0
	}
	return w.n
}
