//go:build !unix

package socks5

import "net"

// pairSupported: there is no socketpair(2) here (Windows), so the SOCKS5
// ingress refuses to start; the rest of nexmux builds and runs.
const pairSupported = false

func socketPair() (ours, theirs net.Conn, err error) {
	return nil, nil, errPairUnsupported
}
