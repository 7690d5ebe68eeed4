package socks5

import (
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/nexmux/nexmux/internal/lograte"
	"github.com/nexmux/nexmux/internal/perclient"
	"github.com/nexmux/nexmux/mux"
)

// ReasonPending refuses a SOCKS client at accept: too many sessions that
// carry no stream yet, from its address or in all. Each also holds a
// --max-conns place (its descriptor); this cap keeps them from holding
// every place, and one address from holding them all.
const ReasonPending = "socks5_pending"

// pending counts sessions from accept until their stream is handed to the
// router (or they end).
type pending struct {
	max int // in all; 0: no limit
	n   atomic.Int64
	by  perclient.Counter
	// balancers counts PROXY v2 LOCAL sessions per balancer address,
	// against by's limit, apart from the clients it names.
	balancers perclient.Counter
	refusals  lograte.Limiter
}

// take counts a session from a; false when a limit is reached, and full
// the count at its limit: p.by, or nil for the shared one.
func (p *pending) take(a netip.Addr) (ok bool, full *perclient.Counter) {
	if !p.by.Acquire(a) {
		return false, &p.by
	}
	if p.max > 0 && !perclient.TakeBelow(&p.n, int64(p.max)) {
		p.by.Release(a)
		return false, nil
	}
	return true, nil
}

// takeShared and takeClient are take in two steps, for a client named by
// a PROXY header only once it has been read; giveShared undoes takeShared.
func (p *pending) takeShared() bool {
	return p.max <= 0 || perclient.TakeBelow(&p.n, int64(p.max))
}

func (p *pending) giveShared() {
	if p.max > 0 {
		p.n.Add(-1)
	}
}

func (p *pending) takeClient(a netip.Addr) bool { return p.by.Acquire(a) }

// takeBalancer is takeClient for a v2 LOCAL session from balancer a.
func (p *pending) takeBalancer(a netip.Addr) bool { return p.balancers.Acquire(a) }

func (p *pending) give(a netip.Addr) {
	if p.max > 0 {
		p.n.Add(-1)
	}
	p.by.Release(a)
}

// pendingSlot is one session's count, given back once, with its
// --max-conns place (given back here unless its stream was admitted).
type pendingSlot struct {
	p        *pending
	a        netip.Addr
	balancer bool // a is a balancer's, counted by takeBalancer
	place    *mux.Place
	once     sync.Once
}

func (s *pendingSlot) release() {
	if s != nil {
		s.place.Release()
		s.once.Do(func() {
			if s.balancer {
				s.p.giveShared()
				s.p.balancers.Release(s.a)
				return
			}
			s.p.give(s.a)
		})
	}
}
