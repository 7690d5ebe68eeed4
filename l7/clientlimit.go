package l7

import (
	"net/netip"
	"sync"
)

// clientRequests counts each client address's requests in flight, so one
// client (many connections, many HTTP/2 streams) cannot hold every Nexus
// thread. The address is the one after PROXY protocol.
type clientRequests struct {
	max int // 0: no limit
	mu  sync.Mutex
	n   map[netip.Addr]int
}

func newClientRequests(max int) *clientRequests {
	return &clientRequests{max: max, n: map[netip.Addr]int{}}
}

// acquire takes a slot for a; false when a is at the limit. Every true is
// paired with one release.
func (c *clientRequests) acquire(a netip.Addr) bool {
	if c.max <= 0 {
		return true
	}
	a = a.Unmap()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n[a] >= c.max {
		return false
	}
	c.n[a]++
	return true
}

func (c *clientRequests) release(a netip.Addr) {
	if c.max <= 0 {
		return
	}
	a = a.Unmap()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n[a] <= 1 {
		delete(c.n, a)
		return
	}
	c.n[a]--
}
