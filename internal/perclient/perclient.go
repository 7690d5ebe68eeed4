// Package perclient counts what each client address holds (connections,
// requests in flight, SOCKS sessions without a stream) against a limit per
// address, so one client cannot take what every client shares.
package perclient

import (
	"net/netip"
	"sync"
	"sync/atomic"
)

// Counter counts per address. The zero value has no limit.
type Counter struct {
	Max int // per address; 0: no limit
	// IPv6Prefix, when 1 to 127, makes every IPv6 address within one
	// prefix of that length a single client: a host given a whole /64
	// could otherwise open a fresh address for each connection.
	IPv6Prefix int
	mu         sync.Mutex
	n          map[netip.Addr]int
}

// key is the client a counts as (Key).
func (c *Counter) key(a netip.Addr) netip.Addr { return Key(a, c.IPv6Prefix) }

// Key is the client a counts as: IPv4-mapped IPv6 as IPv4, IPv6 cut to
// ipv6Prefix when it is 1 to 127. Whatever is kept per client (counts,
// failed logins) must be keyed by it, or a host holding a whole prefix
// escapes it with a fresh address.
func Key(a netip.Addr, ipv6Prefix int) netip.Addr {
	a = a.Unmap()
	if Cut(a, ipv6Prefix) {
		if p, err := a.Prefix(ipv6Prefix); err == nil {
			return p.Addr()
		}
	}
	return a
}

// Cut reports whether Key cuts a to a prefix: an IPv6 address, with
// ipv6Prefix 1 to 127.
func Cut(a netip.Addr, ipv6Prefix int) bool {
	return a.Unmap().Is6() && ipv6Prefix > 0 && ipv6Prefix < 128
}

// Prefix is the IPv6 prefix a counts as ("2001:db8:1:2::/64"), for the log
// line or message of a refusal: the address itself may hold nothing; ok is
// false where a counts as itself.
func Prefix(a netip.Addr, ipv6Prefix int) (prefix string, ok bool) {
	if !Cut(a, ipv6Prefix) {
		return "", false
	}
	return netip.PrefixFrom(Key(a, ipv6Prefix), ipv6Prefix).String(), true
}

// Acquire takes a place for a; false when a holds Max already. Every true
// is paired with one Release. IPv4-mapped IPv6 addresses count as IPv4.
func (c *Counter) Acquire(a netip.Addr) bool {
	if c.Max <= 0 {
		return true
	}
	a = c.key(a)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[netip.Addr]int{}
	}
	if c.n[a] >= c.Max {
		return false
	}
	c.n[a]++
	return true
}

// Release gives back a place Acquire took.
func (c *Counter) Release(a netip.Addr) {
	if c.Max <= 0 {
		return
	}
	a = c.key(a)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n[a] <= 1 {
		delete(c.n, a)
		return
	}
	c.n[a]--
}

// Total is the places held over every address.
func (c *Counter) Total() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	total := 0
	for _, n := range c.n {
		total += n
	}
	return total
}

// TakeBelow adds one to a shared count unless it is at max already. A
// refused take never raises the count, even for a moment, so it never
// refuses another client that would have fitted. Check the client's own
// limit first, so that a client over it holds no shared place either.
func TakeBelow(n *atomic.Int64, max int64) bool { return TakeNBelow(n, 1, max) }

// TakeNBelow adds k to a shared count if it stays at most max, all at
// once or not at all (what one holder of several places needs).
func TakeNBelow(n *atomic.Int64, k, max int64) bool {
	for {
		v := n.Load()
		if v+k > max {
			return false
		}
		if n.CompareAndSwap(v, v+k) {
			return true
		}
	}
}
