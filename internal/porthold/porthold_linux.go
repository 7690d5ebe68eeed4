package porthold

import (
	"fmt"
	"net"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// Stop holds ln's port and calls stop, which must close ln (and whatever
// else the server shuts), exactly once. The holding socket is bound beside
// ln while ln still listens, both with SO_REUSEPORT for that moment, so the
// port is never free; once ln is closed the holder drops SO_REUSEADDR and
// SO_REUSEPORT, and any other bind of the port fails with EADDRINUSE (a
// holder keeping SO_REUSEADDR would not stop another SO_REUSEADDR socket,
// Go's listeners included, from binding and listening: Linux lets such
// sockets share a port while none of them listens). If that fails, the
// port is bound right after the close instead. On error the listener is
// stopped but its port is not held.
func Stop(ln net.Listener, stop func()) (*Hold, error) {
	addr, ok := ln.Addr().(*net.TCPAddr)
	if !ok {
		stop()
		return nil, errNotTCP
	}
	v6only, beside := -1, false
	if sc, ok := ln.(syscall.Conn); ok {
		if rc, err := sc.SyscallConn(); err == nil {
			rc.Control(func(lfd uintptr) {
				if addr.IP.To4() == nil {
					v6only, _ = unix.GetsockoptInt(int(lfd), unix.IPPROTO_IPV6, unix.IPV6_V6ONLY)
				}
				beside = unix.SetsockoptInt(int(lfd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1) == nil
			})
		}
	}
	fd := -1
	if beside {
		// On failure the plain bind below is tried: its error is the one
		// reported.
		fd, _ = bind(addr, v6only, true)
	}
	stop()
	if fd < 0 {
		var err error
		if fd, err = bind(addr, v6only, false); err != nil {
			return nil, fmt.Errorf("porthold: hold %s: %w", addr, err)
		}
	}
	for _, opt := range []int{unix.SO_REUSEPORT, unix.SO_REUSEADDR} {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, opt, 0); err != nil {
			unix.Close(fd)
			return nil, fmt.Errorf("porthold: hold %s: %w", addr, err)
		}
	}
	return &Hold{addr: addr, fd: fd}, nil
}

// bind returns a socket bound to addr, not listening. SO_REUSEADDR lets it
// bind while the port's earlier connections linger in TIME_WAIT; with
// reusePort it binds beside a live SO_REUSEPORT listener too.
func bind(addr *net.TCPAddr, v6only int, reusePort bool) (int, error) {
	family := unix.AF_INET
	var sa unix.Sockaddr
	if ip4 := addr.IP.To4(); ip4 != nil {
		sa = &unix.SockaddrInet4{Port: addr.Port, Addr: [4]byte(ip4)}
	} else {
		family = unix.AF_INET6
		sa6 := &unix.SockaddrInet6{Port: addr.Port, Addr: [16]byte(addr.IP.To16())}
		if addr.Zone != "" {
			if ifi, err := net.InterfaceByName(addr.Zone); err == nil {
				sa6.ZoneId = uint32(ifi.Index)
			}
		}
		sa = sa6
	}
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	opts := [][2]int{{unix.SOL_SOCKET, unix.SO_REUSEADDR}}
	if reusePort {
		opts = append(opts, [2]int{unix.SOL_SOCKET, unix.SO_REUSEPORT})
	}
	if family == unix.AF_INET6 && v6only >= 0 {
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, v6only); err != nil {
			unix.Close(fd)
			return -1, err
		}
	}
	for _, o := range opts {
		if err := unix.SetsockoptInt(fd, o[0], o[1], 1); err != nil {
			unix.Close(fd)
			return -1, err
		}
	}
	if err := unix.Bind(fd, sa); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

// Listen serves the held port again from the holding socket itself, so no
// other socket can take the port in between, and spends the hold. On error
// the port stays held unless the hold is spent.
func (h *Hold) Listen() (net.Listener, error) {
	if h.fd < 0 {
		return nil, fmt.Errorf("porthold: %s: not held", h.addr)
	}
	// SO_REUSEADDR as Go's listeners have it: without it the earlier
	// connections' TIME_WAIT entries on the port refuse the listen.
	if err := unix.SetsockoptInt(h.fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
		return nil, fmt.Errorf("porthold: listen %s: %w", h.addr, err)
	}
	if err := unix.Listen(h.fd, unix.SOMAXCONN); err != nil {
		_ = unix.SetsockoptInt(h.fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 0)
		return nil, fmt.Errorf("porthold: listen %s: %w", h.addr, err)
	}
	f := os.NewFile(uintptr(h.fd), "porthold")
	h.fd = -1
	ln, err := net.FileListener(f) // a dup of the listening socket
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("porthold: listen %s: %w", h.addr, err)
	}
	return ln, nil
}

// Close lets the port go (a spent hold: nothing to do).
func (h *Hold) Close() error {
	if h.fd < 0 {
		return nil
	}
	fd := h.fd
	h.fd = -1
	return unix.Close(fd)
}
