//go:build !linux

package porthold

import (
	"fmt"
	"net"
)

// Stop calls stop, which must close ln. Outside Linux the port is not
// held: it is free until Listen binds it again.
func Stop(ln net.Listener, stop func()) (*Hold, error) {
	addr, ok := ln.Addr().(*net.TCPAddr)
	stop()
	if !ok {
		return nil, errNotTCP
	}
	return &Hold{addr: addr, fd: -1}, nil
}

// Listen listens on the address again.
func (h *Hold) Listen() (net.Listener, error) {
	ln, err := net.Listen("tcp", h.addr.String())
	if err != nil {
		return nil, fmt.Errorf("porthold: listen %s: %w", h.addr, err)
	}
	return ln, nil
}

// Close does nothing: nothing is held.
func (h *Hold) Close() error { return nil }
