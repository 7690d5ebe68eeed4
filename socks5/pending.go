package socks5

import (
	"net"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/nexmux/nexmux/internal/lograte"
)

// ReasonPending refuses a SOCKS client at accept: too many sessions that
// carry no stream yet, from its address or in all. Such sessions are
// counted by no router limit until their CONNECT, so without this cap
// idle sockets could use up the process's file descriptors.
const ReasonPending = "socks5_pending"

// pending counts sessions from accept until their stream is handed to the
// router (or they end).
type pending struct {
	max, perClient int // 0: no limit
	n              atomic.Int64
	mu             sync.Mutex
	by             map[netip.Addr]int
	refusals       lograte.Limiter
}

// take counts a session from a; false when a limit is reached.
func (p *pending) take(a netip.Addr) bool {
	if p.max > 0 && p.n.Add(1) > int64(p.max) {
		p.n.Add(-1)
		return false
	}
	if p.perClient > 0 {
		p.mu.Lock()
		if p.by == nil {
			p.by = map[netip.Addr]int{}
		}
		if p.by[a] >= p.perClient {
			p.mu.Unlock()
			if p.max > 0 {
				p.n.Add(-1)
			}
			return false
		}
		p.by[a]++
		p.mu.Unlock()
	}
	return true
}

func (p *pending) give(a netip.Addr) {
	if p.max > 0 {
		p.n.Add(-1)
	}
	if p.perClient > 0 {
		p.mu.Lock()
		if p.by[a] <= 1 {
			delete(p.by, a)
		} else {
			p.by[a]--
		}
		p.mu.Unlock()
	}
}

// pendingSlot is one session's count, given back once.
type pendingSlot struct {
	p    *pending
	a    netip.Addr
	once sync.Once
}

func (s *pendingSlot) release() {
	if s != nil {
		s.once.Do(func() { s.p.give(s.a) })
	}
}

func clientAddr(c net.Conn) netip.Addr {
	if ap, err := netip.ParseAddrPort(c.RemoteAddr().String()); err == nil {
		return ap.Addr().Unmap()
	}
	return netip.Addr{}
}
