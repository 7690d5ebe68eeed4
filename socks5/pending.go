package socks5

import (
	"net"
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

	// lingering are the refused sessions reading on before their close,
	// with their sockets, so that a client that closed its side is not
	// refused for its own session before nexmux has read the FIN.
	lmu       sync.Mutex
	lingering map[lingerKey]map[*pendingSlot]net.Conn
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

// lingerKey is what a lingering session is found by: the count its place
// is of (a balancer's own, or the clients'), and the client as that count
// knows it (an IPv6 one by its prefix).
type lingerKey struct {
	balancer bool
	client   netip.Addr
}

func (p *pending) lingerKey(a netip.Addr, balancer bool) lingerKey {
	prefix := p.by.IPv6Prefix
	if balancer {
		prefix = p.balancers.IPv6Prefix
	}
	return lingerKey{balancer, perclient.Key(a, prefix)}
}

// lingerStart and lingerEnd bracket a refused session's lingering close.
func (p *pending) lingerStart(slot *pendingSlot, raw net.Conn) {
	k := p.lingerKey(slot.a, slot.balancer)
	p.lmu.Lock()
	defer p.lmu.Unlock()
	if p.lingering == nil {
		p.lingering = map[lingerKey]map[*pendingSlot]net.Conn{}
	}
	if p.lingering[k] == nil {
		p.lingering[k] = map[*pendingSlot]net.Conn{}
	}
	p.lingering[k][slot] = raw
}

func (p *pending) lingerEnd(slot *pendingSlot) {
	k := p.lingerKey(slot.a, slot.balancer)
	p.lmu.Lock()
	defer p.lmu.Unlock()
	delete(p.lingering[k], slot)
	if len(p.lingering[k]) == 0 {
		delete(p.lingering, k)
	}
}

// reclaim gives back the places of a's lingering sessions (its prefix's
// where IPv6 clients count by prefix; of its own, or as a balancer's when
// balancer) whose client has closed its side: such a client reconnecting
// at once must not find its place held by a session it has left, only
// because the session's goroutine has not run yet. A client that keeps its
// side open keeps holding its place.
func (p *pending) reclaim(a netip.Addr, balancer bool) {
	k := p.lingerKey(a, balancer)
	p.lmu.Lock()
	var done []*pendingSlot
	for slot, raw := range p.lingering[k] {
		if mux.PeerClosed(raw) {
			done = append(done, slot)
			delete(p.lingering[k], slot)
		}
	}
	if len(p.lingering[k]) == 0 {
		delete(p.lingering, k)
	}
	p.lmu.Unlock()
	for _, slot := range done {
		slot.release()
	}
}

// reclaimThen reclaims a's places (reclaim), then takes one with take,
// whatever reclaim found: a lingering session may have given its place
// back by itself between the take that failed and reclaim.
func (p *pending) reclaimThen(a netip.Addr, balancer bool, take func(netip.Addr) bool) bool {
	p.reclaim(a, balancer)
	return take(a)
}
