package mux

import (
	"net"
	"net/netip"
)

// ReasonPerClient refuses a connection beyond --max-conns-per-client.
const ReasonPerClient = "max_conns_per_client"

// msgPerClient is the message of a ReasonPerClient refusal's log line.
const msgPerClient = "client has --max-conns-per-client connections open"

// clientSlotTaken makes sure raw holds a --max-conns-per-client slot of
// client a, taking one if it holds none yet (an admitted connection, or one
// whose slot routing took already, holds one); false when a is at the
// limit.
func (s *Server) clientSlotTaken(raw net.Conn, a netip.Addr) bool {
	cc, ok := raw.(*countedConn)
	if !ok || s.opts.MaxConnsPerClient <= 0 || cc.clientSlot {
		return true
	}
	return s.takeClientSlot(cc, a)
}

// takeClientSlot counts raw against its client's limit once routing knows
// the client; false when the client is at the limit. The slot comes back
// when raw is closed, whoever closes it.
func (s *Server) takeClientSlot(raw *countedConn, a netip.Addr) bool {
	if !s.clients.Acquire(a) {
		return false
	}
	if !raw.onClose(func() { s.clients.Release(a) }) {
		s.clients.Release(a) // closed meanwhile (shutdown)
		return false
	}
	raw.clientSlot = true
	return true
}
