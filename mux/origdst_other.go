//go:build !linux

package mux

import (
	"errors"
	"net"
	"net/netip"
)

// OriginalDst needs Linux conntrack; elsewhere no connection is redirected.
func OriginalDst(net.Conn) (netip.AddrPort, error) {
	return netip.AddrPort{}, errors.New("original destination needs Linux")
}
