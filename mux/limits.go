package mux

import (
	"net"
	"net/netip"
	"sync"
	"sync/atomic"

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
	return s.takeSlot(pool, cc, a)
}

// takeSlot counts raw against a's limit in pool; false when a is at the
// limit, once refused connections of a whose client has closed its side
// have given theirs back. The slot comes back when raw is closed, whoever
// closes it.
func (s *Server) takeSlot(pool *perclient.Counter, raw *countedConn, a netip.Addr) bool {
	key := perclient.Key(a, pool.IPv6Prefix)
	if !pool.Acquire(a) {
		if f := refusedSlot.Load(); f != nil {
			(*f)()
		}
		// Acquired again whatever reclaim found: a refused connection may
		// have given its slot back by itself since the first try.
		s.refusing.reclaim(pool, key)
		if !pool.Acquire(a) {
			return false
		}
	}
	if !raw.onClose(func() { pool.Release(a) }) {
		pool.Release(a) // closed meanwhile (shutdown)
		return false
	}
	raw.clientSlot, raw.slotPool, raw.slotKey, raw.refusing = true, pool, key, &s.refusing
	return true
}

// refusedSlot is a seam for tests: when set, it runs between a client's
// slot refused at its limit and the reclaim after it.
var refusedSlot atomic.Pointer[func()]

// refusing is the set of refused connections reading on before their
// close (lingerRefused) that hold a --max-conns-per-client slot, by the
// slot's pool and client.
type refusing struct {
	mu    sync.Mutex
	conns map[refusingKey]map[*countedConn]struct{}
}

type refusingKey struct {
	pool   *perclient.Counter
	client netip.Addr // as pool counts it: an IPv6 client by its prefix
}

// start and end bracket a refused connection's lingering read; end gives
// its slot back before the set forgets it, so a client retrying meanwhile
// finds it free or reclaimable.
func (r *refusing) start(cc *countedConn) {
	if r == nil {
		return
	}
	k := refusingKey{cc.slotPool, cc.slotKey}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.conns == nil {
		r.conns = map[refusingKey]map[*countedConn]struct{}{}
	}
	if r.conns[k] == nil {
		r.conns[k] = map[*countedConn]struct{}{}
	}
	r.conns[k][cc] = struct{}{}
}

// end gives the slot back under r.mu, as reclaim does: a reclaim that
// finds a connection on its way out has its slot back when it returns, not
// while end is still giving it back.
func (r *refusing) end(cc *countedConn) {
	if r == nil {
		return
	}
	k := refusingKey{cc.slotPool, cc.slotKey}
	r.mu.Lock()
	defer r.mu.Unlock()
	cc.dropRelease()
	delete(r.conns[k], cc)
	if len(r.conns[k]) == 0 {
		delete(r.conns, k)
	}
}

// reclaim gives back the slots in pool of key's refused connections whose
// client has closed its side (PeerClosed): such a client reconnecting at
// once must not be refused for a connection it has left, only because the
// goroutine that will read its FIN has not run yet. A client that keeps
// its side open keeps its slot.
func (r *refusing) reclaim(pool *perclient.Counter, key netip.Addr) {
	k := refusingKey{pool, key}
	r.mu.Lock()
	defer r.mu.Unlock()
	for cc := range r.conns[k] {
		if PeerClosed(cc) {
			cc.dropRelease()
			delete(r.conns[k], cc)
		}
	}
	if len(r.conns[k]) == 0 {
		delete(r.conns, k)
	}
}
