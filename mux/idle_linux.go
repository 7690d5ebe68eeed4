package mux

import (
	"net"

	"golang.org/x/sys/unix"
)

// trafficOf returns a reader of the bytes a TCP socket has received plus
// the bytes its peer acknowledged: it grows whenever data moves either way.
// While acksOnly reports true, what it receives is only dropped and does
// not count.
func trafficOf(c net.Conn, acksOnly func() bool) (func() uint64, bool) {
	tc, ok := underlyingTCP(c)
	if !ok {
		return nil, false
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return nil, false
	}
	read := func() uint64 {
		var n uint64
		received := !acksOnly() // outside Control: pipe reads TCP_INFO under its lock
		_ = rc.Control(func(fd uintptr) {
			if ti, err := unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO); err == nil {
				n = ti.Bytes_acked
				if received {
					n += ti.Bytes_received
				}
			}
		})
		return n
	}
	return read, true
}
