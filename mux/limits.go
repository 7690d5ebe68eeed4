package mux

import (
	"net"
	"net/netip"
	"sync"
)

// ReasonPerClient refuses a connection beyond --max-conns-per-client.
const ReasonPerClient = "max_conns_per_client"

// msgPerClient is the message of a ReasonPerClient refusal's log line.
const msgPerClient = "client has --max-conns-per-client connections open"

// clientConns counts each client address's open connections (the address
// after PROXY protocol, or a SOCKS5 client's).
type clientConns struct {
	mu sync.Mutex
	n  map[netip.Addr]int
}

func (c *clientConns) acquire(a netip.Addr, max int) bool {
	a = a.Unmap()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[netip.Addr]int{}
	}
	if c.n[a] >= max {
		return false
	}
	c.n[a]++
	return true
}

func (c *clientConns) release(a netip.Addr) {
	a = a.Unmap()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n[a] <= 1 {
		delete(c.n, a)
		return
	}
	c.n[a]--
}

// clientSlotTaken makes sure raw holds a --max-conns-per-client slot of
// client a, taking one if it holds none yet (an admitted connection, or one
// whose slot routing took already, holds one); false when a is at the
// limit.
func (s *Server) clientSlotTaken(raw net.Conn, a netip.Addr) bool {
	cc, ok := raw.(*countedConn)
	if !ok || s.opts.MaxConnsPerClient <= 0 || cc.clientSlot {
		return true
	}
	if !s.takeClientSlot(cc, a) {
		return false
	}
	cc.clientSlot = true
	return true
}

// takeClientSlot counts raw against its client's limit once routing knows
// the client; false when the client is at the limit. The slot comes back
// when raw is closed, whoever closes it.
func (s *Server) takeClientSlot(raw *countedConn, a netip.Addr) bool {
	if !s.clients.acquire(a, s.opts.MaxConnsPerClient) {
		return false
	}
	if !raw.onClose(func() { s.clients.release(a) }) {
		s.clients.release(a) // closed meanwhile (shutdown)
		return false
	}
	return true
}
