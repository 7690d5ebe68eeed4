package mux

import (
	"net"

	"golang.org/x/sys/unix"
)

// countersOf returns a reader of a TCP socket's counters (TCP_INFO): the
// bytes it has received, the bytes its peer acknowledged, and whether
// bytes still wait for the peer. While acksOnly reports true, what it
// receives is only dropped and is not counted.
func countersOf(c net.Conn, acksOnly func() bool) (func() sockCounters, bool) {
	tc, ok := underlyingTCP(c)
	if !ok {
		if cs, pair := underlying[clientSocket](c); pair {
			// A SOCKS5 stream: its client's own socket counts in place
			// of the socket pair's end.
			tc, ok = underlyingTCP(cs.ClientSocket())
		}
	}
	if !ok {
		return nil, false
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return nil, false
	}
	read := func() sockCounters {
		var s sockCounters
		received := !acksOnly() // outside Control: pipe reads TCP_INFO under its lock
		_ = rc.Control(func(fd uintptr) {
			ti, err := unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
			if err != nil {
				return
			}
			s.acked = ti.Bytes_acked
			if received {
				s.received = ti.Bytes_received
			}
			// As sendQueueEmpty: a reset socket sends nothing more.
			s.queued = ti.State != tcpClose && (ti.Notsent_bytes != 0 || ti.Unacked != 0)
		})
		return s
	}
	return read, true
}
