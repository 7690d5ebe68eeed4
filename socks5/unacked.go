package socks5

import (
	"net"

	"github.com/pires/go-proxyproto"

	"github.com/nexmux/nexmux/mux"
)

// unacked returns a reader of what the router wrote into the pair (pair
// is its end) that the SOCKS client has not acknowledged yet: bytes still
// in the pair, those on the client's socket its kernel has not
// acknowledged, and the end of stream: one until the library has read the
// pair's EOF, after every byte before it went to the client's socket, and
// half-closed the client (whose FIN the socket's count then holds). Nil
// when either socket cannot say (off Linux, always).
func (e *streamEnd) unacked(pair net.Conn) func() (int, bool) {
	client := e.client.Conn
	if pc, ok := client.(*proxyproto.Conn); ok {
		client = pc.Raw() // a balancer's client: the socket under the header
	}
	inPair, toClient := mux.OutQueue(pair), mux.OutQueue(client)
	if inPair == nil || toClient == nil {
		return nil
	}
	return func() (int, bool) {
		e.mu.Lock()
		eof := e.eof
		e.mu.Unlock()
		n, ok := toClient()
		if !ok {
			return 0, false
		}
		m, ok := inPair()
		if !ok {
			return 0, false
		}
		if !eof {
			n++
		}
		return n + m, true
	}
}
