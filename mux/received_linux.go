package mux

import (
	"net"

	"golang.org/x/sys/unix"
)

// receivedNothing reports whether the peer of c has sent no byte at all
// (TCP_INFO's bytes received): go-proxyproto reports
// a required header that never came the same way whether the peer sent
// other bytes or closed at once, as load-balancer health checks do.
func receivedNothing(c net.Conn) bool {
	info, ok := tcpInfo(c)
	if !ok {
		return false
	}
	// The kernel counts sequence space, and a FIN takes one.
	fin := uint64(0)
	if info.State == tcpCloseWait {
		fin = 1
	}
	return info.Bytes_received <= fin
}

// tcpInfo is TCP_INFO of the TCP socket under c; false when there is none.
func tcpInfo(c net.Conn) (*unix.TCPInfo, bool) {
	tc, ok := underlyingTCP(c)
	if !ok {
		return nil, false
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return nil, false
	}
	var info *unix.TCPInfo
	if raw.Control(func(fd uintptr) { info, err = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO) }) != nil || err != nil {
		return nil, false
	}
	return info, true
}

// tcpCloseWait is TCP_CLOSE_WAIT of include/net/tcp_states.h: the peer's
// FIN is in.
const tcpCloseWait = 8

// finReceived reports whether the peer of the TCP socket fd has sent its
// FIN (its state is CLOSE_WAIT).
func finReceived(fd int) bool {
	info, err := unix.GetsockoptTCPInfo(fd, unix.IPPROTO_TCP, unix.TCP_INFO)
	return err == nil && info.State == tcpCloseWait
}

// PeerClosed reports whether the peer of c's TCP socket has closed its
// side (its FIN or a reset is in), whether or not a read has returned it
// yet: a goroutine that will read it may not have run.
func PeerClosed(c net.Conn) bool {
	info, ok := tcpInfo(c)
	if !ok {
		return false
	}
	// include/net/tcp_states.h: every state the peer's FIN (or a reset)
	// leads to, whether or not this side has closed.
	switch info.State {
	case tcpTimeWait, tcpClose, tcpCloseWait, tcpLastAck, tcpClosing:
		return true
	}
	return false
}

const (
	tcpTimeWait = 6
	tcpClose    = 7
	tcpLastAck  = 9
	tcpClosing  = 11
)

// wasReset reports whether c's TCP socket has been closed by a reset (or
// any error that ended it: its state is CLOSE while still open here).
func wasReset(c net.Conn) bool {
	info, ok := tcpInfo(c)
	return ok && info.State == tcpClose
}

// sendQueueEmpty reports whether c's peer has acknowledged every byte
// written to c, or c can no longer send (closed here, or reset).
func sendQueueEmpty(c net.Conn) bool {
	info, ok := tcpInfo(c)
	return !ok || info.State == tcpClose || (info.Notsent_bytes == 0 && info.Unacked == 0)
}
