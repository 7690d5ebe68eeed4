package mux

import (
	"errors"
	"net"
	"net/netip"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ip6tSoOriginalDst is IP6T_SO_ORIGINAL_DST from linux/netfilter_ipv6/ip6_tables.h
// (x/sys only exports the IPv4 name; both are 80).
const ip6tSoOriginalDst = 80

// OriginalDst returns where a connection was going before an iptables
// REDIRECT/DNAT sent it to nexmux: SO_ORIGINAL_DST for IPv4 and
// IP6T_SO_ORIGINAL_DST for IPv6, read from conntrack. For a connection that
// was not redirected it returns the local address (conntrack knows the
// connection) or an error (no conntrack entry): callers compare the port
// with the listener's own.
func OriginalDst(c net.Conn) (netip.AddrPort, error) {
	tc, ok := underlyingTCP(c)
	if !ok {
		return netip.AddrPort{}, errors.New("not a TCP connection")
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return netip.AddrPort{}, err
	}
	local, _ := tc.LocalAddr().(*net.TCPAddr)
	var (
		ap   netip.AddrPort
		serr error
	)
	err = raw.Control(func(fd uintptr) {
		// The family of the connection decides, not the socket's: on a
		// dual-stack [::] listener an IPv4 client arrives v4-mapped
		// (local ::ffff:a.b.c.d, To4 non-nil). Conntrack holds an IPv4
		// tuple for it, so SOL_IP/SO_ORIGINAL_DST on the AF_INET6 socket
		// answers (the kernel takes the IPv4 addresses the mapped socket
		// keeps), while IP6T_SO_ORIGINAL_DST fails with ENOENT (it looks
		// for an IPv6 tuple). Checked against real REDIRECTs in
		// daemon/netns_linux_test.go.
		if local != nil && local.IP.To4() == nil {
			// sockaddr_in6 (28 bytes) fits IPv6MTUInfo (32 bytes), the
			// only x/sys getter with a buffer that large.
			var mi *unix.IPv6MTUInfo
			mi, serr = unix.GetsockoptIPv6MTUInfo(int(fd), unix.IPPROTO_IPV6, ip6tSoOriginalDst)
			if serr != nil {
				return
			}
			sa := (*unix.RawSockaddrInet6)(unsafe.Pointer(&mi.Addr))
			port := uint16(sa.Port>>8 | sa.Port<<8)
			ap = netip.AddrPortFrom(netip.AddrFrom16(sa.Addr), port)
			return
		}
		// sockaddr_in (16 bytes) fits IPv6Mreq (20 bytes).
		var mr *unix.IPv6Mreq
		mr, serr = unix.GetsockoptIPv6Mreq(int(fd), unix.IPPROTO_IP, unix.SO_ORIGINAL_DST)
		if serr != nil {
			return
		}
		sa := (*unix.RawSockaddrInet4)(unsafe.Pointer(&mr.Multiaddr))
		port := uint16(sa.Port>>8 | sa.Port<<8)
		ap = netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), port)
	})
	if err != nil {
		return netip.AddrPort{}, err
	}
	return ap, serr
}
