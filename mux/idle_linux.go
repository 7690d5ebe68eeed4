package mux

import (
	"net"

	"golang.org/x/sys/unix"
)

// trafficOf returns a reader of the bytes a TCP socket has received plus
// the bytes its peer acknowledged: it grows whenever data moves either way.
func trafficOf(c net.Conn) (func() uint64, bool) {
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
		_ = rc.Control(func(fd uintptr) {
			if ti, err := unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO); err == nil {
				n = ti.Bytes_received + ti.Bytes_acked
			}
		})
		return n
	}
	return read, true
}
