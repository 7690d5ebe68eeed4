//go:build !linux

package mux

import "net"

// unackedOf: only Linux says what the peer has not acknowledged.
func unackedOf(net.Conn) func() (int, bool) { return nil }

// OutQueue: only Linux says what a peer has not acknowledged or read.
func OutQueue(net.Conn) func() (int, bool) { return nil }
