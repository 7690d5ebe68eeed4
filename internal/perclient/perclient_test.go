package perclient

import (
	"net/netip"
	"sync/atomic"
	"testing"
)

// Each address gets Max places, apart from the others; a place given back
// can be taken again; IPv4-mapped and plain IPv4 are one client; an address
// holding nothing leaves no entry behind.
func TestCounter(t *testing.T) {
	c := Counter{Max: 2}
	a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	mapped := netip.MustParseAddr("::ffff:192.0.2.1")
	if !c.Acquire(a) || !c.Acquire(mapped) {
		t.Fatal("first two places refused")
	}
	if c.Acquire(a) {
		t.Fatal("third place for the same client (plain and IPv4-mapped) given")
	}
	if !c.Acquire(b) {
		t.Fatal("another client refused")
	}
	if n := c.Total(); n != 3 {
		t.Fatalf("Total %d, want 3", n)
	}
	c.Release(a)
	if !c.Acquire(mapped) {
		t.Fatal("place given back not taken again")
	}
	c.Release(a)
	c.Release(a)
	c.Release(b)
	if len(c.n) != 0 || c.Total() != 0 {
		t.Fatalf("entries left for clients holding nothing: %v", c.n)
	}
	var unlimited Counter
	for range 1000 {
		if !unlimited.Acquire(a) {
			t.Fatal("Max 0 refused")
		}
	}
}

// TakeNBelow takes k places at once or none: a take that does not fit
// leaves the count as it was, so nobody is refused meanwhile.
func TestTakeNBelow(t *testing.T) {
	var n atomic.Int64
	if !TakeNBelow(&n, 3, 4) || n.Load() != 3 {
		t.Fatalf("take 3 of 4: count %d", n.Load())
	}
	if TakeNBelow(&n, 2, 4) || n.Load() != 3 {
		t.Fatalf("take 2 more of 4: refused wanted, count %d (want 3, untouched)", n.Load())
	}
	if !TakeBelow(&n, 4) || TakeBelow(&n, 4) || n.Load() != 4 {
		t.Fatalf("take 1, then 1 over: count %d, want 4", n.Load())
	}
}

// With IPv6Prefix, every address of one IPv6 prefix is one client, and
// other prefixes and IPv4 are not; without it each address is its own.
func TestCounterIPv6Prefix(t *testing.T) {
	a := netip.MustParseAddr("2001:db8:1:2::1")
	same := netip.MustParseAddr("2001:db8:1:2:ffff:ffff:ffff:fffe")
	zoned := netip.MustParseAddr("2001:db8:1:2::7%eth0")
	other := netip.MustParseAddr("2001:db8:1:3::1")
	v4 := netip.MustParseAddr("192.0.2.1")

	c := Counter{Max: 2, IPv6Prefix: 64}
	if !c.Acquire(a) || !c.Acquire(same) {
		t.Fatal("first two places of the /64 refused")
	}
	if c.Acquire(zoned) || c.Acquire(netip.MustParseAddr("2001:db8:1:2::99")) {
		t.Fatal("third place within the same /64 given")
	}
	if !c.Acquire(other) || !c.Acquire(v4) || !c.Acquire(v4) {
		t.Fatal("another /64 or IPv4 refused")
	}
	c.Release(same)
	if !c.Acquire(zoned) {
		t.Fatal("place given back within the /64 not taken again")
	}
	for _, x := range []netip.Addr{a, zoned, other, v4, v4} {
		c.Release(x)
	}
	if len(c.n) != 0 {
		t.Fatalf("entries left for clients holding nothing: %v", c.n)
	}

	for _, bits := range []int{0, 128} {
		whole := Counter{Max: 1, IPv6Prefix: bits}
		if !whole.Acquire(a) || !whole.Acquire(same) {
			t.Fatalf("IPv6Prefix %d: two addresses of one /64 not counted apart", bits)
		}
	}
}
