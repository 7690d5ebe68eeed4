package mux

import (
	"net"
	"net/netip"

	"github.com/nexmux/nexmux/internal/perclient"
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
	return s.slotTaken(raw, &s.clients, a)
}

// balancerSlotTaken is clientSlotTaken for a PROXY v2 LOCAL connection:
// a slot of its balancer a's own pool, not of the clients a names. LOCAL
// is a health check, but also (HAProxy) any client relayed from an
// address that is not IP: without a bound such clients could take every
// --max-conns place.
func (s *Server) balancerSlotTaken(raw net.Conn, a netip.Addr) bool {
	return s.slotTaken(raw, &s.balancers, a)
}

func (s *Server) slotTaken(raw net.Conn, pool *perclient.Counter, a netip.Addr) bool {
	cc, ok := raw.(*countedConn)
	if !ok || s.opts.MaxConnsPerClient <= 0 || cc.clientSlot {
		return true
	}
	return takeSlot(pool, cc, a)
}

// takeSlot counts raw against a's limit in pool; false when a is at the
// limit. The slot comes back when raw is closed, whoever closes it.
func takeSlot(pool *perclient.Counter, raw *countedConn, a netip.Addr) bool {
	if !pool.Acquire(a) {
		return false
	}
	if !raw.onClose(func() { pool.Release(a) }) {
		pool.Release(a) // closed meanwhile (shutdown)
		return false
	}
	raw.clientSlot = true
	return true
}
