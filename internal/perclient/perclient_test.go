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
