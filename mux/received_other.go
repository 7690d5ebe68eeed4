//go:build !linux

package mux

import "net"

// receivedNothing needs Linux's TCP_INFO; elsewhere it cannot tell.
func receivedNothing(net.Conn) bool { return false }

// finReceived needs TCP_INFO too: a partial PROXY line then waits for the
// deadline.
func finReceived(int) bool { return false }

// PeerClosed needs TCP_INFO too: elsewhere a peer's close is known once
// read.
func PeerClosed(net.Conn) bool { return false }

// wasReset and sendQueueEmpty need TCP_INFO too: elsewhere a failure ends
// both directions at once.
func wasReset(net.Conn) bool { return false }

func sendQueueEmpty(net.Conn) bool { return true }
