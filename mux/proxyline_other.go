//go:build !unix

package mux

import "net"

// Without MSG_PEEK a v1 line must come in one segment, as go-proxyproto
// wants it.
func awaitProxyLine(net.Conn) {}
